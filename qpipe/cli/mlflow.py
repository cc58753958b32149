"""``python -m qpipe mlflow export``: the write-only MLflow view of the ledger."""

from __future__ import annotations

import argparse
from typing import Any

from qpipe.cli._paths import command_paths

__all__ = ["register"]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    m = sub.add_parser("mlflow", help="MLflow view (write-only)")
    msub = m.add_subparsers(dest="mlflow_command", required=True)
    e = msub.add_parser("export", parents=[common], help="export finished runs to MLflow")
    e.add_argument("--tracking-uri", help="default: sqlite:///<ledger dir>/mlflow.db")
    e.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="wait at most this long for the tracking store, per request (default 30)",
    )
    e.set_defaults(handler=export_command)


def export_command(args: argparse.Namespace) -> int:
    """Export new finished runs and say what was done. Returns 0."""
    from qpipe.export.mlflow import DEFAULT_TIMEOUT, EXPERIMENT, default_tracking_uri, export_runs

    ledger_path = command_paths(args).ledger
    uri = args.tracking_uri or default_tracking_uri(ledger_path)
    timeout = DEFAULT_TIMEOUT if args.timeout is None else args.timeout
    exported = export_runs(ledger_path, uri, timeout=timeout)
    n = len(exported)
    if n == 0:
        print(f"nothing to export: every finished run in `{ledger_path}` is already in {uri}")
        return 0
    print(f"exported {n:,} run{'s' if n != 1 else ''} to {uri} (experiment `{EXPERIMENT}`)")
    for rid in exported:
        print(f"  {rid}")
    return 0
