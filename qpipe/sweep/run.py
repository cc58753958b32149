"""Running a sweep: trials are rows, evaluated in chunks by the engine, streamed to disk.

Step by step (:func:`run_sweep`):

1. The grid is checked in full (:mod:`qpipe.sweep.grid`); bad input is a one-line
   :class:`~qpipe.errors.ConfigError` before any work, recorded as ``sweep_failed``.
2. The prices are ingested once into the store (the built-in universe is generated once per
   parameter set and reused), and the evaluator pivots them once into a panel
   (``build_panel``): every task gets a small ref to it and memory-maps it.
3. The sweep folder is created, or an unfinished one with the same key is picked up
   (:mod:`qpipe.sweep.resume`); ``sweep_started`` (or ``sweep_resumed``) goes to the ledger.
4. The engine maps :func:`qpipe.sweep.task.run_chunk` over chunks of the trials not yet done
   (:class:`~qpipe.sweep.plan.ChunkPlanner` sizes them from measured speed). Each finished
   chunk is an Arrow file written atomically and one ``sweep_chunk`` record; the driver holds
   only counters, so memory does not grow with the number of trials.
5. The chunk files become ``summary.arrow`` (sorted best first); then ``sweep_finished``; then
   the trial-aware statistics of the best trial (:func:`qpipe.sweep.page.judge`: the DSR with
   N from the ledger, MinTRL, the PBO; recorded as ``trial_stats``) and ``sweep.html`` with
   them. On any failure, Ctrl-C and SIGTERM included, the trials that finished
   are written as ``summary.arrow`` all the same, ``sweep_failed`` is recorded, and the error
   propagates: the same command (or ``--resume SWEEP_ID``) runs only the missing trials.
"""

from __future__ import annotations

import contextlib
import importlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from qpipe.config import ThreadSafeConfig
from qpipe.errors import ConfigError
from qpipe.ledger import Ledger
from qpipe.sweep.grid import MAX_TRIALS, Grid, grid_from_config
from qpipe.sweep.page import judge
from qpipe.sweep.record import SweepRecorder
from qpipe.sweep.resume import (
    SweepFolder,
    done_trials,
    find_unfinished,
    results_config_digest,
    sweep_key,
)
from qpipe.sweep.stream import (
    Progress,
    finish,
    first_line,
    record_interrupted,
    stream,
    uninterrupted,
)
from qpipe.sweep.summary import results_digest
from qpipe.sweep.task import DEFAULT_EVALUATOR, SweepJob

__all__ = ["SweepResult", "record_setup_failure", "run_sweep", "sweep_metric"]

OnEvent = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class SweepResult:
    """The sorted summary and where it was written."""

    sweep_id: str
    metric: str
    grid: Grid
    folder: Path
    summary: pl.DataFrame
    results_digest: str
    seconds: float
    reused: int = 0  # trials taken from an interrupted earlier attempt
    verdict: str = ""  # ``DSR 0.41 with N = 240 trials: not significant at 95%``, or why not

    @property
    def params(self) -> tuple[str, ...]:
        return self.grid.keys

    @property
    def summary_path(self) -> Path:
        return self.folder / "summary.arrow"

    @property
    def html_path(self) -> Path | None:
        path = self.folder / "sweep.html"
        return path if path.exists() else None

    @property
    def failed(self) -> pl.DataFrame:
        return self.summary.filter(pl.col("status") != "ok").sort("trial")


def sweep_metric(cfg: ThreadSafeConfig, default: str = "sharpe") -> str:
    """The ranking metric: ``[sweep] metric`` if set, else ``default``."""
    metric = cfg.sweep.get("metric", default)
    if not isinstance(metric, str) or not metric:
        msg = f"`sweep.metric` must be a metric name such as `sharpe`, got {metric!r}"
        raise ConfigError(msg)
    return metric


def _as_grid(
    cfg: ThreadSafeConfig,
    grid: Grid | Sequence[tuple[str, Sequence[Any]]] | None,
    flags: Sequence[tuple[str, Sequence[Any], str]],
    max_trials: int,
) -> Grid:
    if isinstance(grid, Grid):
        return grid
    if grid is None:
        return grid_from_config(cfg, flags, max_trials=max_trials)
    pairs = [(k, list(v), f"entry `{k}`") for k, v in grid]
    return grid_from_config(cfg.replace(sweep={}), pairs, max_trials=max_trials)


def _ingest(cfg: ThreadSafeConfig, store: Any) -> Any:
    """The prices' stored ref: the built-in universe (once per parameter set) or a file."""
    from qpipe.runs.ingest import stored_prices

    if cfg.data.weights:
        msg = "a sweep runs the strategy on the prices; `data.weights` must be empty"
        raise ConfigError(msg)
    return stored_prices(cfg, store).ref


def run_sweep(
    cfg: ThreadSafeConfig,
    grid: Grid | Sequence[tuple[str, Sequence[Any]]] | None = None,
    *,
    flags: Sequence[tuple[str, Sequence[Any], str]] = (),
    max_trials: int = MAX_TRIALS,
    engine: Any = None,
    out: str | Path | None = None,
    ledger: str | Path | None = None,
    metric: str | None = None,
    resume: str | None = None,
    auto_resume: bool = True,
    on_event: OnEvent | None = None,
    evaluator: str = DEFAULT_EVALUATOR,
    argv: Sequence[str] | None = None,
) -> SweepResult:
    """Evaluate every trial of ``grid`` over ``cfg``; return the sorted summary.

    Parameters
    ----------
    cfg
        The base config.
    grid
        A checked :class:`Grid`, or ``[(key, values), ...]`` (checked here); None: the
        ``[sweep]`` table of ``cfg`` and ``flags``.
    flags, max_trials
        ``(key, values, origin)`` from the command line, and the largest grid accepted (see
        :func:`~qpipe.sweep.grid.grid_from_config`). A bad grid is recorded as ``sweep_failed``.
    engine
        An engine instance, ``"local"``/``"ray"``, or None for ``cfg.engine.kind``.
    metric
        The ranking metric (default: ``[sweep] metric``, else ``sharpe``).
    resume
        A sweep id to continue; its grid, config and data must match. Without it an
        unfinished sweep with the same key is continued when ``auto_resume``.
    on_event
        ``(kind, data)`` callback: ``sweep_started`` and ``sweep_chunk`` (progress counters,
        trials/s, ETA), for a progress line. Nothing is printed.
    evaluator
        Module providing ``build_panel`` and ``evaluate_chunk`` (the batched backtest).
    """
    from qpipe.runs.paths import new_run_id, resolve_paths

    t0, emit = time.perf_counter(), on_event or (lambda kind, data: None)
    paths = resolve_paths(cfg, out, ledger)
    for folder_ in (paths.out, paths.ledger.parent):
        folder_.mkdir(parents=True, exist_ok=True)
    book = Ledger(paths.ledger)
    recorder = SweepRecorder(book, resume or new_run_id())
    try:
        grid = _as_grid(cfg, grid, flags, max_trials)
        metric = metric or sweep_metric(cfg)
        setup = _prepare(cfg, grid, metric, paths, recorder, resume, auto_resume, evaluator, argv)
    except BaseException as exc:
        with uninterrupted(), contextlib.suppress(Exception):
            _record_setup_failure(recorder, exc)
        raise
    folder, job, done, next_index = setup
    recorder = SweepRecorder(book, folder.sweep_id)
    info = {"sweep_id": folder.sweep_id, "folder": str(folder.path), "reused": len(done)}
    emit("sweep_started", {**info, "n_trials": grid.n_trials})
    eng, own = _engine(cfg, engine)
    progress = Progress(grid.n_trials, len(done), emit)
    try:
        stream(eng, job, done, next_index, recorder, progress)
        summary = finish(folder, grid, metric, page=False)
    except BaseException as exc:
        with uninterrupted():
            record_interrupted(folder, grid, metric, recorder, progress, exc)
        raise
    finally:
        if own:
            eng.close()
    digest = results_digest(summary)
    with uninterrupted():
        _record_finished(folder, recorder, summary, digest, time.perf_counter() - t0)
    line = judge(folder, paths.ledger, paths.store, evaluator, summary, grid.keys, metric)
    return SweepResult(folder.sweep_id, metric, grid, folder.path, summary, digest,
                       time.perf_counter() - t0, len(done), line)  # fmt: skip


def _record_finished(
    folder: SweepFolder, recorder: SweepRecorder, summary: pl.DataFrame, digest: str, secs: float
) -> None:
    ok = int((summary["status"] == "ok").sum())
    folder.set_state("finished", results_digest=digest)
    recorder.finished(
        n_trials=summary.height,
        n_ok=ok,
        n_failed=summary.height - ok,
        results_digest=digest,
        summary=str(folder.path / "summary.arrow"),
        seconds=round(secs, 6),
    )


def _record_setup_failure(recorder: SweepRecorder, exc: BaseException) -> None:
    phase = "config" if isinstance(exc, ConfigError) else "setup"
    recorder.failed(error=type(exc).__name__, message=first_line(exc), phase=phase)


def record_setup_failure(
    cfg: ThreadSafeConfig,
    exc: BaseException,
    *,
    out: str | Path | None = None,
    ledger: str | Path | None = None,
) -> None:
    """Record a sweep that failed before it started (e.g. a malformed ``--sweep`` flag) as
    ``sweep_failed`` in the ledger it would have used; best effort, never raises."""
    from qpipe.runs.paths import new_run_id, resolve_paths

    with contextlib.suppress(Exception):
        paths = resolve_paths(cfg, out, ledger)
        paths.ledger.parent.mkdir(parents=True, exist_ok=True)
        _record_setup_failure(SweepRecorder(Ledger(paths.ledger), new_run_id()), exc)


def _engine(cfg: ThreadSafeConfig, engine: Any) -> tuple[Any, bool]:
    from qpipe.engines import make_engine

    if engine is None or isinstance(engine, str):
        kind = engine if isinstance(engine, str) else cfg.engine.kind
        return make_engine(cfg.replace(engine={"kind": kind})), True
    return engine, False


def _prepare(
    cfg: ThreadSafeConfig,
    grid: Grid,
    metric: str,
    paths: Any,
    recorder: SweepRecorder,
    resume: str | None,
    auto_resume: bool,
    evaluator: str,
    argv: Sequence[str] | None,
) -> tuple[SweepFolder, SweepJob, set[int], int]:
    """Ingest, panel, folder (new or resumed), ``sweep_started``: everything before the trials."""
    from qpipe._versions import qpipe_version
    from qpipe.store import ArrowStore

    base = cfg.replace(sweep={})
    store = ArrowStore(paths.store)
    prices = _ingest(base, store)
    config_digest = results_config_digest(base)
    key = sweep_key(grid.digest, config_digest, prices.digest, evaluator)
    folder: SweepFolder | None
    if resume is not None:
        folder = SweepFolder.under(paths.out, resume)
        if folder.manifest().get("key") != key:
            msg = (
                f"sweep `{resume}` was run with another grid, config, data or evaluator; "
                f"re-run the command it was started with (see its `config.toml`)"
            )
            raise ConfigError(msg)
    else:
        folder = find_unfinished(paths.out, key) if auto_resume else None
    resumed = folder is not None
    if folder is None:
        folder = SweepFolder.under(paths.out, recorder.sweep_id)
    recorder.sweep_id = folder.sweep_id
    info = {
        "sweep_id": folder.sweep_id,
        "key": key,
        "grid": grid.to_json(),
        "grid_digest": grid.digest,
        "config_digest": config_digest,
        "data_digest": prices.digest,
        "evaluator": evaluator,
        "n_trials": grid.n_trials,
        "code_version": qpipe_version(),
        "metric": metric,
    }
    if resumed:
        done, next_index = done_trials(folder, paths.ledger, recorder)
        recorder.resumed(n_done=len(done), next_chunk=next_index)
    else:
        config_toml = cfg.replace(sweep={**dict(grid.to_json()), "metric": metric})
        folder.create({**info, "state": "running"}, config_toml.to_toml())
        recorder.started(**info, config=base.to_dict(), argv=list(argv or []))
        done, next_index = set(), 0
    panel = importlib.import_module(evaluator).build_panel(prices, store)
    job = SweepJob(panel, base.to_dict(), grid, str(paths.store), str(folder.chunk_dir), evaluator)
    return folder, job, done, next_index
