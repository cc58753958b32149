"""The sidecar ``<ledger>.lock``: it serializes writers (``flock``) and holds the head.

The head is ``"<seq:020d> <hash>\\n"`` at offset 0: the seq and hash of the last record
appended. Cutting records off the end of the ledger no longer matches it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["HEAD_LEN", "head_bytes", "lock_path", "read_head", "read_head_file", "shared_lock"]

HEAD_LEN = 20 + 1 + 64 + 1  # "<seq:020d> <hash>\n"


def lock_path(path: Path) -> Path:
    """The lock file of the ledger at ``path``."""
    return path.with_name(path.name + ".lock")


def read_head(fd: int) -> tuple[int, str] | None:
    """``(seq, hash)`` from an open lock file, or None when it holds no valid head."""
    raw = os.pread(fd, HEAD_LEN, 0)
    if len(raw) != HEAD_LEN:
        return None
    try:
        seq_text, digest = raw.decode("ascii").split()
        return int(seq_text), digest
    except ValueError:
        return None


def read_head_file(path: Path) -> tuple[int, str] | None:
    """The head of the ledger at ``path``, or None without a lock file (or a valid head)."""
    try:
        fd = os.open(lock_path(path), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None  # a copied ledger without its head: the chain alone is checked
    try:
        return read_head(fd)
    finally:
        os.close(fd)


def head_bytes(seq: int, digest: str) -> bytes:
    """The lock file's head for a last record ``seq`` with ``digest``."""
    return f"{seq:020d} {digest}\n".encode("ascii")


@contextlib.contextmanager
def shared_lock(path: Path) -> Iterator[None]:
    """Hold a shared lock while reading, if the ledger has a lock file (never create one)."""
    try:
        fd = os.open(lock_path(path), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock
