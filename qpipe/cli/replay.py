"""``python -m qpipe replay RUN_ID``: re-run a recorded run and compare output digests."""

from __future__ import annotations

import argparse
from typing import Any

from qpipe.cli._paths import command_paths

__all__ = ["register"]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    r = sub.add_parser(
        "replay", parents=[common], help="re-run a recorded run (or sweep) and compare digests"
    )
    r.add_argument("run_id")
    r.set_defaults(handler=replay_command)


def replay_command(args: argparse.Namespace) -> int:
    """Print one verdict per output; exit 0 only if all are identical."""
    from qpipe.replay import replay

    paths = command_paths(args)
    if (paths.out / "sweeps" / args.run_id / "sweep.json").is_file():  # a sweep id
        from qpipe.cli.sweep import replay_command as replay_sweep_command

        return replay_sweep_command(argparse.Namespace(**vars(args), sweep_id=args.run_id))
    report = replay(args.run_id, paths.ledger)
    for name, (old, new) in report.outputs.items():
        verdict = "identical" if old is not None and old == new else "DIFFERENT"
        print(f"{name:<14} {verdict:<10} recorded {str(old)[:12]}  replayed {str(new)[:12]}")
    status = "identical" if report.identical else "NOT identical"
    print(f"replay of {args.run_id} as {report.replay_run_id}: data outputs {status}")
    return 0 if report.identical else 1
