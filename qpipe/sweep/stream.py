"""Streaming a sweep's chunks through the engine, and closing it (finished or interrupted).

The driver keeps counters, never rows: each finished chunk is already an Arrow file on disk
(:func:`qpipe.sweep.task.run_chunk`); here it becomes one ``sweep_chunk`` record and one
progress event, and its measured time sizes the next chunks.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import polars as pl

from qpipe.sweep.grid import Grid
from qpipe.sweep.page import write_page
from qpipe.sweep.plan import Chunk, ChunkPlanner
from qpipe.sweep.record import SweepRecorder
from qpipe.sweep.resume import SweepFolder, done_trials
from qpipe.sweep.summary import assemble, read_chunks, write_summary
from qpipe.sweep.task import ChunkResult, SweepJob, run_chunk

__all__ = ["Progress", "finish", "first_line", "record_interrupted", "stream", "uninterrupted"]

OnEvent = Callable[[str, dict[str, Any]], None]


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the final records are written (delivered afterwards)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class Progress:
    """Counters the driver keeps (never the rows): for events and the final records."""

    def __init__(self, total: int, done: int, emit: OnEvent) -> None:
        self.total, self.done, self.reused = total, done, done
        self.ok = self.failed = 0
        self.start = time.perf_counter()
        self.emit = emit

    def add(self, result: ChunkResult) -> None:
        self.done += len(result.trials)
        self.ok += result.n_ok
        self.failed += result.n_failed
        elapsed = time.perf_counter() - self.start
        fresh = self.done - self.reused
        rate = fresh / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else None
        self.emit(
            "sweep_chunk",
            {
                "chunk": result.index,
                "done": self.done,
                "total": self.total,
                "ok": self.ok,
                "failed": self.failed,
                "trials_per_s": rate,
                "eta_s": eta,
            },
        )


def stream(
    engine: Any,
    job: SweepJob,
    done: set[int],
    next_index: int,
    recorder: SweepRecorder,
    progress: Progress,
) -> None:
    """Evaluate every trial not in ``done``: chunks through ``engine.map_chunks``, each one
    recorded as it finishes, its time sizing the next ones."""
    grid = job.grid
    planner = ChunkPlanner(
        grid.n_trials,
        (lambda p: grid.trial_at(p) in done) if done else None,
        first_index=next_index,
        workers=engine.cluster_cpus() if hasattr(engine, "cluster_cpus") else 1,
    )

    def on_result(chunk: Chunk, result: ChunkResult) -> None:
        planner.observe(len(result.trials), result.seconds)
        recorder.chunk(
            index=result.index,
            trials=result.trials,
            n_ok=result.n_ok,
            n_failed=result.n_failed,
            digest=result.digest,
            path=result.path,
            seconds=result.seconds,
        )
        progress.add(result)

    engine.map_chunks(run_chunk, job, planner, on_result)


def finish(folder: SweepFolder, grid: Grid, metric: str, *, page: bool = True) -> pl.DataFrame:
    """``summary.arrow`` and (unless not ``page``) ``sweep.html`` from the chunk files."""
    summary = assemble(
        read_chunks(folder.chunk_files()), grid.axes, sweep_id=folder.sweep_id, metric=metric
    )
    write_summary(summary, folder.path / "summary.arrow")
    if page:
        write_page(folder, summary, grid.keys, metric)
    return summary


def record_interrupted(
    folder: SweepFolder,
    grid: Grid,
    metric: str,
    recorder: SweepRecorder,
    progress: Progress,
    exc: BaseException,
) -> None:
    """The trials that finished as ``summary.arrow``, then ``sweep_failed`` (best effort).

    A chunk file written just before the interrupt, whose ``sweep_chunk`` record was not, is
    recorded first (``recovered``), so the ledger counts every trial the summary holds.
    """
    n_done = progress.done
    with contextlib.suppress(Exception):
        n_done = len(done_trials(folder, recorder.ledger.path, recorder)[0])
    with contextlib.suppress(Exception):
        finish(folder, grid, metric)
    with contextlib.suppress(Exception):
        folder.set_state("interrupted")
    with contextlib.suppress(Exception):
        recorder.failed(
            error=type(exc).__name__,
            message=first_line(exc),
            n_done=n_done,
            n_trials=progress.total,
            summary=str(folder.path / "summary.arrow"),
        )


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
