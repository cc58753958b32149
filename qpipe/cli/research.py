"""Out-of-sample research from the command line.

- ``runner.py --sweep ... --walk-forward train=756,test=126[,anchored=true,purge=N,embargo=N]``
  (or ``[research] method = "walk_forward"``): the walk-forward of the grid (``step`` is
  accepted but must equal ``test``: the test windows tile);
- ``runner.py --sweep ... --cpcv groups=6,test=2[,purge=N,embargo=N]`` (or ``method = "cpcv"``);
- ``python -m qpipe stats SWEEP_ID [--trials-from ledger|sweep|N]``: the one-line verdict.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Any

from qpipe.cli._app import err_console, out_console
from qpipe.config import ThreadSafeConfig, parse_scalar
from qpipe.errors import ConfigError

__all__ = ["add_research_options", "register", "research_main", "wants_research"]

WALK_FORWARD_KEYS: dict[str, type] = {
    "train": int, "test": int, "step": int, "anchored": bool, "purge": int, "embargo": int,
}  # fmt: skip
CPCV_KEYS: dict[str, type] = {"groups": int, "test": int, "purge": int, "embargo": int}


def add_research_options(p: argparse.ArgumentParser) -> None:
    """``--walk-forward`` and ``--cpcv`` on the runner's parser."""
    p.add_argument(
        "--walk-forward",
        metavar="train=N,test=N[,anchored=true,purge=N,embargo=N]",
        help="walk-forward the --sweep grid (trading days; test windows tile: step = test); "
        "see docs/research.md",
    )
    p.add_argument(
        "--cpcv",
        metavar="groups=N,test=K[,purge=N,embargo=N]",
        help="combinatorial purged cross-validation of the --sweep grid",
    )


def parse_spec(flag: str, text: str, keys: dict[str, type]) -> dict[str, Any]:
    """``a=1,b=true`` -> ``{"a": 1, "b": True}``, each key known and of its type."""
    out: dict[str, Any] = {}
    for part in (x for x in text.split(",") if x.strip()):
        name, eq, raw = part.partition("=")
        name = name.strip()
        if not eq or name not in keys:
            known = ", ".join(keys)
            msg = f"`{flag} {text}`: `{part}` is not `key=value` with a key among {known}"
            raise ConfigError(msg)
        value = parse_scalar(raw.strip())
        kind = keys[name]
        if type(value) is not kind:
            msg = f"`{flag} {text}`: `{name}` must be {kind.__name__}, got {value!r}"
            raise ConfigError(msg)
        out[name] = value
    return out


def _settings(cfg: ThreadSafeConfig, args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The method and its parameters: the flag, else the ``[research]`` section."""
    r = cfg.research
    if args.walk_forward and args.cpcv:
        msg = "give one of `--walk-forward` and `--cpcv`, not both"
        raise ConfigError(msg)
    if args.walk_forward:
        spec = parse_spec("--walk-forward", args.walk_forward, WALK_FORWARD_KEYS)
        for need in ("train", "test"):
            if need not in spec:
                msg = f"`--walk-forward {args.walk_forward}` needs `{need}=` (trading days)"
                raise ConfigError(msg)
        return "walk_forward", spec
    if args.cpcv:
        spec = parse_spec("--cpcv", args.cpcv, CPCV_KEYS)
        spec = {"test_groups" if k == "test" else k: v for k, v in spec.items()}
        return "cpcv", {"groups": r.groups, "test_groups": r.test_groups, **spec}
    common = {"purge": None if r.purge < 0 else r.purge, "embargo": r.embargo}
    if r.method == "walk_forward":
        step = r.step or None
        return "walk_forward", {"train": r.train, "test": r.test, "step": step,
                                "anchored": r.anchored, **common}  # fmt: skip
    return "cpcv", {"groups": r.groups, "test_groups": r.test_groups, **common}


def wants_research(cfg: ThreadSafeConfig, args: argparse.Namespace) -> bool:
    return bool(args.walk_forward or args.cpcv or cfg.research.method != "off")


def _grid(cfg: ThreadSafeConfig, flags: Sequence[str]) -> dict[str, list[Any]]:
    """The ``--sweep`` flags and ``[sweep]`` table as ``{"section.key": values}`` (checked as
    a sweep checks its grid)."""
    from qpipe.cli.sweep import parse_sweep_flags
    from qpipe.sweep import grid_from_config

    grid = grid_from_config(cfg, parse_sweep_flags(flags))
    return {k: list(v) for k, v in grid.axes}


def _metric(cfg: ThreadSafeConfig) -> str:
    metric = cfg.sweep.get("metric", "sharpe")
    return metric if isinstance(metric, str) else "sharpe"


def _progress(quiet: bool):
    console = err_console(quiet=quiet)

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "research_started":
            console.print(f"[bold]qpipe[/] {data['method']} [cyan]{data['research_id']}[/]")
        elif kind == "research_evaluated":
            engine = data.get("engine", "local")
            console.print(f"  evaluated {data['sets']} sets on {data['folds']} folds ({engine})")
        elif kind == "run_started":
            console.print(f"  stitched out-of-sample run [cyan]{data['run_id']}[/]")

    return on_event


def research_main(cfg: ThreadSafeConfig, args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run the walk-forward or the CPCV the flags (or ``[research]``) ask for; print results."""
    method, params = _settings(cfg, args)
    grid = _grid(cfg, args.sweep)
    base = cfg.replace(sweep={})
    on_event = _progress(args.quiet)
    if method == "walk_forward":
        from qpipe.research.run import run_walk_forward

        done = run_walk_forward(base, grid, metric=_metric(cfg), on_event=on_event,
                                argv=list(argv), **params)  # fmt: skip
        return _print_walk_forward(done, args.quiet)
    from qpipe.research.cpcv_run import run_cpcv

    cpcv = run_cpcv(base, grid, on_event=on_event, argv=list(argv), **params)
    return _print_cpcv(cpcv, args.quiet)


def _print_walk_forward(done: Any, quiet: bool) -> int:
    from rich.table import Table

    from qpipe.views import format_metric

    if quiet:
        print(done.out_dir)
        return 0
    metric = done.result.metric
    table = Table(title=f"walk-forward {done.research_id}: folds (ranked by {metric})")
    table.caption = "OOS: the chosen set alone from cash; stitched: the run's own days"
    columns = ("fold", "test window", "chosen set", f"IS {metric}", f"OOS {metric}", "stitched")
    for col in columns:
        table.add_column(col, justify="left" if col in ("test window", "chosen set") else "right")
    keys = [k for k in done.folds.columns if "." in k]
    for row in done.folds.iter_rows(named=True):
        chosen = ", ".join(f"{k}={row[k]}" for k in keys)
        window = f"{row['test_start']} – {row['test_end']}"
        table.add_row(str(row["fold"]), window, chosen,
                      format_metric(metric, row[f"is_{metric}"]),
                      format_metric(metric, row[f"oos_{metric}"]),
                      format_metric("sharpe", row["stitched_sharpe"]))  # fmt: skip
    out_console(wide=True).print(table)
    sharpe = format_metric("sharpe", done.run.metrics.get("sharpe"))
    print(f"out-of-sample {done.result.start} – {done.result.end}: sharpe {sharpe}")
    print(f"run: {done.out_dir}  (report.html, research.html, folds.arrow)")
    print(done.verdict)
    return 0


def _print_cpcv(done: Any, quiet: bool) -> int:
    if quiet:
        print(done.out_dir)
        return 0
    paths = done.result.paths["sharpe"].to_list()
    shown = ", ".join("—" if x is None or not math.isfinite(x) else f"{x:.2f}" for x in paths)
    print(f"cpcv {done.research_id}: {len(paths)} out-of-sample paths, Sharpe {shown}")
    if done.pbo is not None:
        print(f"PBO {done.pbo.pbo:.2f} over {done.pbo.lambdas.size:,} halvings")
    print(f"folder: {done.out_dir}  (research.html, splits/paths/sets.arrow)")
    print(done.verdict)
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """``stats SWEEP_ID``."""
    p = sub.add_parser("stats", parents=[common],
                       help="is a sweep's best trial real? DSR with the honest N, PBO")  # fmt: skip
    p.add_argument("sweep_id", metavar="SWEEP_ID")
    p.add_argument("--trials-from", default="ledger", metavar="ledger|sweep|N",
                   help="N for the DSR: every trial in the ledger of the same data and grid "
                        "keys (default), this sweep's, or a number")  # fmt: skip
    p.set_defaults(handler=stats_command)


def stats_command(args: argparse.Namespace) -> int:
    from qpipe.research.sweep_stats import sweep_stats

    cfg = ThreadSafeConfig.from_toml(args.config) if args.config else None
    stats = sweep_stats(
        args.sweep_id, out=args.out, ledger=args.ledger, config=cfg, trials_from=args.trials_from
    )
    counted = ", ".join(f"{s.sweep_id} ({s.n_trials})" for s in stats.count.sweeps)
    v = stats.values
    err = err_console()
    err.print(f"trial {stats.trial} {stats.params}; sweeps counted: {counted}")
    err.print(
        f"SR {v['sr']:.4f}/day, SR0 {v['sr0']:.4f}, PSR(0) {v['psr0']:.2f}, "
        f"T {v['n_obs']}, MinTRL {v['min_trl']:.0f}"
        + (f", PBO {v['pbo']['pbo']:.2f}" if v.get("pbo") else "")
    )
    print(stats.line)
    if stats.page is not None:
        err.print(f"page: {stats.page}")
    return 0
