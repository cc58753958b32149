"""Store garbage collection: remove entries that no record of the ledger references.

An entry ``<root>/<aa>/<digest>.arrow`` is kept when its digest appears in the ledger: as any
64-hex string value anywhere in any record's ``data`` (``dataset`` digests, ``stage`` inputs and
outputs, ``artifact`` digests, ...), or inside the bytes of a torn or ``recovered`` line, so a
ledger that cannot be fully read never turns live data into garbage. Stale files in ``<root>/tmp``
(left by interrupted writes) are removed too.

Safety:

- the folder must be a store: it carries the ``.qpipe-store`` marker (or, for a store made
  before the marker, has the unmistakable store layout; see :mod:`qpipe.store.layout`), and it
  is not itself a symlink; anything else is refused before a file is looked at;
- the ledger must exist and hold at least one record, and every line but a torn last one must
  parse, or nothing is removed (:class:`~qpipe.errors.LedgerError`);
- unreferenced entries younger than ``grace_seconds`` (default one hour) are kept: a run writes
  an entry to the store a moment before the ledger records it;
- nothing outside the store root is touched: folders are opened with ``O_NOFOLLOW`` and files are
  unlinked relative to their folder's descriptor; symlinks are listed as skipped, never followed
  or removed.

When several runs roots share one store (``[store] path``), a collection that reads only one of
their ledgers would remove the others' entries: collect with a ledger that all of them write to.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from qpipe.errors import LedgerError, StoreError
from qpipe.ledger import iter_records
from qpipe.store.layout import require_store

__all__ = ["GcEntry", "GcReport", "collect_garbage", "referenced_digests"]

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_HEX64_IN_TEXT = re.compile(rb"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])")
_ENTRY = re.compile(r"([0-9a-f]{64})\.arrow")
_SHARD = re.compile(r"[0-9a-f]{2}")


@dataclass(frozen=True, slots=True)
class GcEntry:
    """One file that was (or, in a dry run, would be) removed, or that was kept as too recent."""

    path: Path
    nbytes: int
    kind: Literal["entry", "tmp"]


@dataclass(frozen=True, slots=True)
class GcReport:
    """What :func:`collect_garbage` removed (``removed``) and left alone, and why."""

    dry_run: bool
    removed: tuple[GcEntry, ...]
    referenced: int  # entries kept because the ledger references them
    recent: tuple[GcEntry, ...]  # unreferenced, but younger than the grace period
    skipped: tuple[Path, ...]  # symlinks and other non-regular files, never touched

    @property
    def nbytes(self) -> int:
        """Total size of the removed files."""
        return sum(e.nbytes for e in self.removed)


def _walk_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _walk_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk_strings(v)


def _torn_tail(path: Path) -> bytes:
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - (1 << 20)))
        tail = f.read()
    return tail[tail.rfind(b"\n") + 1 :]


def referenced_digests(ledger_path: str | Path) -> set[str]:
    """Every 64-hex string the ledger's records hold (lower-cased), the store digests among them.

    Raises :class:`~qpipe.errors.LedgerError` if the ledger is missing, empty, or has an
    unreadable line other than a torn last one.
    """
    path = Path(ledger_path)
    found: set[str] = set()
    n = 0
    for rec in iter_records(path):
        n += 1
        for text in _walk_strings(rec["data"]):
            if len(text) == 64 and _HEX64.fullmatch(text):
                found.add(text.lower())
        if rec["kind"] == "recovered":  # a crashed writer's half line may name live entries
            torn = str(rec["data"].get("torn", ""))
            raw = torn.encode("utf-8", "replace")
            if rec["data"].get("encoding") == "base64":
                with contextlib.suppress(binascii.Error, ValueError):
                    raw = base64.b64decode(torn)
            found.update(m.decode().lower() for m in _HEX64_IN_TEXT.findall(raw))
    if n == 0:
        msg = f"ledger `{path}` has no records; refusing to treat every store entry as garbage"
        raise LedgerError(msg)
    found.update(m.decode().lower() for m in _HEX64_IN_TEXT.findall(_torn_tail(path)))
    return found


def _regular(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode)


def collect_garbage(
    store_root: str | Path,
    ledger_path: str | Path,
    *,
    dry_run: bool,
    grace_seconds: float = 3600.0,
) -> GcReport:
    """Remove store entries the ledger does not reference, and stale temp files.

    Parameters
    ----------
    store_root
        The store folder (``<out>/store`` by default).
    ledger_path
        The ledger whose records say which entries are live.
    dry_run
        List what would be removed, remove nothing.
    grace_seconds
        Unreferenced entries and temp files modified less than this long ago are kept.

    Returns
    -------
    GcReport
        The removed (or removable) files with their sizes, and what was kept.
    """
    root = require_store(store_root, "store gc")  # a folder that is not a store: nothing goes
    live = referenced_digests(ledger_path)  # a bad ledger stops everything too
    root = root.absolute()
    cutoff = time.time() - grace_seconds
    removed: list[GcEntry] = []
    recent: list[GcEntry] = []
    skipped: list[Path] = []
    referenced = 0

    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        msg = f"cannot open store `{root}`: {exc.strerror or exc}"
        raise StoreError(msg) from None
    try:
        for shard in sorted(os.scandir(root_fd), key=lambda e: e.name):
            if shard.is_symlink():
                skipped.append(root / shard.name)
                continue
            is_tmp = shard.name == "tmp"
            if not (is_tmp or _SHARD.fullmatch(shard.name)) or not shard.is_dir():
                continue  # not ours: leave it alone
            try:
                dir_fd = os.open(
                    shard.name,
                    os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                    dir_fd=root_fd,
                )
            except OSError:
                skipped.append(root / shard.name)
                continue
            try:
                for f in sorted(os.scandir(dir_fd), key=lambda e: e.name):
                    where = root / shard.name / f.name
                    st = f.stat(follow_symlinks=False)
                    if not _regular(st):
                        if stat.S_ISLNK(st.st_mode):
                            skipped.append(where)
                        continue
                    if is_tmp:
                        kind: Literal["entry", "tmp"] = "tmp"
                    else:
                        m = _ENTRY.fullmatch(f.name)
                        if m is None or not f.name.startswith(shard.name):
                            continue  # not a store entry
                        if m.group(1) in live:
                            referenced += 1
                            continue
                        kind = "entry"
                    entry = GcEntry(where, st.st_size, kind)
                    if st.st_mtime > cutoff:
                        recent.append(entry)
                        continue
                    if not dry_run:
                        try:
                            os.unlink(f.name, dir_fd=dir_fd)
                        except FileNotFoundError:
                            continue  # removed meanwhile by someone else
                    removed.append(entry)
            finally:
                os.close(dir_fd)
            if not dry_run and not is_tmp:
                with contextlib.suppress(OSError):  # only succeeds when empty
                    os.rmdir(shard.name, dir_fd=root_fd)
    except OSError as exc:
        msg = f"cannot collect garbage in store `{root}`: {exc.strerror or exc}"
        raise StoreError(msg) from None
    finally:
        os.close(root_fd)
    return GcReport(dry_run, tuple(removed), referenced, tuple(recent), tuple(skipped))
