"""The sweep's table: one row per trial, typed columns, a fixed column order, a stable sort.

Chunk files and ``summary.arrow`` share one layout so that the final table depends only on the
trials' results, never on how they were chunked, in which order chunks finished, or whether
the sweep was interrupted and resumed:

``sweep_id`` (summary only), ``trial`` (Int64), one column per parameter in grid order (Int64,
Float64, Boolean or String, from the values' type), the metrics (Float64; the key metrics first
in :data:`KEY_METRICS` order, then any others alphabetically), ``status`` and ``error``
(String), ``seconds`` (Float64: the trial's share of its task's wall time; see
:func:`results_digest` for what is compared byte for byte).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc

from qpipe.store import open_ipc, write_ipc_atomic
from qpipe.store.arrow import BATCH_ROWS

__all__ = [
    "KEY_METRICS",
    "LOWER_IS_BETTER",
    "TRIAL_COLUMNS",
    "assemble",
    "normalise_chunk",
    "read_chunks",
    "results_digest",
    "write_summary",
]

KEY_METRICS = (
    "sharpe",
    "cagr",
    "total_return",
    "ann_vol",
    "max_drawdown",
    "sortino",
    "calmar",
    "turnover_ann",
    "total_cost",
    "n_rebalances",
    "hit_rate",
)
LOWER_IS_BETTER = frozenset({"ann_vol", "tracking_error", "total_cost", "turnover_ann"})
TRIAL_COLUMNS = ("trial", "status", "error", "seconds")
# not data: differ between two runs of the same sweep (see results_digest)
VOLATILE_COLUMNS = ("sweep_id", "seconds")

_DTYPES: dict[type, Any] = {bool: pl.Boolean, int: pl.Int64, float: pl.Float64, str: pl.String}


def param_dtype(values: Sequence[Any]) -> Any:
    """The column type of a parameter: the type of its (config-checked, uniform) values."""
    return _DTYPES.get(type(values[0]), pl.String)


def metric_order(names: Sequence[str]) -> list[str]:
    known = [m for m in KEY_METRICS if m in names]
    return known + sorted(n for n in names if n not in KEY_METRICS)


def normalise_chunk(
    table: pa.Table | pl.DataFrame, params: Sequence[tuple[str, Sequence[Any]]]
) -> pl.DataFrame:
    """An evaluator's chunk table in the sweep layout (types, column order, rows by trial)."""
    frame = table if isinstance(table, pl.DataFrame) else pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    keys = [k for k, _ in params]
    metrics = [c for c in frame.columns if c not in TRIAL_COLUMNS and c not in keys]
    cols = [pl.col("trial").cast(pl.Int64)]
    cols += [pl.col(k).cast(param_dtype(v)) for k, v in params]
    cols += [pl.col(m).cast(pl.Float64) for m in metric_order(metrics)]
    cols += [
        pl.col("status").cast(pl.String),
        pl.col("error").cast(pl.String),
        pl.col("seconds").cast(pl.Float64),
    ]
    return frame.select(cols).sort("trial")


def read_chunks(paths: Sequence[Path]) -> pl.DataFrame | None:
    """Every chunk file's rows in one frame (memory-mapped; None when there is none)."""
    frames = [open_ipc(p) for p in paths]
    if not frames:
        return None
    return pl.concat(frames, how="diagonal_relaxed")


def assemble(
    chunks: pl.DataFrame | None,
    params: Sequence[tuple[str, Sequence[Any]]],
    *,
    sweep_id: str,
    metric: str,
) -> pl.DataFrame:
    """The summary: chunk rows in the fixed layout, best first by ``metric``.

    Sorted descending (ascending for :data:`LOWER_IS_BETTER`), NaN and null last, ties by
    trial. A trial present twice (a chunk recorded again after a crash) keeps one row.
    """
    keys = [k for k, _ in params]
    if chunks is None:
        chunks = pl.DataFrame(
            {"trial": [], **{k: [] for k in keys}, "status": [], "error": [], "seconds": []},
            schema={
                "trial": pl.Int64,
                **{k: param_dtype(v) for k, v in params},
                "status": pl.String,
                "error": pl.String,
                "seconds": pl.Float64,
            },
        )
    frame = normalise_chunk(chunks.unique("trial", keep="first", maintain_order=True), params)
    frame = frame.select(pl.lit(sweep_id, pl.String).alias("sweep_id"), pl.all())
    if metric not in frame.columns:
        return frame.sort("trial")
    descending = metric not in LOWER_IS_BETTER
    return frame.sort(
        [pl.col(metric).fill_nan(None), "trial"], descending=[descending, False], nulls_last=True
    )


def _ipc_bytes(frame: pl.DataFrame) -> bytes:
    # Canonical bytes: plain (large) strings, one chunk. Polars' own string_view layout keeps
    # the buffers strings were built in, so equal columns assembled from different chunk
    # files can differ in bytes; the oldest compat level has one layout per content.
    table = frame.rechunk().to_arrow(compat_level=pl.CompatLevel.oldest())
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=BATCH_ROWS)
    return sink.getvalue().to_pybytes()


def results_digest(summary: pl.DataFrame) -> str:
    """SHA-256 of the summary's Arrow IPC bytes without ``sweep_id`` and ``seconds``.

    Those two columns are the only ones that differ between two runs of the same sweep (a new
    id; wall times). Everything else (trial, params, every metric, status, error) and the row
    order must be identical byte for byte: resumed against uninterrupted, Ray against local,
    a replay against the original.
    """
    data = summary.drop([c for c in VOLATILE_COLUMNS if c in summary.columns])
    return hashlib.sha256(_ipc_bytes(data)).hexdigest()


def write_summary(summary: pl.DataFrame, path: Path) -> str:
    """Write ``summary.arrow`` atomically; return its file digest."""
    return write_ipc_atomic(summary, path)
