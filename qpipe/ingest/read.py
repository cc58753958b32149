"""Opening and reading an input file: existence, kind, magic bytes, then the reader.

Every failure here is a :class:`~qpipe.errors.DataFormatError` naming the file: missing, not a
regular file (a FIFO or device would block forever), empty, an unsupported extension, content
that is not what the extension says, a truncated binary file, a CSV header with the same column
twice, not UTF-8, or any reader failure (including running out of memory).
"""

from __future__ import annotations

import csv
import errno
import os
from pathlib import Path
from typing import Literal

import polars as pl

from qpipe import _fs
from qpipe.errors import DataFormatError, OutOfMemoryError, QpipeError, size_text

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "FileKind",
    "ReadGuard",
    "file_digest",
    "is_memory_error",
    "normalise_names",
    "read_table",
    "sniff",
]

FileKind = Literal["csv", "parquet", "ipc"]
SUPPORTED_EXTENSIONS: dict[str, FileKind] = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "ipc",
    ".ipc": "ipc",
    ".feather": "ipc",
}
KIND_NAME = {"csv": "CSV", "parquet": "Parquet", "ipc": "Arrow IPC"}


def file_digest(path: str | Path) -> str:
    """SHA-256 hex digest of a file's raw bytes (what the ledger records for an input).

    A FIFO, device or directory is refused before it is read (it would block or never end).
    """
    try:
        special = _fs.not_a_regular_file(path)
        if special is not None:
            msg = f"input `{path}` is {special}, not a regular file"
            raise DataFormatError(msg)
        return _fs.file_digest(path)
    except FileNotFoundError:
        msg = f"file `{path}` does not exist"
        raise DataFormatError(msg) from None
    except OSError as exc:
        msg = f"cannot read `{path}`: {exc.strerror or exc}"
        raise DataFormatError(msg) from None
    except MemoryError:
        block = size_text(_fs.HASH_BLOCK)
        msg = f"out of memory hashing `{path}` (needs a {block} read buffer); free memory"
        raise OutOfMemoryError(msg) from None


def _content_kind(head: bytes) -> str:
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"ARROW1"):
        return "ipc"
    if head.startswith(b"\xff\xff\xff\xff"):
        return "an Arrow IPC stream"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip archive"
    if head.startswith(b"PK\x03\x04"):
        return "a ZIP archive (an Excel workbook?)"
    return "csv"


def _preferred_ext(kind: str) -> str:
    return {"csv": ".csv", "parquet": ".parquet", "ipc": ".arrow"}[kind]


def _check_regular(path: Path, what: str) -> None:
    try:
        special = _fs.not_a_regular_file(path)
    except FileNotFoundError:
        msg = f"{what} file `{path}` does not exist"
        raise DataFormatError(msg) from None
    except OSError as exc:
        msg = f"cannot read {what} file `{path}`: {exc.strerror or exc}"
        raise DataFormatError(msg) from None
    if special is not None:
        msg = f"{what} path `{path}` is {special}, not a regular file"
        raise DataFormatError(msg)


def _head_and_tail(path: Path, what: str) -> tuple[int, bytes, bytes]:
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            f.seek(max(size - 8, 0))
            tail = f.read(8)
    except OSError as exc:
        msg = f"cannot read {what} file `{path}`: {exc.strerror or exc}"
        raise DataFormatError(msg) from None
    return size, head, tail


def sniff(path: Path, what: str) -> FileKind:
    """Check the file exists, is a non-empty regular file and is what its extension says.

    Returns its kind. A CSV file's header is also checked for a column named twice.
    """
    _check_regular(path, what)
    ext = path.suffix.lower()
    kind = SUPPORTED_EXTENSIONS.get(ext)
    if kind is None:
        exts = ", ".join(f"`{e}`" for e in SUPPORTED_EXTENSIONS)
        msg = f"{what} file `{path}` has unsupported extension `{ext}` (use one of {exts})"
        raise DataFormatError(msg)
    size, head, tail = _head_and_tail(path, what)
    if size == 0:
        msg = f"{what} file `{path}` is empty (0 bytes)"
        raise DataFormatError(msg)
    actual = _content_kind(head)
    if actual != kind:
        found = KIND_NAME.get(actual, actual)
        found = f"a {found} file" if actual in KIND_NAME else found
        hint = f"; rename it to `{_preferred_ext(actual)}`" if actual in KIND_NAME else ""
        msg = f"{what} file `{path}` is {found}, not {KIND_NAME[kind]} as its extension says{hint}"
        raise DataFormatError(msg)
    if kind == "parquet" and not tail.endswith(b"PAR1"):
        msg = f"{what} file `{path}` is truncated or corrupt (no `PAR1` footer)"
        raise DataFormatError(msg)
    if kind == "ipc" and not tail.endswith(b"ARROW1"):
        msg = f"{what} file `{path}` is truncated or corrupt (no `ARROW1` footer)"
        raise DataFormatError(msg)
    if kind == "csv":
        _check_csv_header(path, what)
    return kind


def _check_csv_header(path: Path, what: str) -> None:
    """Refuse a header with the same name twice (``date,symbol,close,close``).

    Polars renames the second copy to ``close_duplicated_0``, so the duplicate would otherwise be
    silently ignored and the backtest would use whichever column came first.
    """
    try:
        with path.open(encoding="utf-8", newline="") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return  # the reader reports these with its own message
    seen: set[str] = set()
    for name in (h.strip() for h in header):
        if name in seen:
            msg = f"{what} file `{path}` has two columns named `{name}`; remove or rename one"
            raise DataFormatError(msg)
        seen.add(name)


def _memory_error(path: Path, what: str, exc: BaseException) -> OutOfMemoryError:
    try:
        size = size_text(os.stat(path).st_size)
    except OSError:
        size = "unknown size"
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "an allocation failed"
    msg = (
        f"out of memory reading {what} file `{path}` (it is {size}, so at least that much is "
        f"needed; {detail}); free memory, raise the memory limit, or use a smaller `batch_rows`"
    )
    return OutOfMemoryError(msg)


def is_memory_error(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (Python, Arrow, or ``ENOMEM`` from the OS)."""
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, OSError) and exc.errno == errno.ENOMEM:
        return True
    text = str(exc).lower()
    return "cannot allocate memory" in text or "out of memory" in text


def read_error(path: Path, kind: FileKind, what: str, exc: BaseException) -> QpipeError:
    """The one-line error for a reader failure ``exc`` on ``path``."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if is_memory_error(exc):
        return _memory_error(path, what, exc)
    if kind == "csv" and "utf-8" in text.lower():
        msg = f"{what} file `{path}` is not UTF-8 encoded ({text}); re-save it as UTF-8"
    elif isinstance(exc, pl.exceptions.NoDataError):
        msg = f"{what} file `{path}` is empty"
    else:
        msg = f"cannot read {what} file `{path}` as {KIND_NAME[kind]}: {text}"
    return DataFormatError(msg)


class ReadGuard:
    """Turn any reader failure (Polars, Arrow, OS, even a Rust panic) into a DataFormatError."""

    def __init__(self, path: Path, kind: FileKind, what: str) -> None:
        self.path, self.kind, self.what = path, kind, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> Literal[False]:
        if exc is None or isinstance(exc, QpipeError):
            return False
        if isinstance(exc, Exception | pl.exceptions.PanicException):
            raise read_error(self.path, self.kind, self.what, exc) from None
        return False


def read_table(path: str | Path, *, what: str = "prices") -> pl.DataFrame:
    """Read a CSV, Parquet or Arrow IPC file whole, untyped for CSV (every column a string).

    Column names are trimmed and lower-cased. Raises :class:`~qpipe.errors.DataFormatError`
    for anything that cannot be read, including a file with no rows.
    """
    p = Path(path)
    kind = sniff(p, what)
    with ReadGuard(p, kind, what):
        if kind == "csv":
            frame = pl.read_csv(p, infer_schema=False, raise_if_empty=True)
        elif kind == "parquet":
            frame = pl.read_parquet(p)
        else:
            frame = pl.read_ipc(p)
    return normalise_names(frame, p, what)


def normalise_names(frame: pl.DataFrame, path: Path | str, what: str) -> pl.DataFrame:
    """Trim and lower-case the column names; refuse two that become equal."""
    names = [str(c).strip().lower() for c in frame.columns]
    seen: dict[str, str] = {}
    for raw, name in zip(frame.columns, names, strict=True):
        if name in seen:
            msg = (
                f"{what} file `{path}` has two columns named `{name}` "
                f"(`{seen[name]}` and `{raw}`) once case and spaces are ignored"
            )
            raise DataFormatError(msg)
        seen[name] = raw
    return frame.rename(dict(zip(frame.columns, names, strict=True)))
