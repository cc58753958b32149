"""``python -m qpipe``: one sub-command group per module, registered in :data:`COMMANDS`.

A command module has ``register(sub, common)``, which adds its parser(s) and sets ``handler``
(a function ``(args) -> exit code``) as a parser default.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from qpipe.cli import data, ledger, mlflow, replay, research, store, sweep
from qpipe.cli._app import common_options, guarded

__all__ = ["COMMANDS", "main", "main_parser"]

COMMANDS: tuple[ModuleType, ...] = (ledger, replay, mlflow, store, data, sweep, research)


def main_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="qpipe", description="qpipe: ledger, replay, export, store and run commands."
    )
    sub = p.add_subparsers(dest="command", required=True)
    common = common_options()
    for command in COMMANDS:
        command.register(sub, common)
    sub.add_parser("run", help="run a backtest (same options as runner.py)", add_help=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m qpipe`` and the ``qpipe`` script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:
        from qpipe.cli.runner import runner_main

        return runner_main(argv[1:])
    args = main_parser().parse_args(argv)
    return guarded(lambda: args.handler(args), debug=args.debug)
