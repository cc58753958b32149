"""File-system primitives shared by the store, the ledger and the run outputs.

Every file qpipe writes goes to a temp file in the same folder, is fsynced, then renamed over
its final name, so a reader or a crash never sees a partial file under that name.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from qpipe.errors import PathSafetyError, StoreError

__all__ = [
    "atomic_writer",
    "file_digest",
    "fsync_dir",
    "not_a_regular_file",
    "refuse_symlink",
    "safe_subdir",
    "write_bytes_atomic",
]

HASH_BLOCK = 1 << 24


_SPECIAL_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def not_a_regular_file(path: str | Path) -> str | None:
    """What ``path`` is if it is not a regular file (``"a FIFO (named pipe)"``), else None.

    Reading a FIFO or a character device blocks forever (or never ends), so every input is
    checked with this *before* it is opened or hashed. ``stat`` follows symlinks and never
    blocks; it raises ``OSError`` (``FileNotFoundError``...) as ``os.stat`` does.
    """
    return _special_kind(os.stat(path).st_mode)


def _special_kind(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    return next((text for test, text in _SPECIAL_KINDS if test(mode)), "not a regular file")


def file_digest(path: str | Path) -> str:
    """SHA-256 hex digest of a regular file's bytes (raises ``OSError`` as ``open`` does).

    A FIFO, device or directory raises ``OSError`` instead of blocking: the file is opened
    non-blocking and checked with ``fstat`` before a byte is read.
    """
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    special = _special_kind(os.fstat(fd).st_mode)
    if special is not None:
        os.close(fd)
        raise OSError(errno.EINVAL, f"`{path}` is {special}, not a regular file")
    with os.fdopen(fd, "rb") as f:
        while block := f.read(HASH_BLOCK):
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


@contextlib.contextmanager
def atomic_writer(path: str | Path) -> Iterator[BinaryIO]:
    """Write a file atomically: a binary file to write into, renamed over ``path`` on success.

    The temp file sits beside ``path`` under a random name (never a fixed one that two writers
    could share), is created exclusively and without following links, gets the permissions of
    any new file (``0o666`` less the umask; no process-wide umask change), is fsynced, then
    renamed; the folder is fsynced so the rename survives a crash. On any error the temp file is
    removed and ``path`` is untouched.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | Path, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_writer`); return its SHA-256."""
    with atomic_writer(path) as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest()


def refuse_symlink(path: str | Path, what: str) -> None:
    """Raise :class:`PathSafetyError` if ``path`` itself is a symlink (its parents may be).

    qpipe never writes through a link it did not create: a link planted where qpipe keeps its
    own folders (``<out>/store``, ``<out>/sweeps``) would send its writes anywhere.
    """
    if Path(path).is_symlink():
        msg = (
            f"{what} `{path}` is a symlink; qpipe never writes through a link it did not "
            f"create (remove the link, or name the real folder)"
        )
        raise PathSafetyError(msg)


def safe_subdir(root: str | Path, name: str, what: str = "folder") -> Path:
    """``root/name`` as a real folder of ``root``: created if missing, never a symlink.

    Parameters
    ----------
    root
        The folder that owns it (itself not checked: the caller chose it).
    name
        A plain folder name (no ``/``, ``..``).
    what
        How the message names the folder (``"store folder"``, ``"sweeps folder"``).

    Raises
    ------
    PathSafetyError
        ``name`` is not a plain name, or ``root/name`` is a symlink or not a folder.
    StoreError
        The folder cannot be created (read-only, full, ``root`` missing).
    """
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        msg = f"{what} name `{name}` is not a plain folder name"
        raise PathSafetyError(msg)
    path = Path(root) / name
    try:
        path.mkdir(exist_ok=True)
    except FileExistsError:
        pass  # a file or a dangling link: refused below
    except OSError as exc:
        msg = f"cannot create {what} `{path}`: {exc.strerror or exc}"
        raise StoreError(msg) from None
    refuse_symlink(path, what)
    if not stat.S_ISDIR(os.lstat(path).st_mode):
        msg = f"{what} `{path}` is not a folder"
        raise PathSafetyError(msg)
    return path
