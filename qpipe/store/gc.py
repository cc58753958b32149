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
from dataclasses import dataclass, field
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
    sweep = _Sweep(root, live, time.time() - grace_seconds, dry_run)
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        msg = f"cannot open store `{root}`: {exc.strerror or exc}"
        raise StoreError(msg) from None
    try:
        for shard in sorted(os.scandir(root_fd), key=lambda e: e.name):
            sweep.folder(root_fd, shard)
    except OSError as exc:
        msg = f"cannot collect garbage in store `{root}`: {exc.strerror or exc}"
        raise StoreError(msg) from None
    finally:
        os.close(root_fd)
    return sweep.report()


@dataclass
class _Sweep:
    """One collection's walk: what it removed, kept and skipped so far."""

    root: Path
    live: set[str]
    cutoff: float
    dry_run: bool
    removed: list[GcEntry] = field(default_factory=list)
    recent: list[GcEntry] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    referenced: int = 0

    def report(self) -> GcReport:
        return GcReport(
            self.dry_run,
            tuple(self.removed),
            self.referenced,
            tuple(self.recent),
            tuple(self.skipped),
        )

    def folder(self, root_fd: int, shard: os.DirEntry[str]) -> None:
        """Collect one top-level folder (``tmp`` or a two-hex shard); anything else stays."""
        if shard.is_symlink():
            self.skipped.append(self.root / shard.name)
            return
        is_tmp = shard.name == "tmp"
        if not (is_tmp or _SHARD.fullmatch(shard.name)) or not shard.is_dir():
            return  # not ours: leave it alone
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            dir_fd = os.open(shard.name, flags, dir_fd=root_fd)
        except OSError:
            self.skipped.append(self.root / shard.name)
            return
        try:
            for f in sorted(os.scandir(dir_fd), key=lambda e: e.name):
                self.file(dir_fd, shard.name, f, is_tmp)
        finally:
            os.close(dir_fd)
        if not self.dry_run and not is_tmp:
            with contextlib.suppress(OSError):  # only succeeds when empty
                os.rmdir(shard.name, dir_fd=root_fd)

    def file(self, dir_fd: int, shard: str, f: os.DirEntry[str], is_tmp: bool) -> None:
        where = self.root / shard / f.name
        st = f.stat(follow_symlinks=False)
        if not _regular(st):
            if stat.S_ISLNK(st.st_mode):
                self.skipped.append(where)
            return
        kind: Literal["entry", "tmp"] = "tmp"
        if not is_tmp:
            m = _ENTRY.fullmatch(f.name)
            if m is None or not f.name.startswith(shard):
                return  # not a store entry
            if m.group(1) in self.live:
                self.referenced += 1
                return
            kind = "entry"
        entry = GcEntry(where, st.st_size, kind)
        if st.st_mtime > self.cutoff:
            self.recent.append(entry)
            return
        if not self.dry_run:
            try:
                os.unlink(f.name, dir_fd=dir_fd)
            except FileNotFoundError:
                return  # removed meanwhile by someone else
        self.removed.append(entry)
