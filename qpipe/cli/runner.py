"""``runner.py``: a backtest (or a sweep) from flags, with progress and a summary table.

Precedence: built-in defaults < ``--config`` < ``--data``/``--weights``/engine/path flags <
``--set`` (applied last, in order).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from qpipe.cli._app import err_console, guarded, out_console
from qpipe.cli.research import add_research_options, research_main, wants_research
from qpipe.cli.sweep import add_sweep_options
from qpipe.config import ThreadSafeConfig
from qpipe.errors import ConfigError

__all__ = ["resolve_config", "runner_main", "runner_parser"]


def runner_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="runner.py",
        description="Run a backtest: built-in data and the default strategy unless told otherwise.",
    )
    add = p.add_argument
    add("--config", metavar="FILE.toml", help="a TOML config (see configs/)")
    add(
        "--data",
        metavar="PRICES",
        help="prices file (CSV, Parquet or Arrow) instead of built-in data",
    )
    add("--weights", metavar="WEIGHTS", help="backtest this weights file instead of the strategy")
    add(
        "--benchmark",
        metavar="PRICES",
        help="prices for the benchmark metrics (default: equal-weight universe)",
    )
    add(
        "--membership",
        metavar="FILE",
        help="point-in-time universe: symbol,from,to (default: every symbol with a price)",
    )
    add(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config key (repeatable; applied last, in order)",
    )
    add(
        "--sweep",
        action="append",
        default=[],
        metavar="SECTION.KEY=V1,V2,...",
        help="run the cartesian product of these values (repeatable)",
    )
    add_sweep_options(p)
    add_research_options(p)
    add("--engine", choices=("local", "ray"), help="execution engine (default: local)")
    add("--out", metavar="DIR", help="runs root (default: runs)")
    add("--ledger", metavar="FILE", help="ledger file (default: <out>/audit.jsonl)")
    add("--no-report", action="store_true", help="skip report.html")
    add("--quiet", action="store_true", help="print only the output folder")
    add("--debug", action="store_true", help="show tracebacks")
    return p


def resolve_config(args: argparse.Namespace) -> ThreadSafeConfig:
    """Precedence: defaults < --config < data, engine and path flags < --set."""
    cfg = ThreadSafeConfig.from_toml(args.config) if args.config else ThreadSafeConfig.default()
    data = {
        k: v
        for k, v in (
            ("source", args.data),
            ("weights", args.weights),
            ("benchmark", args.benchmark),
            ("membership", args.membership),
        )
        if v
    }
    if data:
        cfg = cfg.replace(data=data)
    if args.engine:
        cfg = cfg.replace(engine={"kind": args.engine})
    run: dict[str, Any] = {k: v for k, v in (("out", args.out), ("ledger", args.ledger)) if v}
    if args.no_report:
        run["report"] = False
    if run:
        cfg = cfg.replace(run=run)
    if args.overrides:
        cfg = cfg.with_overrides(args.overrides)
    return cfg


def _progress_printer(quiet: bool):
    console = err_console(quiet=quiet)

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

    return on_event


def _run_once(cfg: ThreadSafeConfig, args: argparse.Namespace, argv: Sequence[str]) -> int:
    from qpipe.cli.tables import summary_table
    from qpipe.runs import run

    result = run(cfg, argv=list(argv), on_event=_progress_printer(args.quiet))
    if args.quiet:
        print(result.out_dir)
        return 0
    out_console().print(
        summary_table(result.metrics, run_id=result.run_id, out_dir=str(result.out_dir))
    )
    if result.report_path.exists():
        print(f"report: {result.report_path}")
    print(f"run took {result.seconds:.1f}s; ledger {result.ledger_path}")
    return 0


def runner_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``runner.py``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = runner_parser().parse_args(argv)

    def go() -> int:
        from qpipe.cli.sweep import sweep_main
        from qpipe.runs import record_config_failure

        try:
            cfg = resolve_config(args)
        except ConfigError as exc:
            record_config_failure(args.config, args.out, args.ledger, argv, exc)
            raise
        if wants_research(cfg, args):
            return research_main(cfg, args, argv)
        if args.sweep or len(cfg.sweep) or args.resume:
            return sweep_main(cfg, args, argv)  # a bad grid is recorded as sweep_failed
        return _run_once(cfg, args, argv)

    return guarded(go, debug=args.debug)
