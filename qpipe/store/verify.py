"""``store verify``: hash every entry of a store and name the damaged ones.

A run never reuses a damaged entry (it replaces it, see :meth:`ArrowStore.adopt`), but an
entry no run recomputes stays damaged until something reads it. This is the full check: every
byte of every entry is hashed (SHA-256 at roughly 1 GB/s) and compared with its name.
``remove_damaged`` deletes the damaged ones: their bytes match no digest, so nothing can refer
to them; a run folder that hard-links one keeps its own (damaged) copy and ``ledger verify``
names it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qpipe._fs import file_digest
from qpipe.errors import StoreError
from qpipe.store.layout import entry_files, require_store

__all__ = ["DamagedEntry", "StoreCheck", "verify_store"]


@dataclass(frozen=True, slots=True)
class DamagedEntry:
    """An entry whose bytes do not hash to its name (or cannot be read)."""

    path: Path
    reason: str


@dataclass(frozen=True, slots=True)
class StoreCheck:
    """What :func:`verify_store` checked and found."""

    root: Path
    checked: int
    nbytes: int
    damaged: tuple[DamagedEntry, ...]
    removed: bool

    @property
    def ok(self) -> bool:
        return not self.damaged


def _problem(path: Path) -> str | None:
    try:
        actual = file_digest(path)
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    name = path.name.removesuffix(".arrow")
    return None if actual == name else f"content hashes to {actual[:12]}…, not {name[:12]}…"


def verify_store(
    root: str | Path,
    *,
    remove_damaged: bool = False,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
) -> StoreCheck:
    """Hash every entry of the store at ``root``; optionally delete the damaged ones.

    Raises
    ------
    StoreError
        ``root`` is not a store (no marker, not the store layout), or an entry cannot be
        removed.
    PathSafetyError
        ``root`` is a symlink.
    """
    path = require_store(root, "store verify")
    path = path.absolute()
    damaged: list[DamagedEntry] = []
    nbytes = 0
    found = entry_files(path)
    for i, entry in enumerate(found):
        nbytes += entry.stat().st_size
        problem = _problem(entry)
        if problem is not None:
            damaged.append(DamagedEntry(entry, problem))
        if on_event is not None:
            on_event("store_entry", {"done": i + 1, "total": len(found), "damaged": len(damaged)})
    if remove_damaged:
        for d in damaged:
            try:
                os.unlink(d.path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                msg = f"cannot remove damaged store entry `{d.path}`: {exc.strerror or exc}"
                raise StoreError(msg) from None
    return StoreCheck(path, len(found), nbytes, tuple(damaged), remove_damaged)
