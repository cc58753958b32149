"""``runner.py --sweep ...``: run the grid, show progress, print the table of trials."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from qpipe.cli._app import out_console
from qpipe.config import ThreadSafeConfig

__all__ = ["sweep_main"]


def sweep_main(
    cfg: ThreadSafeConfig,
    sweep_args: Sequence[str],
    *,
    argv: Sequence[str] | None = None,
    quiet: bool = False,
    grid=None,
) -> int:
    """Run the sweep, print the table and any failures; 1 if a trial failed."""
    from qpipe.sweep import parse_sweep, run_sweep, sweep_metric, sweep_table

    if grid is None:
        grid = parse_sweep(sweep_args, cfg)
    result = run_sweep(cfg, grid, metric=sweep_metric(cfg), progress=not quiet, argv=argv)
    if quiet:
        print(result.summary_path.parent)
    else:
        out_console().print(sweep_table(result))
        n, secs = len(result.trials), result.seconds
        print(f"sweep: {result.summary_path.parent}  ({n} trials, {secs:.1f}s)")
    for t in result.failed:
        params = ", ".join(f"{k}={v}" for k, v in t.params.items())
        run = f" (run {t.run_id})" if t.run_id else ""
        print(f"qpipe: error: trial {t.index} [{params}] failed{run}: {t.error}", file=sys.stderr)
    return 1 if result.failed else 0
