"""What makes a folder a qpipe store: the marker file, and the rule for stores made before it.

A store writes ``<root>/.qpipe-store`` when it is created. Commands that delete (``store gc``)
or rewrite (``store verify --remove-damaged``) refuse a folder without it, so pointing them at
the wrong folder (a home, a project) cannot remove anything.

Stores written before the marker existed are recognised by their layout alone, and only when
it is unmistakable: every name at the top is ``tmp``, ``index`` or two hex characters, every
two-hex folder holds only entry files ``<aa><62 hex>.arrow`` (and dot-named temp files), and
(for deleting commands) at least one entry exists. Opening such a folder as a store writes the
marker; a folder that is neither empty, marked nor a store by layout is refused.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from qpipe._fs import refuse_symlink, write_bytes_atomic
from qpipe.errors import StoreError

__all__ = ["MARKER", "ensure_marker", "entry_files", "is_store", "require_store"]

MARKER = ".qpipe-store"
_MARKER_TEXT = b'{"format": "qpipe-arrow-store", "layout": "<aa>/<sha256>.arrow", "version": 1}\n'
_SHARD = re.compile(r"[0-9a-f]{2}")
_ENTRY = re.compile(r"[0-9a-f]{64}\.arrow")
_OWN_NAMES = {"tmp", "index", MARKER}


def _temp_name(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")  # an interrupted atomic write


def _layout(root: Path) -> tuple[bool, int]:
    """(only store names inside, number of entries) by the pre-marker layout rule."""
    entries = 0
    for top in os.scandir(root):
        if top.name in _OWN_NAMES or _temp_name(top.name):
            continue
        if not _SHARD.fullmatch(top.name):
            return False, entries
        if top.is_symlink() or not top.is_dir():
            continue  # refused on use (never followed); not a reason to call it foreign
        for f in os.scandir(top.path):
            if _ENTRY.fullmatch(f.name) and f.name.startswith(top.name):
                entries += 1
            elif not _temp_name(f.name):
                return False, entries
    return True, entries


def is_store(root: str | Path, *, need_entry: bool = True) -> bool:
    """True if ``root`` carries the marker, or has the unmistakable pre-marker store layout."""
    path = Path(root)
    if (path / MARKER).is_file():
        return True
    try:
        own, entries = _layout(path)
    except OSError:
        return False
    return own and (entries > 0 or not need_entry)


def require_store(root: str | Path, command: str) -> Path:
    """``root`` if it is a real (not symlinked) store folder, else a one-line error."""
    path = Path(root)
    refuse_symlink(path, "store")
    if not path.is_dir():
        msg = f"store `{path}` does not exist or is not a folder"
        raise StoreError(msg)
    if not is_store(path):
        msg = (
            f"`{path}` is not a qpipe store (no `{MARKER}` marker and not the store layout); "
            f"`{command}` refuses to touch it: pass the store folder (default `<out>/store`)"
        )
        raise StoreError(msg)
    return path


def ensure_marker(root: Path) -> None:
    """Mark ``root`` as a store: a new or empty folder, or an unmarked pre-marker store.

    Raises :class:`StoreError` for a folder that holds anything else, so the store never mixes
    its files into a folder it does not own.
    """
    if (root / MARKER).is_file():
        return
    if not is_store(root, need_entry=False):
        msg = (
            f"`{root}` is not empty and not a qpipe store; the store needs a folder of its own "
            f"(set `store.path` to a new or empty folder)"
        )
        raise StoreError(msg)
    try:
        write_bytes_atomic(root / MARKER, _MARKER_TEXT)
    except OSError as exc:
        msg = f"cannot write in store `{root}`: {exc.strerror or exc}"
        raise StoreError(msg) from None


def entry_files(root: Path) -> list[Path]:
    """Every entry file ``<root>/<aa>/<digest>.arrow``, sorted; symlinks (files or shard
    folders) are never listed, so nothing reached through them is read or removed."""
    return sorted(
        p
        for p in root.glob("??/*.arrow")
        if _ENTRY.fullmatch(p.name)
        and p.is_file()
        and not p.is_symlink()
        and not p.parent.is_symlink()
    )
