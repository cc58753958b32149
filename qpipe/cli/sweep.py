"""Sweeps from the command line.

- ``runner.py --sweep strategy.lookback=63,126 --sweep allocation.top_n=10,20`` (or a
  ``[sweep]`` table): a live progress line (trials done, trials/s, ETA), then the top trials.
  ``--resume SWEEP_ID`` continues an interrupted sweep (an unfinished sweep with the same grid,
  config and data is continued without it); ``--max-trials N`` (default 100,000) bounds the grid.
- ``python -m qpipe sweep promote SWEEP_ID TRIAL``: the trial as a full run with its report.
- ``python -m qpipe sweep replay SWEEP_ID`` (also ``python -m qpipe replay SWEEP_ID``): run the
  sweep again and compare the results digests.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from qpipe.cli._app import err_console, out_console
from qpipe.cli._paths import command_paths
from qpipe.config import ThreadSafeConfig, parse_scalar
from qpipe.errors import ConfigError

__all__ = ["parse_sweep_flags", "register", "sweep_main", "sweep_table"]

TOP = 20
SHOWN_FAILURES = 10


def parse_sweep_flags(texts: Sequence[str]) -> list[tuple[str, list[Any], str]]:
    """``--sweep section.key=v1,v2`` flags as ``(key, values, origin)``.

    Values are TOML scalars (``5``, ``0.5``, ``true``), else strings (read as ``--set``
    values are); the library checks keys, types and the grid's size.
    """
    flags = []
    for text in texts:
        origin = f"flag `--sweep {text}`"
        if "=" not in text or "\n" in text:
            msg = f"sweep {origin} is malformed: expected `section.key=v1,v2,...`"
            raise ConfigError(msg)
        key, raw = text.split("=", 1)
        values = [parse_scalar(v) for v in raw.split(",") if v.strip()]
        flags.append((key.strip(), values, origin))
    return flags


def add_sweep_options(p: argparse.ArgumentParser) -> None:
    """The runner's sweep flags (``--sweep`` itself is declared with the other runner flags)."""
    p.add_argument("--resume", metavar="SWEEP_ID", help="continue an interrupted sweep")
    p.add_argument(
        "--max-trials",
        type=int,
        default=100_000,
        metavar="N",
        help="refuse a sweep grid larger than N trials (default: 100,000)",
    )


class _Line:
    """The live progress line on stderr: trials done of total, trials/s, ETA, failures."""

    def __init__(self, quiet: bool) -> None:
        self.bar = Progress(
            TextColumn("sweep [cyan]{task.fields[sweep]}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "{task.fields[rate]} trials/s · ETA {task.fields[eta]} · "
                "{task.fields[failed]} failed"
            ),
            TimeElapsedColumn(),
            console=err_console(quiet=quiet),
            transient=False,
        )
        self.task: Any = None

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "sweep_started":
            self.bar.start()
            self.task = self.bar.add_task(
                "sweep",
                total=data["n_trials"],
                completed=data["reused"],
                sweep=data["sweep_id"],
                rate="—",
                eta="—",
                failed=0,
            )
        elif kind == "sweep_chunk" and self.task is not None:
            eta = data["eta_s"]
            self.bar.update(
                self.task,
                completed=data["done"],
                rate=f"{data['trials_per_s']:,.0f}",
                eta="—" if eta is None else f"{eta:,.0f}s",
                failed=data["failed"],
            )

    def stop(self) -> None:
        self.bar.stop()


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends a sweep as Ctrl-C does: finished trials summarised, ``sweep_failed``."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def sweep_table(result: Any, *, limit: int = TOP) -> Table:
    """The top ``limit`` trials, best first, metrics formatted as in the run summary."""
    from qpipe.views import METRIC_LABELS, format_metric

    metric = result.metric
    table = Table(title=f"sweep {result.sweep_id} · top {limit} by {metric}", title_justify="left")
    shown = ["trial", *result.params, metric, "sharpe", "cagr", "max_drawdown", "status"]
    shown = [c for c in dict.fromkeys(shown) if c in result.summary.columns]
    for name in shown:
        table.add_column(name, justify="left" if name == "status" else "right")
    for row in result.summary.head(limit).iter_rows(named=True):
        cells = [
            format_metric(n, row[n])
            if n in METRIC_LABELS
            else ("—" if row[n] is None else str(row[n]))
            for n in shown
        ]
        table.add_row(*cells)
    return table


def sweep_main(cfg: ThreadSafeConfig, args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``runner.py --sweep ...``: run it, print the top trials; 1 if any trial failed."""
    from qpipe.sweep import run_sweep
    from qpipe.sweep.run import record_setup_failure

    try:
        flags = parse_sweep_flags(args.sweep)
    except ConfigError as exc:
        record_setup_failure(cfg, exc)
        raise
    line = _Line(args.quiet)
    try:
        with _sigterm_as_interrupt():
            result = run_sweep(
                cfg,
                flags=flags,
                max_trials=args.max_trials,
                resume=args.resume,
                argv=list(argv),
                on_event=line,
            )
    finally:
        line.stop()
    if args.quiet:
        print(result.folder)
    else:
        out_console(wide=True).print(sweep_table(result))
        reused = f", {result.reused:,} from the interrupted run" if result.reused else ""
        print(
            f"sweep: {result.folder}  ({result.summary.height:,} trials{reused}, "
            f"{result.seconds:.1f}s)"
        )
        if result.verdict:
            print(result.verdict)
    return _report_failures(result)


def _report_failures(result: Any) -> int:
    failed = result.failed
    for row in failed.head(SHOWN_FAILURES).iter_rows(named=True):
        params = ", ".join(f"{k}={row[k]}" for k in result.params)
        print(
            f"qpipe: error: trial {row['trial']} [{params}] failed: {row['error']}", file=sys.stderr
        )
    if failed.height > SHOWN_FAILURES:
        more = failed.height - SHOWN_FAILURES
        print(
            f"qpipe: error: ... and {more:,} more failed trials (see the summary's `error`)",
            file=sys.stderr,
        )
    return 1 if failed.height else 0


# python -m qpipe sweep ... -----------------------------------------------------------------
def register(sub: Any, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser("sweep", help="promote a sweep's trial to a full run, replay a sweep")
    ssub = s.add_subparsers(dest="sweep_command", required=True)
    p = ssub.add_parser("promote", parents=[common], help="run one trial as a full run")
    p.add_argument("sweep_id")
    p.add_argument("trial", type=int)
    p.set_defaults(handler=promote_command)
    r = ssub.add_parser("replay", parents=[common], help="re-run a sweep and compare digests")
    r.add_argument("sweep_id")
    r.set_defaults(handler=replay_command)


def promote_command(args: argparse.Namespace) -> int:
    from qpipe.cli.tables import summary_table
    from qpipe.sweep import promote

    paths = command_paths(args)
    argv = ["sweep", "promote", args.sweep_id, str(args.trial)]
    result = promote(args.sweep_id, args.trial, out=paths.out, ledger=paths.ledger, argv=argv)
    out_console().print(
        summary_table(result.metrics, run_id=result.run_id, out_dir=str(result.out_dir))
    )
    print(f"report: {result.report_path}")
    return 0


def replay_command(args: argparse.Namespace) -> int:
    """Run the sweep again; exit 0 only if the results digests are identical."""
    from qpipe.sweep import replay_sweep

    paths = command_paths(args)
    report = replay_sweep(args.sweep_id, out=paths.out, ledger=paths.ledger)
    verdict = "identical" if report.identical else "NOT identical"
    print(
        f"replay of sweep {report.sweep_id} as {report.replay_id}: results {verdict} "
        f"(recorded {report.recorded[:12]}, replayed {report.replayed[:12]})"
    )
    return 0 if report.identical else 1
