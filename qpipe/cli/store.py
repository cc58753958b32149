"""``python -m qpipe store gc|verify``: remove unreferenced entries; hash every entry."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from qpipe.cli._paths import command_paths

__all__ = ["register"]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    st = sub.add_parser("store", help="Arrow store maintenance")
    stsub = st.add_subparsers(dest="store_command", required=True)
    g = stsub.add_parser("gc", parents=[common], help="remove entries no run references")
    g.add_argument("--store", metavar="DIR", help="store folder (default: <out>/store)")
    g.add_argument("--dry-run", action="store_true", help="list what would be removed")
    g.set_defaults(handler=gc_command)
    v = stsub.add_parser("verify", parents=[common], help="hash every entry, name damaged ones")
    v.add_argument("--store", metavar="DIR", help="store folder (default: <out>/store)")
    v.add_argument(
        "--remove-damaged", action="store_true", help="delete entries whose bytes do not match"
    )
    v.set_defaults(handler=verify_command)


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError  # unreachable


def _count(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def gc_command(args: argparse.Namespace) -> int:
    """Collect garbage and print a summary (and, on a dry run, the list)."""
    from qpipe.store.gc import collect_garbage

    paths = command_paths(args)
    store = Path(args.store) if args.store else paths.store
    report = collect_garbage(store, paths.ledger, dry_run=args.dry_run)
    entries = [e for e in report.removed if e.kind == "entry"]
    temps = [e for e in report.removed if e.kind == "tmp"]
    verb = "would remove" if args.dry_run else "removed"
    print(
        f"{'dry run: ' if args.dry_run else ''}{verb} "
        f"{_count(len(entries), 'store entry', 'store entries')} "
        f"({_size(sum(e.nbytes for e in entries))}) and "
        f"{_count(len(temps), 'temp file', 'temp files')} ({_size(sum(e.nbytes for e in temps))}); "
        f"kept {report.referenced:,} referenced, {len(report.recent):,} too recent, "
        f"{len(report.skipped):,} skipped"
    )
    if args.dry_run:
        for e in report.removed:
            print(f"  {_size(e.nbytes):>10}  {e.path}")
    return 0


def verify_command(args: argparse.Namespace) -> int:
    """Hash every entry; list the damaged ones. Exit 0 if all are intact, else 1."""
    from qpipe.store.verify import verify_store

    store = Path(args.store) if args.store else command_paths(args).store
    check = verify_store(store, remove_damaged=args.remove_damaged)
    counted = f"{_count(check.checked, 'entry', 'entries')} ({_size(check.nbytes)})"
    if check.ok:
        print(f"ok: {counted} in `{check.root}`, every one hashes to its name")
        return 0
    verb = "removed" if check.removed else "found"
    damaged = _count(len(check.damaged), "damaged entry", "damaged entries")
    print(f"store `{check.root}`: {verb} {damaged} of {counted}", file=sys.stderr)
    for d in check.damaged:
        print(f"  {d.path}: {d.reason}", file=sys.stderr)
    if not check.removed:
        print("  (`qpipe store verify --remove-damaged` deletes them)", file=sys.stderr)
    return 1
