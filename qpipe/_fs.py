"""File-system primitives shared by the store, the ledger and the run outputs.

Every file qpipe writes goes to a temp file in the same folder, is fsynced, then renamed over
its final name, so a reader or a crash never sees a partial file under that name.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

__all__ = ["file_digest", "fsync_dir", "write_bytes_atomic"]

_HASH_BLOCK = 1 << 24


def file_digest(path: str | Path) -> str:
    """SHA-256 hex digest of a file's bytes (raises ``OSError`` as ``open`` does)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def fsync_dir(path: str | Path) -> None:
    """Make a rename in ``path`` durable; best effort (some file systems refuse)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | Path, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename); return its SHA-256."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return hashlib.sha256(data).hexdigest()
