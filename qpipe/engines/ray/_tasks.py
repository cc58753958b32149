"""What a Ray task does, and how work is cut into tasks: shard plans, the shard and chunk tasks,
what crossed the process boundary, and Arrow IPC bytes for the object store.

Only the two task functions touch ``ray`` (to name the node they ran on, inside a worker).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc

from qpipe.engines.base import StageRecord
from qpipe.errors import StageError
from qpipe.stages.base import Step
from qpipe.store import ArrowStore, DatasetRef, open_ipc, write_ipc_atomic
from qpipe.store.arrow import BATCH_ROWS

__all__ = ["ShardSpec", "TaskStats", "Transport", "ipc_bytes", "ipc_frame", "plan_shards"]

Transport = Literal["path", "object"]
# (column, low, high): rows whose `column` lies in [low, high]; None = the whole input.
ShardSpec = tuple[str, Any, Any] | None

OTHER_KEY = {"symbol": "date", "date": "symbol"}


# planning -----------------------------------------------------------------------------------
def plan_shards(frame: pl.DataFrame, column: str, shards: int) -> list[ShardSpec]:
    """Split ``frame`` into at most ``shards`` contiguous ranges of ``column`` values.

    Ranges are cut where the cumulative row count crosses ``k / shards`` of the total, so
    shards hold similar numbers of rows; a value (a symbol's history, a whole date) is never
    split. Returns ``[None]`` (one unsharded task) when there is nothing to split.
    """
    if shards <= 1 or column not in frame.columns or frame.height == 0:
        return [None]
    counts = (
        frame.lazy()
        .filter(pl.col(column).is_not_null())
        .group_by(column)
        .len()
        .sort(column)
        .collect()
    )
    if counts.height < 2 or counts["len"].sum() != frame.height:  # nulls cannot be ranged
        return [None]
    n = min(shards, counts.height)
    before = counts["len"].cum_sum() - counts["len"]
    group = (before * n // frame.height).clip(0, n - 1)
    bounds = (
        counts.with_columns(group.alias("g"))
        .group_by("g", maintain_order=True)
        .agg(pl.col(column).first().alias("lo"), pl.col(column).last().alias("hi"))
    )
    return [(column, lo, hi) for lo, hi in zip(bounds["lo"], bounds["hi"], strict=True)]


def sorted_flags(frame: pl.DataFrame, key: str) -> tuple[bool, bool]:
    """(sorted by (key, other), sorted by (other, key)); other is date for symbol and back."""
    other = OTHER_KEY[key]
    if key not in frame.columns or frame.height < 2:
        return True, True

    def by(first: str, second: str | None) -> bool:
        a, b = pl.col(first), pl.col(first).shift(-1)
        ok = b.is_null() | (b > a)
        if second is None:
            ok = ok | (b == a)
        else:
            c, d = pl.col(second), pl.col(second).shift(-1)
            ok = ok | ((b == a) & (d >= c))
        return bool(frame.select(ok.slice(0, frame.height - 1).all()).item())

    if other not in frame.columns:
        flag = by(key, None)
        return flag, flag
    return by(key, other), by(other, key)


# the task ----------------------------------------------------------------------------------
def attempt_number(marker_dir: str, key: str) -> int:
    """Claim the next attempt number for task ``key`` (0 on the first run, 1 after a retry)."""
    folder = Path(marker_dir)
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    while True:
        try:
            fd = os.open(folder / f"{key}.attempt{n}", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            n += 1
            continue
        os.close(fd)
        return n


def shard_task(
    step: Step,
    shard: ShardSpec,
    scratch: str,
    key: str,
    transport: str,
    *inputs: Any,
) -> dict[str, Any]:
    """Run one shard of one step in a worker. Inputs are refs (or Arrow tables Ray resolved from
    ObjectRefs, zero-copy); the result is small: refs, or Arrow tables in the object store."""
    attempt = attempt_number(scratch, key)
    frames: list[pl.LazyFrame] = []
    for item in inputs:
        # a memory map of a store file, or a view of the object store: no copy either way
        frame = open_ipc(item.path) if isinstance(item, DatasetRef) else ipc_frame(item)
        lazy = frame.lazy()
        if shard is not None and shard[0] in frame.columns:
            lo, hi = pl.lit(shard[1]), pl.lit(shard[2])
            lazy = lazy.filter(pl.col(shard[0]).is_between(lo, hi, closed="both"))
        frames.append(lazy)
    outputs: list[Any] = []
    flags: list[tuple[bool, bool]] = []
    for name, lazy in zip(step.outputs, step.call(*frames), strict=True):
        try:
            out = lazy.collect()
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            msg = f"stage `{step.name}` failed computing `{name}`: {type(exc).__name__}: {first}"
            raise StageError(msg) from None
        flags.append(sorted_flags(out, shard[0]) if shard is not None else (True, True))
        if transport == "path":
            path = Path(scratch) / f"{key}.{name}.a{attempt}.arrow"
            digest = write_ipc_atomic(out, path)
            outputs.append(DatasetRef(str(path), digest, out.height, ()))
        else:
            outputs.append(ipc_bytes(out))
    node = current_node()
    return {"outputs": outputs, "flags": flags, "attempt": attempt, "node": node}


def chunk_task(fn: Callable[[Any, Any], Any], shared: Any, chunk: Any) -> tuple[Any, str]:
    """A :meth:`RayEngine.map_chunks` task: ``fn(shared, chunk)`` and the node it ran on."""
    return fn(shared, chunk), current_node()


def current_node() -> str:
    import ray  # inside a Ray worker: ray is there

    return ray.get_runtime_context().get_node_id()


# the engine's bookkeeping ---------------------------------------------------------------
@dataclass
class Pending:
    """A step whose tasks are submitted (or a cached step, with ``record`` already set)."""

    step: Step
    digests: dict[str, str]
    key: str
    start: float
    shards: list[ShardSpec] = field(default_factory=list)
    refs: list[Any] = field(default_factory=list)
    record: StageRecord | None = None


@dataclass
class TaskStats:
    """What crossed the process boundary in the last run: pickled task arguments, in bytes."""

    tasks: int = 0
    max_task_bytes: int = 0
    total_task_bytes: int = 0
    step_bytes: dict[str, int] = field(default_factory=dict)  # step -> pickled step (once)
    nodes: set[str] = field(default_factory=set)  # Ray node ids that ran a task

    def add(self, n: int) -> None:
        self.tasks += 1
        self.max_task_bytes = max(self.max_task_bytes, n)
        self.total_task_bytes += n


def arrow_table(store: ArrowStore, ref: DatasetRef) -> np.ndarray:
    """A stored entry's bytes (an Arrow IPC file) as an array for ``ray.put`` (one copy)."""
    store.open(ref)  # the store's path checks: the ref must be one of its entries
    return np.fromfile(ref.path, dtype=np.uint8)


def ipc_bytes(frame: pl.DataFrame) -> np.ndarray:
    """``frame`` as the bytes of an uncompressed Arrow IPC file, in a numpy array.

    Ray ships numpy arrays through its object store without pickling the data and readers get
    a zero-copy view; Ray's own Arrow table serializer does not handle ``string_view`` columns.
    """
    table = frame.rechunk().to_arrow(compat_level=pl.CompatLevel.newest())
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=BATCH_ROWS)
    return np.frombuffer(sink.getvalue(), dtype=np.uint8)


def ipc_frame(data: np.ndarray) -> pl.DataFrame:
    """The frame in an Arrow IPC file held in memory (e.g. the object store), without a copy."""
    table = ipc.open_file(pa.BufferReader(pa.py_buffer(data))).read_all()
    frame = pl.from_arrow(table, rechunk=False)
    assert isinstance(frame, pl.DataFrame)
    return frame
