"""The local engine: one process, threads for independent steps.

For each level of independent steps (see :meth:`Pipeline.levels`):

1. resolve each input name in the context to a :class:`DatasetRef`;
2. open it zero-copy (memory map) as a ``LazyFrame`` (``ArrowStore.scan``);
3. call the stage, which only builds a lazy plan;
4. collect the plan, optionally check it (per-step validation), and write it to the store;
5. put the new refs into the context and record digests, rows and seconds.

Steps in one level run on a thread pool (Polars releases the GIL while it computes); results are
merged in pipeline order, so the outputs do not depend on which thread finished first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from qpipe.context import RunContext
from qpipe.engines.base import EngineRun, OutputCheck, StageRecord, StepCache, step_key
from qpipe.errors import StageError
from qpipe.stages.base import Pipeline, Step
from qpipe.store import ArrowStore, DatasetRef

__all__ = ["LocalEngine", "run_step"]

S = TypeVar("S")
C = TypeVar("C")
R = TypeVar("R")


def run_step(
    step: Step,
    context: RunContext,
    store: ArrowStore,
    check: OutputCheck | None,
    cache: StepCache | None = None,
) -> StageRecord:
    """Open the step's inputs from the store, call it, store its outputs; return its record.

    With a ``cache``, a step already computed on the same inputs with the same params is not
    recomputed: its output refs are reused (stages are pure, so the result would be identical).
    """
    start = time.perf_counter()
    refs = [context[name] for name in step.inputs]
    for name, ref in zip(step.inputs, refs, strict=True):
        if not isinstance(ref, DatasetRef):
            msg = f"stage `{step.name}`: input `{name}` is not a stored dataset ref"
            raise StageError(msg)
    digests = {n: r.digest for n, r in zip(step.inputs, refs, strict=True)}
    key = step_key(step, digests) if cache is not None else ""
    if cache is not None and check is None:
        hit = cache.get(key)
        if hit is not None:
            return StageRecord(step.name, digests, hit, time.perf_counter() - start, cached=True)
    frames = [store.scan(ref) for ref in refs]
    lazies = step.call(*frames)
    outputs: dict[str, DatasetRef] = {}
    for name, lazy in zip(step.outputs, lazies, strict=True):
        try:
            frame = lazy.collect()
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            msg = f"stage `{step.name}` failed computing `{name}`: {type(exc).__name__}: {first}"
            raise StageError(msg) from exc
        if check is not None:
            check(step, name, frame)
        outputs[name] = store.put(frame)
    if cache is not None:
        cache.put(key, outputs)
    return StageRecord(
        name=step.name,
        inputs=digests,
        outputs=outputs,
        seconds=time.perf_counter() - start,
    )


class LocalEngine:
    """Run pipelines in this process.

    Parameters
    ----------
    threads
        Worker threads for independent steps (default 2). Polars' own thread pool is separate
        (``POLARS_MAX_THREADS``); outputs are identical for any value of either.
    """

    name = "local"

    def __init__(self, threads: int = 2) -> None:
        self.threads = max(1, threads)

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
        records: list[StageRecord] = []
        for level in pipeline.levels(set(context)):
            if len(level) == 1 or self.threads == 1:
                done = [run_step(s, context, store, check, cache) for s in level]
            else:
                with ThreadPoolExecutor(max_workers=min(self.threads, len(level))) as pool:
                    futures = [
                        pool.submit(run_step, s, context, store, check, cache) for s in level
                    ]
                    done = [f.result() for f in futures]
            for record in done:  # pipeline order, whatever finished first
                context = context.with_refs(**record.outputs)
                records.append(record)
                if on_record is not None:
                    on_record(record)
        return EngineRun(context, tuple(records))

    def map_chunks(
        self,
        fn: Callable[[S, C], R],
        shared: S,
        chunks: Iterable[C],
        on_result: Callable[[C, R], None],
    ) -> None:
        """``on_result(chunk, fn(shared, chunk))`` for each chunk, one after another.

        ``chunks`` is read lazily, so a planner sizing the next chunk from ``on_result`` sees
        every result first. (One process: the evaluator already uses both cores through
        Polars and numba; running chunks in parallel threads would only contend for them.)
        """
        for chunk in chunks:
            on_result(chunk, fn(shared, chunk))

    def close(self) -> None:
        """Nothing to release; present so every engine can be used the same way."""

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
