"""Running a pipeline on Ray: one task per shard of each step, gathered in the local order.

A mixin of :class:`~qpipe.engines.ray.engine.RayEngine`, which provides ``ray`` (the initialised
module), ``stats``, ``shards``, ``transport``, ``max_retries``, ``_task()``, ``cluster_cpus()``
and ``close()``.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from qpipe._fs import safe_subdir
from qpipe.context import RunContext
from qpipe.engines.base import EngineRun, OutputCheck, StageRecord, StepCache, step_key
from qpipe.engines.ray._tasks import (
    OTHER_KEY,
    Pending,
    ShardSpec,
    TaskStats,
    arrow_table,
    ipc_frame,
    plan_shards,
)
from qpipe.errors import EngineError, QpipeError, StageError
from qpipe.stages.base import Pipeline, Step
from qpipe.store import ArrowStore, DatasetRef, open_ipc

__all__ = ["StepRunner"]


class StepRunner:
    """:meth:`run` for :class:`RayEngine`: sharded steps as tasks, only refs cross processes."""

    ray: Any
    stats: TaskStats
    shards: int | None
    transport: str
    max_retries: int
    _started: bool

    def _task(self) -> Any:  # provided by RayEngine
        raise NotImplementedError

    def cluster_cpus(self) -> int:  # provided by RayEngine
        raise NotImplementedError

    def close(self) -> None:  # provided by RayEngine
        raise NotImplementedError

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
                objects[ref.digest] = self.ray.put(arrow_table(store, ref))
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
    ) -> Pending:
        start = time.perf_counter()
        refs = self._input_refs(step, context)
        digests = {n: r.digest for n, r in zip(step.inputs, refs, strict=True)}
        key = step_key(step, digests)
        if cache is not None and check is None:
            hit = cache.get(key)
            if hit is not None:
                seconds = time.perf_counter() - start
                record = StageRecord(step.name, digests, hit, seconds, cached=True)
                return Pending(step, digests, key, start, record=record)
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
        pending = Pending(step, digests, key, start, shards=shards)
        for i, shard in enumerate(shards):
            task_key = f"{key[:16]}-{int(sharded)}-{i}"
            args = (step_ref, shard, str(scratch), task_key, self.transport, *inputs)
            self.stats.add(len(ray.cloudpickle.dumps(args)))
            pending.refs.append(task.remote(*args))
        return pending

    def _results(self, pending: Pending) -> list[dict[str, Any]]:
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
        pending: Pending,
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
                other = OTHER_KEY[shard_key]
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
                objects[ref.digest] = self.ray.put(arrow_table(store, ref))
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
