"""The Ray engine: the same pipeline on a local or remote Ray cluster; only refs travel.

The only module in qpipe that imports ``ray`` (lazily: ``import qpipe`` works without it).
For each level of independent steps (see :meth:`Pipeline.levels`):

1. resolve every input name to a :class:`~qpipe.store.DatasetRef` (a cached step is reused
   from the :class:`~qpipe.engines.base.StepCache` and never submitted);
2. plan the shards (:func:`plan_shards`): a ``shard="symbol"`` stage is split into contiguous
   ranges of symbols (a symbol's whole history stays in one task), a ``shard="date"`` stage
   into contiguous ranges of dates (every date stays whole), an unsharded stage is one task.
   A shard is described by ``(column, low, high)``, so what a task receives does not grow with
   the universe;
3. submit one task per shard (:func:`_shard_task`) with refs only: the step (``ray.put`` once
   per step), the input refs and the shard bounds. With ``transport="path"`` the inputs are
   store paths every worker can read (shared storage); the task memory-maps them and writes its
   output to the store's scratch folder. With ``transport="object"`` the driver ``ray.put``\\ s
   each input once, as the bytes of its Arrow IPC file (workers map it zero-copy from the
   object store), and tasks return their outputs the same way, as ObjectRefs;
4. gather the shard outputs in shard order, put them in the step's output order (shards
   report whether their output is sorted by (shard key, other key) or (other key, shard key));
   a stage whose output order sharding cannot reproduce is re-run as one task, so the result
   is always the frame ``LocalEngine`` would have written: same bytes, same digest;
5. optionally check each output (per-step validation), store it, record the step (shards,
   retries, seconds) and put the new refs into the context.

A task whose worker dies is retried by Ray (``max_retries``); each attempt leaves a marker in
the scratch folder, so the record counts the retries. A task that fails for a data reason
fails the run with the stage's :class:`~qpipe.errors.StageError` (or the ``QpipeError`` the
stage raised), not a Ray traceback. Ctrl-C cancels the submitted tasks and shuts down a
cluster the engine started.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc

from qpipe._fs import safe_subdir
from qpipe.context import RunContext
from qpipe.engines.base import EngineRun, OutputCheck, StageRecord, StepCache, step_key
from qpipe.errors import EngineError, OptionalDependencyError, QpipeError, StageError
from qpipe.stages.base import Pipeline, Step
from qpipe.store import ArrowStore, DatasetRef, open_ipc, write_ipc_atomic
from qpipe.store.arrow import BATCH_ROWS

__all__ = [
    "RayEngine",
    "ShardSpec",
    "Transport",
    "import_ray",
    "loopback_only",
    "plan_shards",
    "probe_address",
]

Transport = Literal["path", "object"]
# (column, low, high): rows whose `column` lies in [low, high]; None = the whole input.
ShardSpec = tuple[str, Any, Any] | None

_OTHER_KEY = {"symbol": "date", "date": "symbol"}
S = TypeVar("S")
C = TypeVar("C")
R = TypeVar("R")
# Ray >= 2.x reads this when it is imported: with clusters "disabled" every service advertises
# and listens on 127.0.0.1 instead of the host's network address (checked with `ss -ltnp`).
_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def import_ray(*, loopback: bool = False) -> Any:
    """Import ray, or raise :class:`OptionalDependencyError` with the install hint.

    With ``loopback=True`` (a test harness that starts clusters itself, e.g. with
    ``ray.cluster_utils.Cluster``) Ray is told, for the rest of the process, to bind its
    services to 127.0.0.1. :class:`RayEngine` does not use this: it scopes the same setting to
    the start of its own cluster (:func:`loopback_only`).
    """
    if loopback:
        os.environ.setdefault(_LOOPBACK_ENV, "0")
    ray = _import_ray()
    if loopback and os.environ.get(_LOOPBACK_ENV) == "0":
        _set_cluster_mode(ray, enabled=False)
    return ray


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        msg = "the ray engine needs ray: pip install 'qpipe[ray]'"
        raise OptionalDependencyError(msg) from None
    return ray


def _set_cluster_mode(ray: Any, *, enabled: bool) -> bool | None:
    """Set Ray's cluster-mode constant (read when it is imported); return the old value."""
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    if constants is None or not hasattr(constants, "ENABLE_RAY_CLUSTER"):
        return None
    old = bool(constants.ENABLE_RAY_CLUSTER)
    constants.ENABLE_RAY_CLUSTER = enabled
    return old


@contextlib.contextmanager
def loopback_only(ray: Any) -> Iterator[None]:
    """While a local cluster starts: every Ray service binds to 127.0.0.1.

    Ray 2.60 binds the GCS, raylet and workers to the host's network address unless cluster
    mode is off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read by the services it spawns and,
    as a constant, by the driver; ``_node_ip_address`` alone does not do it: checked with
    ``ss -ltnp``). Both are set only for the duration of the start and restored afterwards,
    so nothing leaks into the rest of the process.
    """
    before = os.environ.get(_LOOPBACK_ENV)
    os.environ[_LOOPBACK_ENV] = "0"
    old = _set_cluster_mode(ray, enabled=False)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(_LOOPBACK_ENV, None)
        else:
            os.environ[_LOOPBACK_ENV] = before
        if old is not None:
            _set_cluster_mode(ray, enabled=old)


def probe_address(address: str, timeout: float) -> None:
    """Fail fast when nothing listens at a ``host:port`` (or ``ray://host:port``) address.

    ``ray.init`` retries an unreachable address for minutes; a TCP connect with a timeout
    answers in at most ``timeout`` seconds. ``auto`` and addresses without a port are left to
    Ray (they name a local cluster or a file).
    """
    text = address.removeprefix("ray://")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        msg = (
            f"cannot reach ray at `engine.address` `{address}` within {timeout:g}s ({why}); "
            f"start the cluster, fix the address, or leave it empty for a local cluster"
        )
        raise EngineError(msg) from None


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


def _sorted_flags(frame: pl.DataFrame, key: str) -> tuple[bool, bool]:
    """(sorted by (key, other), sorted by (other, key)); other is date for symbol and back."""
    other = _OTHER_KEY[key]
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
def _attempt(marker_dir: str, key: str) -> int:
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


def _shard_task(
    step: Step,
    shard: ShardSpec,
    scratch: str,
    key: str,
    transport: str,
    *inputs: Any,
) -> dict[str, Any]:
    """Run one shard of one step in a worker. Inputs are refs (or Arrow tables Ray resolved from
    ObjectRefs, zero-copy); the result is small: refs, or Arrow tables in the object store."""
    attempt = _attempt(scratch, key)
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
        flags.append(_sorted_flags(out, shard[0]) if shard is not None else (True, True))
        if transport == "path":
            path = Path(scratch) / f"{key}.{name}.a{attempt}.arrow"
            digest = write_ipc_atomic(out, path)
            outputs.append(DatasetRef(str(path), digest, out.height, ()))
        else:
            outputs.append(ipc_bytes(out))
    node = _current_node()
    return {"outputs": outputs, "flags": flags, "attempt": attempt, "node": node}


def _chunk_task(fn: Callable[[Any, Any], Any], shared: Any, chunk: Any) -> tuple[Any, str]:
    """A :meth:`RayEngine.map_chunks` task: ``fn(shared, chunk)`` and the node it ran on."""
    return fn(shared, chunk), _current_node()


def _current_node() -> str:
    import ray  # inside a Ray worker: ray is there

    return ray.get_runtime_context().get_node_id()


# the engine --------------------------------------------------------------------------------
@dataclass
class _Pending:
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


class RayEngine:
    """Run pipelines on Ray: sharded steps as one task per shard; only refs cross processes.

    Parameters
    ----------
    address
        ``None`` starts a local cluster bound to 127.0.0.1 (no dashboard, quiet logs) on first
        use and shuts it down on :meth:`close`; an address (``"host:port"``, ``"auto"``) joins
        an existing cluster, which is left running. A Ray already initialised in this process
        is reused and left running.
    num_cpus, object_store_memory
        Resources of a local cluster (ignored when joining one).
    max_retries
        Ray retries a task this many times when its worker dies; the retries are recorded.
    shards
        Tasks per sharded step (default: the cluster's CPUs), capped by the distinct keys.
    transport
        ``"path"``: tasks read and write store files (every node must see the store path).
        ``"object"``: inputs travel as ObjectRefs to Arrow tables in the object store and tasks
        return tables; only the driver touches the store.
    connect_timeout
        Seconds to wait for a cluster at ``address`` (a TCP probe, then ``ray.init``) before
        raising :class:`EngineError` (``[engine] connect_timeout``).

    Examples
    --------
    >>> with RayEngine(num_cpus=2) as engine:  # doctest: +SKIP
    ...     done = engine.run(pipeline, RunContext({"prices": ref}), store)
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        *,
        object_store_memory: int | None = None,
        max_retries: int = 2,
        shards: int | None = None,
        transport: Transport = "path",
        connect_timeout: float = 30.0,
    ) -> None:
        if transport not in ("path", "object"):
            msg = f"ray `transport` must be path or object, got {transport!r}"
            raise EngineError(msg)
        self.address = address
        self.num_cpus = num_cpus
        self.object_store_memory = object_store_memory
        self.max_retries = max(0, int(max_retries))
        self.shards = shards
        self.transport: Transport = transport
        self.connect_timeout = float(connect_timeout)
        self.stats = TaskStats()
        self._ray = _import_ray()
        self._started = False
        self._remote: Any = None
        self._chunk_remote: Any = None

    # cluster ---------------------------------------------------------------------------
    @property
    def ray(self) -> Any:
        """The ``ray`` module, initialised (a local cluster is started on first use)."""
        ray = self._ray
        if not ray.is_initialized():
            where = self.address or "a local cluster"
            if self.address is not None:
                probe_address(self.address, self.connect_timeout)
            try:
                if self.address is None:
                    with loopback_only(ray):
                        self._bounded_init(
                            address="local",
                            num_cpus=self.num_cpus,
                            object_store_memory=self.object_store_memory,
                            include_dashboard=False,
                        )
                else:
                    self._bounded_init(address=self.address)
            except QpipeError:
                raise
            except Exception as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                msg = f"cannot start or reach ray at `{where}`: {first}"
                raise EngineError(msg) from None
            self._started = True
        return ray

    def _bounded_init(self, **kwargs: Any) -> None:
        """``ray.init`` that gives up after ``connect_timeout`` seconds when joining a cluster.

        A port that accepts connections but is not a Ray GCS makes ``ray.init`` retry for
        minutes; the call runs in a thread and the engine stops waiting at the timeout (the
        thread is a daemon and dies with the process). A local start is not bounded: it only
        waits for this machine.
        """
        ray = self._ray
        kwargs |= {"log_to_driver": False, "logging_level": logging.ERROR}
        if self.address is None:
            ray.init(**kwargs)
            return
        failure: list[BaseException] = []

        def init() -> None:
            try:
                ray.init(**kwargs)
            except BaseException as exc:  # handed to the caller's thread
                failure.append(exc)

        thread = threading.Thread(target=init, name="qpipe-ray-init", daemon=True)
        thread.start()
        thread.join(self.connect_timeout)
        if thread.is_alive():
            msg = (
                f"ray at `engine.address` `{self.address}` did not answer within "
                f"{self.connect_timeout:g}s (`engine.connect_timeout`); is it a ray cluster?"
            )
            raise EngineError(msg)
        if failure:
            raise failure[0]

    @property
    def started_cluster(self) -> bool:
        """True if this engine started the Ray it uses (and so shuts it down on close)."""
        return self._started

    def cluster_cpus(self) -> int:
        """CPUs of the cluster (at least 1)."""
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def _task(self) -> Any:
        if self._remote is None:
            self._remote = self.ray.remote(_shard_task)
        return self._remote

    def close(self) -> None:
        """Shut down the cluster if this engine started it; a joined cluster keeps running."""
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False
        self._remote = None
        self._chunk_remote = None

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # chunks ----------------------------------------------------------------------------
    def map_chunks(
        self,
        fn: Callable[[S, C], R],
        shared: S,
        chunks: Iterable[C],
        on_result: Callable[[C, R], None],
    ) -> None:
        """``on_result(chunk, fn(shared, chunk))`` for every chunk, as tasks finish.

        ``shared`` is put in the object store once; a task receives ``fn`` (by reference),
        that ObjectRef and its chunk, so its arguments do not grow with what ``shared`` points
        at (:attr:`stats` records the pickled size of each task's arguments). At most two
        tasks per cluster CPU are in flight, and ``chunks`` is read lazily, so a planner that
        sizes the next chunk from ``on_result`` sees every measurement before cutting it. A
        task whose worker dies is retried (``max_retries``); an error ``fn`` raises is raised
        here (a :class:`QpipeError` as itself). On any exception, Ctrl-C included, the tasks
        in flight are cancelled before it propagates.
        """
        ray = self.ray
        self.stats = TaskStats()
        shared_ref = ray.put(shared)
        if self._chunk_remote is None:
            self._chunk_remote = ray.remote(_chunk_task)
        task = self._chunk_remote.options(
            max_retries=self.max_retries, retry_exceptions=False, scheduling_strategy="SPREAD"
        )
        window = 2 * self.cluster_cpus()
        source = iter(chunks)
        pending: dict[Any, C] = {}

        def fill() -> None:
            while len(pending) < window:
                chunk = next(source, None)
                if chunk is None:
                    return
                args = (fn, shared_ref, chunk)
                self.stats.add(len(ray.cloudpickle.dumps(args)))
                pending[task.remote(*args)] = chunk

        try:
            fill()
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    chunk = pending.pop(ref)
                    value, node = self._chunk_value(ref)
                    self.stats.nodes.add(node)
                    on_result(chunk, value)
                fill()
        except BaseException:
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise

    def _chunk_value(self, ref: Any) -> Any:
        ray = self.ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, QpipeError):
                raise cause.with_traceback(None) from None
            first = (str(cause or exc).strip().splitlines() or [type(exc).__name__])[0]
            msg = f"sweep task failed: {type(cause or exc).__name__}: {first}"
            raise EngineError(msg) from None
        except ray.exceptions.RayError as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            msg = (
                f"sweep task could not finish after {self.max_retries} retries: "
                f"{type(exc).__name__}: {first}"
            )
            raise EngineError(msg) from None

    # running ---------------------------------------------------------------------------
    def run(
        self,
        pipeline: Pipeline,
        context: RunContext,
        store: ArrowStore,
        *,
        check: OutputCheck | None = None,
        on_record: Callable[[StageRecord], None] | None = None,
        cache: StepCache | None = None,
    ) -> EngineRun:
        """Run ``pipeline`` on the cluster; outputs are identical to :class:`LocalEngine`'s."""
        ray = self.ray
        self.stats = TaskStats()
        scratch = safe_subdir(store.subfolder("tmp"), "ray", "store folder") / secrets.token_hex(6)
        objects: dict[str, Any] = {}  # digest -> ObjectRef, put once per run
        records: list[StageRecord] = []
        outstanding: list[Any] = []
        try:
            for level in pipeline.levels(set(context)):
                pending = [
                    self._submit(s, context, store, scratch, objects, check, cache) for s in level
                ]
                for p in pending:
                    outstanding.extend(p.refs)
                for p in pending:  # pipeline order, whatever finished first
                    record = p.record or self._gather(p, context, store, scratch, objects, check)
                    if cache is not None and not record.cached and check is None:
                        cache.put(p.key, record.outputs)
                    context = context.with_refs(**record.outputs)
                    records.append(record)
                    if on_record is not None:
                        on_record(record)
                outstanding.clear()
        except KeyboardInterrupt:
            for ref in outstanding:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            if self._started:
                self.close()
            raise
        finally:
            objects.clear()
            shutil.rmtree(scratch, ignore_errors=True)
        return EngineRun(context, tuple(records))

    def _input_refs(self, step: Step, context: RunContext) -> list[DatasetRef]:
        refs = [context[name] for name in step.inputs]
        for name, ref in zip(step.inputs, refs, strict=True):
            if not isinstance(ref, DatasetRef):
                msg = f"stage `{step.name}`: input `{name}` is not a stored dataset ref"
                raise StageError(msg)
        return refs

    def _shipped(
        self, refs: list[DatasetRef], store: ArrowStore, objects: dict[str, Any]
    ) -> list[Any]:
        """What a task receives for its inputs: the refs, or ObjectRefs to Arrow tables."""
        if self.transport == "path":
            return list(refs)
        shipped = []
        for ref in refs:
            if ref.digest not in objects:
                objects[ref.digest] = self.ray.put(_arrow_table(store, ref))
            shipped.append(objects[ref.digest])
        return shipped

    def _submit(
        self,
        step: Step,
        context: RunContext,
        store: ArrowStore,
        scratch: Path,
        objects: dict[str, Any],
        check: OutputCheck | None,
        cache: StepCache | None,
        *,
        sharded: bool = True,
    ) -> _Pending:
        start = time.perf_counter()
        refs = self._input_refs(step, context)
        digests = {n: r.digest for n, r in zip(step.inputs, refs, strict=True)}
        key = step_key(step, digests)
        if cache is not None and check is None:
            hit = cache.get(key)
            if hit is not None:
                seconds = time.perf_counter() - start
                record = StageRecord(step.name, digests, hit, seconds, cached=True)
                return _Pending(step, digests, key, start, record=record)
        shards: list[ShardSpec] = [None]
        by = step.stage.shard
        if sharded and by is not None:
            n = self.shards or self.cluster_cpus()
            first = next((r for r in refs if by in r.columns), None)
            if first is not None:
                shards = plan_shards(store.open(first), by, n)
        ray = self.ray
        step_ref = ray.put(step)
        self.stats.step_bytes[step.name] = len(ray.cloudpickle.dumps(step))
        inputs = self._shipped(refs, store, objects)
        # SPREAD: shards go to different nodes where there are several
        task = self._task().options(
            max_retries=self.max_retries, retry_exceptions=False, scheduling_strategy="SPREAD"
        )
        pending = _Pending(step, digests, key, start, shards=shards)
        for i, shard in enumerate(shards):
            task_key = f"{key[:16]}-{int(sharded)}-{i}"
            args = (step_ref, shard, str(scratch), task_key, self.transport, *inputs)
            self.stats.add(len(ray.cloudpickle.dumps(args)))
            pending.refs.append(task.remote(*args))
        return pending

    def _results(self, pending: _Pending) -> list[dict[str, Any]]:
        ray = self.ray
        try:
            return ray.get(pending.refs)
        except ray.exceptions.RayTaskError as exc:
            for ref in pending.refs:
                with contextlib.suppress(Exception):
                    ray.cancel(ref)
            cause = getattr(exc, "cause", None)
            if isinstance(cause, QpipeError):  # picklable: the stage's own error, intact
                raise cause.with_traceback(None) from None
            if cause is not None:
                first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
                msg = f"stage `{pending.step.name}` failed: {type(cause).__name__}: {first}"
            else:
                msg = f"stage `{pending.step.name}` failed in a ray task"
            raise StageError(msg) from None
        except ray.exceptions.RayError as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            msg = (
                f"stage `{pending.step.name}`: ray task could not finish after "
                f"{self.max_retries} retries: {type(exc).__name__}: {first}"
            )
            raise EngineError(msg) from None

    def _gather(
        self,
        pending: _Pending,
        context: RunContext,
        store: ArrowStore,
        scratch: Path,
        objects: dict[str, Any],
        check: OutputCheck | None,
    ) -> StageRecord:
        step = pending.step
        results = self._results(pending)
        retries = sum(r["attempt"] for r in results)
        self.stats.nodes.update(r["node"] for r in results)
        shard_key = pending.shards[0][0] if pending.shards[0] is not None else None
        frames_by_output: dict[str, pl.DataFrame] = {}
        for j, name in enumerate(step.outputs):
            parts = [self._frame(r["outputs"][j]) for r in results]
            if shard_key is None or len(parts) == 1:
                frames_by_output[name] = parts[0]
                continue
            flags = [r["flags"][j] for r in results]
            if all(f[0] for f in flags):
                frames_by_output[name] = pl.concat(parts, how="vertical")
            elif all(f[1] for f in flags):
                other = _OTHER_KEY[shard_key]
                frames_by_output[name] = pl.concat(parts, how="vertical").sort(
                    [other, shard_key], maintain_order=True
                )
            else:
                # the stage does not sort its output: only one task reproduces the local order
                again = self._submit(
                    step, context, store, scratch, objects, None, None, sharded=False
                )
                again.start = pending.start
                record = self._gather(again, context, store, scratch, objects, check)
                return StageRecord(
                    record.name,
                    record.inputs,
                    record.outputs,
                    record.seconds,
                    shards=1,
                    retries=record.retries + retries,
                )
        outputs: dict[str, DatasetRef] = {}
        for name, frame in frames_by_output.items():
            if check is not None:
                check(step, name, frame)
            ref = store.put(frame)
            outputs[name] = ref
            if self.transport == "object":
                objects[ref.digest] = self.ray.put(_arrow_table(store, ref))
        return StageRecord(
            name=step.name,
            inputs=pending.digests,
            outputs=outputs,
            seconds=time.perf_counter() - pending.start,
            shards=len(pending.shards),
            retries=retries,
        )

    @staticmethod
    def _frame(item: Any) -> pl.DataFrame:
        return open_ipc(item.path) if isinstance(item, DatasetRef) else ipc_frame(item)


def _arrow_table(store: ArrowStore, ref: DatasetRef) -> np.ndarray:
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
