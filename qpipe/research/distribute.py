"""A study's grid evaluation on an engine (``--engine ray`` included), never silently local.

The two costly, independent parts of a walk-forward or a CPCV are sharded over
``engine.map_chunks`` (the sweep's interface): the windowed trials of a walk-forward (every
set on every fold's training and test window, the batched evaluator) and every set's
full-history daily returns (CPCV, and the walk-forward's PBO and V). The shared part -- the
panel's and prices' store refs, the base config, the store root -- goes to the engine once (on
Ray one ObjectRef); each task gets a contiguous slice of the trials or sets and opens the
memory-mapped panel itself. Results come back in any order and are put back in trial order, so
the outcome equals the in-process evaluation row for row (tested on a real local Ray).

With the local engine nothing changes: the evaluation runs in this process, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import polars as pl

from qpipe.config import ThreadSafeConfig

__all__ = ["GridEngine", "grid_engine"]

CHUNKS_PER_CPU = 2


Chunk = tuple[int, list[Any]]  # (position, the trials or sets of the slice)


def _trials_task(shared: tuple[Any, dict[str, Any], str], chunk: Chunk) -> Any:
    from qpipe.backtest.batch import evaluate_chunk

    panel, base, root = shared
    return evaluate_chunk(panel, base, chunk[1], root)


def _returns_task(shared: tuple[Any, Any, dict[str, Any], str, bool], chunk: Chunk) -> np.ndarray:
    from qpipe.backtest.panel import open_panel
    from qpipe.research.cpcv import trial_returns
    from qpipe.store import ArrowStore

    sets = chunk[1]
    prices_ref, panel_ref, base, root, full = shared
    store = ArrowStore(root)
    panel = open_panel(panel_ref, store)
    cfg = ThreadSafeConfig.from_mapping(base)
    return trial_returns(store.open(prices_ref), panel, cfg, sets, full_history=full)


def _slices(items: Sequence[Any], n: int) -> list[Chunk]:
    """At most ``n`` contiguous slices, numbered in order."""
    size = max(1, -(-len(items) // max(1, n)))
    return [(k, list(items[i : i + size])) for k, i in enumerate(range(0, len(items), size))]


class GridEngine:
    """Runs a study's grid evaluation in this process (``engine`` None) or on an engine."""

    def __init__(self, engine: Any = None) -> None:
        self.engine = engine

    @property
    def name(self) -> str:
        return "local" if self.engine is None else str(getattr(self.engine, "name", "custom"))

    def _map(self, fn: Callable[[Any, Chunk], Any], shared: Any, items: Sequence[Any]) -> list:
        """``fn`` over slices of ``items`` on the engine; the results in slice order."""
        cpus = int(getattr(self.engine, "cluster_cpus", lambda: 2)())
        chunks = _slices(items, CHUNKS_PER_CPU * cpus)
        done: dict[int, Any] = {}
        self.engine.map_chunks(fn, shared, chunks, lambda c, r: done.__setitem__(c[0], r))
        return [done[k] for k, _ in chunks]

    def evaluate(self, panel: Any, base: dict[str, Any], root: str, trials: list) -> Any:
        """The batched evaluator's table for ``trials`` (one row per trial, in their order)."""
        if self.engine is None or not trials:
            return _trials_task((panel, base, root), (0, trials))
        frames = []
        for table in self._map(_trials_task, (panel, base, root), trials):
            frame = pl.from_arrow(table)
            assert isinstance(frame, pl.DataFrame)
            frames.append(frame)
        return pl.concat(frames, how="diagonal_relaxed").to_arrow()

    def returns(
        self,
        prices_ref: Any,
        panel_ref: Any,
        base: ThreadSafeConfig,
        root: str,
        sets: Sequence[dict[str, Any]],
        full_history: bool = True,
    ) -> np.ndarray:
        """Every set's daily returns (days x sets): :func:`~qpipe.research.cpcv.trial_returns`."""
        shared = (prices_ref, panel_ref, base.to_dict(), root, full_history)
        if self.engine is None or len(sets) < 2:
            return _returns_task(shared, (0, list(sets)))
        return np.hstack(self._map(_returns_task, shared, list(sets)))

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()


def grid_engine(cfg: ThreadSafeConfig, engine: Any = None) -> tuple[GridEngine, bool]:
    """The study's engine: an instance given, else ``[engine] kind`` (``ray`` makes a
    :class:`~qpipe.engines.ray.RayEngine`; ``local`` evaluates in this process). Returns it
    and whether the study owns it (and must close it)."""
    if engine is not None and not isinstance(engine, str):
        return GridEngine(engine), False
    kind = engine if isinstance(engine, str) else cfg.engine.kind
    if kind == "local":
        return GridEngine(None), False
    from qpipe.engines import make_engine

    return GridEngine(make_engine(cfg.replace(engine={"kind": kind}))), True
