"""``python -m qpipe data``: import a user's prices into the store under a name, list names."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from qpipe.cli._paths import command_paths

__all__ = ["register"]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    data = sub.add_parser("data", help="import prices into the store; list imported datasets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    imp = dsub.add_parser(
        "import",
        parents=[common],
        help="validate and store a folder of per-symbol CSVs, a wide file or a long file",
        description=(
            "Import prices all or nothing: every bad file and row is reported at once and "
            "quarantined, and nothing is stored unless everything passes. Runs use the "
            "result with --data store:NAME."
        ),
    )
    imp.add_argument("source", metavar="SOURCE", help="a folder of SYMBOL.csv files, or a file")
    imp.add_argument("--name", required=True, help="the dataset's name (for --data store:NAME)")
    imp.add_argument(
        "--close",
        choices=("adjusted", "raw"),
        help="which close to use where a file has both Close and Adj Close (then required)",
    )
    imp.add_argument(
        "--format",
        dest="fmt",
        choices=("auto", "vendor", "wide", "long"),
        default="auto",
        help="auto: a folder is vendor exports, a file with a symbol column long, else wide",
    )
    imp.add_argument("--store", metavar="DIR", help="store folder (default: <out>/store)")
    imp.add_argument(
        "--quarantine", metavar="DIR", help="where failing rows go (default: <out>/quarantine)"
    )
    imp.set_defaults(handler=import_command)
    ls = dsub.add_parser("list", parents=[common], help="list the named datasets in the store")
    ls.add_argument("--store", metavar="DIR", help="store folder (default: <out>/store)")
    ls.set_defaults(handler=list_command)


def _store(args: argparse.Namespace):
    from qpipe.store import ArrowStore

    paths = command_paths(args)
    return paths, ArrowStore(Path(args.store) if args.store else paths.store)


def import_command(args: argparse.Namespace) -> int:
    from qpipe.ingest.named import import_dataset, ledger_recorder

    paths, store = _store(args)
    quarantine = Path(args.quarantine) if args.quarantine else paths.out / "quarantine"
    result = import_dataset(
        args.source,
        store,
        name=args.name,
        close=args.close,
        fmt=args.fmt,
        quarantine_dir=quarantine,
        record=ledger_recorder(paths.ledger),
    )
    close = f", close {result.close}" if result.close else ""
    print(
        f"imported `{result.name}`: {result.rows:,} rows, {result.symbols} symbols, "
        f"{result.first_date} to {result.last_date} from {result.files} "
        f"file{'s' if result.files != 1 else ''} ({result.format}{close}) in "
        f"{result.seconds:.1f}s; digest {result.digest[:12]}"
    )
    print(f"use it with: python runner.py --data store:{result.name}")
    return 0


def list_command(args: argparse.Namespace) -> int:
    from qpipe.ingest.named import dataset_names

    _, store = _store(args)
    found = dataset_names(store)
    if not found:
        print(f"no named datasets in `{store.root}`; import one with `python -m qpipe data import`")
        return 0
    for d in found:
        print(
            f"{d['name']:<20} {d['rows']:>10,} rows {d['symbols']:>5} symbols "
            f"{d['first_date']} to {d['last_date']}  {d['digest'][:12]}  {d['source']}"
        )
    return 0
