"""Command line: ``runner.py`` (a backtest) and ``python -m qpipe`` (ledger, replay, export, gc).

Every failure a user can cause is a :class:`~qpipe.errors.QpipeError`; it is printed as one line
(``qpipe: error: ...``) with exit code 1 and no traceback unless ``--debug``. Ctrl-C exits 130
after the run is recorded as failed. Anything else is a bug: one line, exit 3, and ``--debug``
shows the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from qpipe.config import ThreadSafeConfig
from qpipe.errors import ConfigError, QpipeError

__all__ = ["main", "runner_main"]

EXIT_USER_ERROR = 1
EXIT_BUG = 3
EXIT_INTERRUPTED = 130


def _fail(message: str) -> None:
    print(f"qpipe: error: {message}", file=sys.stderr)


def guarded(fn: Callable[[], int], *, debug: bool) -> int:
    """Run ``fn`` turning errors into one line and an exit code (tracebacks only with --debug)."""
    try:
        return fn()
    except QpipeError as exc:
        if debug:
            raise
        _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        if debug:
            raise
        _fail("interrupted; the run is recorded as failed in the ledger")
        return EXIT_INTERRUPTED
    except Exception as exc:
        if debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        _fail(
            f"internal error {type(exc).__name__}: {first} (re-run with --debug for the traceback)"
        )
        return EXIT_BUG


# runner ------------------------------------------------------------------------------------
def runner_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="runner.py",
        description="Run a backtest: built-in data and the default strategy unless told otherwise.",
    )
    p.add_argument("--config", metavar="FILE.toml", help="a TOML config (see configs/)")
    p.add_argument(
        "--data",
        metavar="PRICES",
        help="prices file (CSV, Parquet or Arrow) instead of built-in data",
    )
    p.add_argument(
        "--weights", metavar="WEIGHTS", help="backtest this weights file instead of the strategy"
    )
    p.add_argument(
        "--benchmark",
        metavar="PRICES",
        help="prices for the benchmark metrics (default: equal-weight universe)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config key (repeatable; applied last, in order)",
    )
    p.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="SECTION.KEY=V1,V2,...",
        help="run the cartesian product of these values (repeatable)",
    )
    p.add_argument("--engine", choices=("local", "ray"), help="execution engine (default: local)")
    p.add_argument("--out", metavar="DIR", help="runs root (default: runs)")
    p.add_argument("--ledger", metavar="FILE", help="ledger file (default: <out>/audit.jsonl)")
    p.add_argument("--no-report", action="store_true", help="skip report.html")
    p.add_argument("--quiet", action="store_true", help="print only the output folder")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def resolve_config(args: argparse.Namespace) -> ThreadSafeConfig:
    """Precedence: defaults < --config < data, engine and path flags < --set."""
    cfg = ThreadSafeConfig.from_toml(args.config) if args.config else ThreadSafeConfig.default()
    data: dict[str, Any] = {}
    if args.data:
        data["source"] = args.data
    if args.weights:
        data["weights"] = args.weights
    if args.benchmark:
        data["benchmark"] = args.benchmark
    if data:
        cfg = cfg.replace(data=data)
    if args.engine:
        cfg = cfg.replace(engine={"kind": args.engine})
    run: dict[str, Any] = {}
    if args.out:
        run["out"] = args.out
    if args.ledger:
        run["ledger"] = args.ledger
    if args.no_report:
        run["report"] = False
    if run:
        cfg = cfg.replace(run=run)
    if args.overrides:
        cfg = cfg.with_overrides(args.overrides)
    return cfg


def _run_once(cfg: ThreadSafeConfig, args: argparse.Namespace, argv: Sequence[str]) -> int:
    from rich.console import Console

    from qpipe.api import run
    from qpipe.report import summary_table

    console = Console(stderr=True, quiet=args.quiet)

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "run_started":
            console.print(f"[bold]qpipe[/] run [cyan]{data['run_id']}[/]")
        elif kind == "ingested":
            console.print(f"  ingested {data['rows']:,} price rows")
        elif kind == "stage":
            outs = ", ".join(f"{k} {v['rows']:,} rows" for k, v in data["outputs"].items())
            console.print(f"  stage [green]{data['stage']}[/] {data['seconds']:.2f}s → {outs}")
        elif kind == "warning":
            console.print(f"  [yellow]warning:[/] {data['message']}")
        elif kind == "audited":
            checks = len(data.get("checks", []))
            if data.get("passed"):
                console.print(f"  allocation audit passed ({checks} checks)")
            else:
                n = data.get("n_violations", 0)
                console.print(
                    f"  allocation audit [red]FAILED[/]: {n} violation(s) in {checks} checks"
                )

    result = run(cfg, argv=list(argv), on_event=on_event)
    if args.quiet:
        print(result.out_dir)
    else:
        Console().print(
            summary_table(result.metrics, run_id=result.run_id, out_dir=str(result.out_dir))
        )
        if result.report_path.exists():
            print(f"report: {result.report_path}")
        print(f"run took {result.seconds:.1f}s; ledger {result.ledger_path}")
    return 0


def _record_config_failure(args: argparse.Namespace, argv: Sequence[str], exc: Exception) -> None:
    """A config error stops a run before it starts; record it as a run that failed at once
    (``run_started`` without a config, then ``run_failed``), in the ledger the run would have
    used. Recording is best effort: the user's error is what must reach the terminal."""
    import platform

    from qpipe._versions import qpipe_version
    from qpipe.api import new_run_id, resolve_paths
    from qpipe.ledger import Ledger

    try:
        base = ThreadSafeConfig.from_toml(args.config) if args.config else None
    except ConfigError:
        base = None
    cfg = base or ThreadSafeConfig.default()
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    with contextlib.suppress(Exception):
        paths = resolve_paths(cfg, args.out, args.ledger)
        paths.ledger.parent.mkdir(parents=True, exist_ok=True)
        book = Ledger(paths.ledger)
        run_id = new_run_id()
        started = {
            "config": None,
            "config_digest": None,
            "code_version": qpipe_version(),
            "engine": None,
            "host": platform.node(),
            "argv": list(argv),
            "out_dir": None,
            "phase": "config",
        }
        book.append(run_id, "run_started", started)
        failed = {"error": type(exc).__name__, "message": message, "phase": "config"}
        book.append(run_id, "run_failed", failed)


def runner_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``runner.py``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = runner_parser().parse_args(argv)

    def go() -> int:
        from qpipe.sweep import parse_sweep, sweep_main

        try:
            cfg = resolve_config(args)
            grid = parse_sweep(args.sweep, cfg) if args.sweep or len(cfg.sweep) else None
        except ConfigError as exc:
            _record_config_failure(args, argv, exc)
            raise
        if grid is not None:
            return sweep_main(cfg, args.sweep, argv=argv, quiet=args.quiet, grid=grid)
        return _run_once(cfg, args, argv)

    return guarded(go, debug=args.debug)


# python -m qpipe ---------------------------------------------------------------------------
def _default_ledger(args: argparse.Namespace) -> Path:
    return Path(args.ledger) if args.ledger else Path(args.out or "runs") / "audit.jsonl"


def main_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--ledger", metavar="FILE", help="ledger file (default: <out>/audit.jsonl)")
    common.add_argument("--out", metavar="DIR", help="runs root (default: runs)")
    common.add_argument("--debug", action="store_true", help="show tracebacks")

    p = argparse.ArgumentParser(
        prog="qpipe", description="qpipe: ledger, replay, export and store commands."
    )
    sub = p.add_subparsers(dest="command", required=True)

    ledger = sub.add_parser("ledger", help="verify or show the ledger")
    lsub = ledger.add_subparsers(dest="ledger_command", required=True)
    v = lsub.add_parser("verify", parents=[common], help="check every hash, link and artifact")
    v.add_argument("file", nargs="?", help="ledger file (same as --ledger)")
    s = lsub.add_parser("show", parents=[common], help="list runs, or one run's records")
    s.add_argument("run_id", nargs="?")

    r = sub.add_parser(
        "replay", parents=[common], help="re-run a recorded run and compare output digests"
    )
    r.add_argument("run_id")

    m = sub.add_parser("mlflow", help="MLflow view (write-only)")
    msub = m.add_subparsers(dest="mlflow_command", required=True)
    e = msub.add_parser("export", parents=[common], help="export finished runs to MLflow")
    e.add_argument("--tracking-uri", help="default: sqlite:///<ledger dir>/mlflow.db")

    st = sub.add_parser("store", help="Arrow store maintenance")
    stsub = st.add_subparsers(dest="store_command", required=True)
    g = stsub.add_parser("gc", parents=[common], help="remove entries no run references")
    g.add_argument("--store", metavar="DIR", help="store folder (default: <out>/store)")
    g.add_argument("--dry-run", action="store_true", help="list what would be removed")

    sub.add_parser("run", help="run a backtest (same options as runner.py)", add_help=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m qpipe`` and the ``qpipe`` script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:
        return runner_main(argv[1:])
    args = main_parser().parse_args(argv)

    def go() -> int:
        if args.command == "ledger":
            from qpipe import ledger

            path = Path(args.file) if getattr(args, "file", None) else _default_ledger(args)
            if args.ledger_command == "verify":
                return ledger.verify_command(path)
            return ledger.show_command(path, args.run_id)
        if args.command == "replay":
            from qpipe.replay import replay_command

            return replay_command(args.run_id, _default_ledger(args))
        if args.command == "mlflow":
            from qpipe.export.mlflow import export_command

            return export_command(_default_ledger(args), args.tracking_uri)
        if args.command == "store":
            from qpipe.store.gc import gc_command

            store = Path(args.store) if args.store else Path(args.out or "runs") / "store"
            return gc_command(store, _default_ledger(args), dry_run=args.dry_run)
        raise AssertionError(args.command)

    return guarded(go, debug=args.debug)
