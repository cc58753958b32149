"""One task: evaluate a chunk of trials and write its rows as an Arrow file.

The engine runs :func:`run_chunk` wherever it likes (this process, or a Ray worker). What it
gets is :class:`SweepJob` (shared by every task: on Ray it is put in the object store once) and
a :class:`~qpipe.sweep.plan.Chunk` (an index and spans of positions: a few dozen bytes). It
returns a :class:`ChunkResult` (the chunk's trial indices, counts, the file's path and digest);
the rows themselves stay on disk, written atomically, so a crash leaves either the whole chunk
file or none.
"""

from __future__ import annotations

import importlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from qpipe.errors import QpipeError
from qpipe.store import write_ipc_atomic
from qpipe.sweep.grid import Grid
from qpipe.sweep.plan import Chunk
from qpipe.sweep.summary import normalise_chunk

__all__ = ["DEFAULT_EVALUATOR", "ChunkResult", "SweepJob", "chunk_path", "run_chunk"]

# a module with build_panel(prices_ref, store) and evaluate_chunk(panel, base_config, trials,
# store_root): the batched simulation (qpipe/backtest/batch.py)
DEFAULT_EVALUATOR = "qpipe.backtest.batch"


@dataclass(frozen=True)
class SweepJob:
    """What every task of one sweep shares (small: refs and the grid, never data)."""

    panel: Any  # the evaluator's PanelRef: refs to a price panel pivoted once per sweep
    base_config: dict[str, Any]
    grid: Grid
    store_root: str
    chunk_dir: str
    evaluator: str = DEFAULT_EVALUATOR


@dataclass(frozen=True)
class ChunkResult:
    """A finished chunk: which trials, how many ok and failed, where its rows are."""

    index: int
    trials: tuple[int, ...]
    n_ok: int
    n_failed: int
    path: str
    digest: str
    seconds: float


def chunk_path(chunk_dir: str | Path, index: int) -> Path:
    return Path(chunk_dir) / f"chunk-{index:06d}.arrow"


def _failed_rows(trials: list[tuple[int, dict[str, Any]]], error: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "trial": [i for i, _ in trials],
            **{k: [p[k] for _, p in trials] for k in trials[0][1]},
            "status": ["failed"] * len(trials),
            "error": [error] * len(trials),
            "seconds": [0.0] * len(trials),
        }
    )


def run_chunk(job: SweepJob, chunk: Chunk) -> ChunkResult:
    """Evaluate ``chunk``'s trials and write ``chunk-<index>.arrow``; return what it did.

    A trial that fails for a data reason is a row with ``status="failed"`` (the evaluator's
    business). If the evaluator raises a :class:`QpipeError` for the whole chunk, every trial of
    the chunk becomes such a row with that error, and the sweep goes on.
    """
    start = time.perf_counter()
    trials = list(job.grid.trials(chunk.positions()))
    evaluator = importlib.import_module(job.evaluator)
    try:
        table = evaluator.evaluate_chunk(job.panel, job.base_config, trials, job.store_root)
        frame = normalise_chunk(table, job.grid.axes)
    except QpipeError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        frame = normalise_chunk(_failed_rows(trials, first), job.grid.axes)
    seconds = time.perf_counter() - start
    path = chunk_path(job.chunk_dir, chunk.index)
    digest = write_ipc_atomic(frame, path)
    ok = int((frame["status"] == "ok").sum())
    return ChunkResult(
        index=chunk.index,
        trials=tuple(frame["trial"].to_list()),
        n_ok=ok,
        n_failed=frame.height - ok,
        path=os.fspath(path),
        digest=digest,
        seconds=seconds,
    )
