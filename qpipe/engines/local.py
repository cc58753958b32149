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

import contextlib
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
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
    processes
        Worker processes for :meth:`map_chunks` (a sweep's chunks; default 1: this process).
        A spawned worker takes seconds to start (imports, numba cache), so more pays off only
        for sweeps of minutes. A script that sets it must guard its entry point with
        ``if __name__ == "__main__":`` (Python's rule for spawned processes).
    """

    name = "local"
    POOL_AFTER = 2.0  # seconds of chunks in this process before worker processes start

    def __init__(self, threads: int = 2, processes: int | None = None) -> None:
        self.threads = max(1, threads)
        self.processes = max(1, processes or 1)

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

    def cluster_cpus(self) -> int:
        """Chunks :meth:`map_chunks` runs at once (its worker processes)."""
        return self.processes

    def map_chunks(
        self,
        fn: Callable[[S, C], R],
        shared: S,
        chunks: Iterable[C],
        on_result: Callable[[C, R], None],
    ) -> None:
        """``on_result(chunk, fn(shared, chunk))`` for each chunk, as they finish.

        Chunks run in this process until they have taken :attr:`POOL_AFTER` seconds; what is
        left then goes to ``processes`` spawned worker processes (a sweep's evaluator is mostly
        single-threaded numba, so one process per core is what uses the machine, and a sweep
        shorter than a worker's start-up never pays for one). ``chunks`` is read lazily, at
        most two per worker ahead, so a planner sizing the next chunk from ``on_result`` sees
        each result first. Workers ignore SIGINT and die with this process; on any exception,
        Ctrl-C included, queued chunks are cancelled and running ones finish (a chunk takes
        ~0.2-2 s) before it propagates, so nothing is written behind the caller's back.
        """
        source = iter(chunks)
        start = time.perf_counter()
        for chunk in source:
            on_result(chunk, fn(shared, chunk))
            if self.processes > 1 and time.perf_counter() - start >= self.POOL_AFTER:
                break
        else:
            return
        _map_in_processes(fn, shared, source, on_result, self.processes)

    def close(self) -> None:
        """Nothing to release; present so every engine can be used the same way."""

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _worker_init() -> None:
    """A chunk worker: Ctrl-C is the driver's to handle, and the worker dies with the driver.

    Without the second, a worker orphaned by a SIGKILL of the driver could finish its chunk and
    write its file while a resumed sweep is already running (``PR_SET_PDEATHSIG``, Linux).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the driver died before the call: do not run orphaned
            os._exit(1)


def _map_in_processes(
    fn: Callable[[S, C], R],
    shared: S,
    chunks: Iterator[C],
    on_result: Callable[[C, R], None],
    processes: int,
) -> None:
    ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
    pool = ProcessPoolExecutor(processes, mp_context=ctx, initializer=_worker_init)
    pending: dict[Future[R], C] = {}
    try:
        while True:
            while len(pending) < 2 * processes:
                chunk = next(chunks, None)
                if chunk is None:
                    break
                pending[pool.submit(fn, shared, chunk)] = chunk
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                on_result(pending.pop(future), future.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
