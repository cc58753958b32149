"""One run from start to end: open it, execute the phase graph, close it — whatever happens.

Every run that starts ends in the ledger: ``run_finished``, or ``run_failed`` for any failure,
Ctrl-C and SIGTERM included. The failure record is written with SIGINT and SIGTERM blocked, so a
second Ctrl-C cannot cut it off; the signal is delivered right after.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from qpipe.config import ThreadSafeConfig
from qpipe.engines import make_engine
from qpipe.engines.base import Engine, StepCache
from qpipe.errors import ConfigError
from qpipe.ledger import Ledger, RunRecorder
from qpipe.ledger import payloads as p
from qpipe.runs.env import EventSink, ReportResearch, RunEnv
from qpipe.runs.graph import PhaseGraph
from qpipe.runs.ingest import ingest
from qpipe.runs.outputs import outputs
from qpipe.runs.paths import RunPaths, create_run_dir, new_run_id, resolve_paths
from qpipe.runs.phases import audit, backtest, strategy
from qpipe.runs.provenance import config_failure_started, run_started
from qpipe.runs.result import RunResult
from qpipe.store import ArrowStore

__all__ = ["RUN_GRAPH", "record_config_failure", "run"]

RUN_GRAPH = PhaseGraph((ingest, strategy, audit, backtest, outputs))


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while a record is written; deliver the first afterwards.

    Masking the main thread (``pthread_sigmask``) is not enough: the OS may hand a process
    signal to any thread (Polars', numba's), and Python then runs the handler in the main thread
    anyway. So the handlers are swapped for ones that only note the signal, and the original
    handler of the first noted signal runs on exit (raising ``KeyboardInterrupt`` or the CLI's
    SIGTERM error there). Outside the main thread (no handlers run there) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[signal.Signals] = []
    held = (signal.SIGINT, signal.SIGTERM)
    old = {signum: signal.getsignal(signum) for signum in held}
    for signum in held:
        signal.signal(signum, lambda got, _frame: noted.append(signal.Signals(got)))
    try:
        yield
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        if noted:
            _deliver(noted[0], old[noted[0]])


def _deliver(signum: int, handler: object) -> None:
    if callable(handler):
        handler(signum, None)
    elif handler in (signal.SIG_DFL, None):
        signal.raise_signal(signum)  # the default action, now that the record is written


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _end_failed(recorder: RunRecorder, run_dir: Path, exc: BaseException) -> None:
    with signals_blocked():
        # the original error matters more than a failure to record it
        with contextlib.suppress(Exception):
            recorder.run_failed(p.RunFailed(error=type(exc).__name__, message=_first_line(exc)))
        with contextlib.suppress(OSError):
            run_dir.rmdir()  # only if empty: a quarantine file, if any, stays where the error says


def _start(
    cfg: ThreadSafeConfig, paths: RunPaths, engine_name: str, argv: Sequence[str] | None
) -> tuple[Path, RunRecorder]:
    run_id, run_dir = create_run_dir(paths)
    recorder = RunRecorder(Ledger(paths.ledger), run_id)
    try:
        recorder.run_started(run_started(cfg, engine_name, argv, run_dir))
    except BaseException:
        with contextlib.suppress(OSError):
            run_dir.rmdir()  # an unwritable ledger leaves no empty run folder behind
        raise
    return run_dir, recorder


@contextlib.contextmanager
def opened_run(
    cfg: ThreadSafeConfig,
    paths: RunPaths,
    engine: Engine | None,
    *,
    argv: Sequence[str] | None,
    emit: EventSink,
    cache: StepCache | None,
    report: bool,
    report_research: ReportResearch | None = None,
) -> Iterator[RunEnv]:
    """A started run's environment; a failure inside ends the run as failed and re-raises."""
    own_engine = engine is None
    name = cfg.engine.kind if own_engine else getattr(engine, "name", "custom")
    eng: Engine | None = engine
    started: tuple[Path, RunRecorder] | None = None
    try:
        # a signal during the start is held until `started` is set, so it is recorded below
        # (found by tests/reliability: SIGTERM right after `run_started` left a run `running`)
        with signals_blocked():
            started = _start(cfg, paths, name, argv)
        run_dir, recorder = started
        run_id = recorder.run_id
        emit("run_started", {"run_id": run_id, "out_dir": str(run_dir)})
        store = ArrowStore(paths.store)
        eng = make_engine(cfg) if own_engine else engine
        assert eng is not None
        yield RunEnv(
            run_id, cfg, paths, run_dir, store, eng, recorder, emit, cache, report, report_research
        )
    except BaseException as exc:
        if started is not None:  # else no run began (e.g. an unwritable ledger)
            _end_failed(started[1], started[0], exc)
        raise
    finally:
        if own_engine and eng is not None:
            eng.close()


def _resolved(
    config: ThreadSafeConfig | None, engine: Engine | str | None, **data: str | Path | None
) -> ThreadSafeConfig:
    cfg = config or ThreadSafeConfig.default()
    overrides = {key: str(value) for key, value in data.items() if value is not None}
    if overrides:
        cfg = cfg.replace(data=overrides)
    if isinstance(engine, str):
        cfg = cfg.replace(engine={"kind": engine})
    return cfg


def run(
    config: ThreadSafeConfig | None = None,
    *,
    data: str | Path | None = None,
    weights: str | Path | None = None,
    benchmark: str | Path | None = None,
    out: str | Path | None = None,
    ledger: str | Path | None = None,
    engine: Engine | str | None = None,
    argv: Sequence[str] | None = None,
    report: bool | None = None,
    on_event: EventSink | None = None,
    cache: StepCache | None = None,
    report_research: ReportResearch | None = None,
) -> RunResult:
    """Run one backtest end to end and return its :class:`RunResult`.

    Parameters
    ----------
    config
        The frozen config (defaults if None). ``data``/``weights``/``benchmark`` replace its data
        sources; ``out``/``ledger`` its paths; ``engine`` its engine (an instance or a name).
    on_event
        Called with ``(kind, data)`` as the run progresses (``run_started``, ``ingested``,
        ``stage``, ``audited``, ``warning``, ``phase``); the CLI renders them. Never prints.
    cache
        A :class:`StepCache` shared by several runs: steps already computed on the same inputs
        with the same params are reused by reference instead of recomputed.
    report_research
        Called with the run's equity frame when ``report.html`` is written; returns the
        research sections to show in it (:class:`qpipe.views.research.ResearchPage`) or None.
        A walk-forward passes its verdict, PBO, MinTRL and folds this way; a plain run none.

    Examples
    --------
    >>> import qpipe
    >>> cfg = qpipe.ThreadSafeConfig.default().replace(data={"symbols": 50})
    >>> result = qpipe.run(cfg)  # doctest: +SKIP
    >>> result.metrics["sharpe"]  # doctest: +SKIP
    """
    cfg = _resolved(config, engine, source=data, weights=weights, benchmark=benchmark)
    paths = resolve_paths(cfg, out, ledger)
    instance = None if engine is None or isinstance(engine, str) else engine
    emit = on_event or (lambda kind, data: None)
    wants_report = cfg.run.report if report is None else report
    start = time.perf_counter()
    with opened_run(
        cfg,
        paths,
        instance,
        argv=argv,
        emit=emit,
        cache=cache,
        report=wants_report,
        report_research=report_research,
    ) as env:
        done = RUN_GRAPH.execute(env)
        seconds = time.perf_counter() - start
        env.recorder.run_finished(
            p.RunFinished(seconds=round(seconds, 6), out_dir=str(env.run_dir))
        )
    backtest_out, audit_out = done["backtest"], done["audit"]
    return RunResult(
        run_id=env.run_id,
        config=cfg,
        out_dir=env.run_dir,
        ledger_path=paths.ledger,
        store=env.store,
        refs=dict(backtest_out.context),
        metrics=backtest_out.metrics,
        audit=audit_out.report,
        stages=tuple(env.stages),
        artifacts=done["outputs"],
        seconds=seconds,
        warnings=audit_out.warnings,
    )


def record_config_failure(
    config_path: str | None,
    out: str | Path | None,
    ledger: str | Path | None,
    argv: Sequence[str],
    exc: Exception,
) -> None:
    """Record a run that failed on its config, before it could start.

    ``run_started`` without a config, then ``run_failed``, in the ledger the run would have used.
    Best effort: the user's error is what must reach the terminal, not a failure to record it.
    """
    try:
        base = ThreadSafeConfig.from_toml(config_path) if config_path else None
    except ConfigError:
        base = None
    failed = p.RunFailed(error=type(exc).__name__, message=_first_line(exc), phase="config")
    with contextlib.suppress(Exception):
        paths = resolve_paths(base or ThreadSafeConfig.default(), out, ledger)
        paths.ledger.parent.mkdir(parents=True, exist_ok=True)
        recorder = RunRecorder(Ledger(paths.ledger), new_run_id())
        recorder.run_started(config_failure_started(argv))
        with signals_blocked():
            recorder.run_failed(failed)
