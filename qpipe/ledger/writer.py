"""Appending to the ledger: one record at a time, safely across threads, processes and crashes.

How an append works (:meth:`Ledger._append`):

1. take a ``threading.Lock`` and an exclusive ``fcntl.flock`` on the sidecar ``<ledger>.lock``,
   so appends from threads and processes are serialized;
2. read only the tail of the file (backwards from the end) to find the last whole record, and
   refuse to build on it if it fails its hash or disagrees with the head in the lock file;
3. a torn final line (no trailing newline, or an unparsable last line) is not a record: its bytes
   are truncated and kept, as text or base64, in a ``recovered`` record that continues the chain;
4. write the whole line in one ``os.write``, then ``fsync``; a short write is truncated away;
5. record the new head (seq and hash) in the lock file.

Only :class:`~qpipe.ledger.recorder.RunRecorder` calls :meth:`Ledger._append`: records are
written through its typed methods, never as ad-hoc dicts.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qpipe._canonical import canonical_json, jsonable
from qpipe._fs import fsync_dir
from qpipe.errors import LedgerError
from qpipe.ledger.chain import make_record, parse_record
from qpipe.ledger.keys import load_key
from qpipe.ledger.lock import head_bytes, lock_path, read_head
from qpipe.ledger.reader import RunSummary, records, runs
from qpipe.ledger.signing import check_before_run, checkpoint_data, record_head, scan_tail
from qpipe.ledger.trust import LedgerTrust

__all__ = ["Ledger", "TornTail", "open_no_follow"]

_TAIL_BLOCK = 1 << 13
_OPEN_FLAGS = os.O_CLOEXEC | os.O_NOFOLLOW


@dataclass(frozen=True, slots=True)
class TornTail:
    """A final line that is not a whole record: 1-based ``line``, byte ``offset`` and size."""

    line: int | None
    offset: int
    nbytes: int

    def describe(self) -> str:
        where = f"line {self.line}" if self.line is not None else "the final line"
        return f"{where}: {self.nbytes:,} bytes at offset {self.offset:,}"


@dataclass(frozen=True, slots=True)
class _Tail:
    last: dict[str, Any] | None  # the last whole record
    torn: TornTail | None
    torn_bytes: bytes


def open_no_follow(path: Path, flags: int, what: str = "ledger") -> int:
    """``os.open`` that refuses a symbolic link at ``path`` with a one-line LedgerError.

    qpipe never writes through a link it did not create: a link planted at ``audit.jsonl`` or
    ``audit.jsonl.lock`` would otherwise make an append overwrite the file it points to.
    """
    try:
        return os.open(path, flags | _OPEN_FLAGS, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP or path.is_symlink():
            msg = f"{what} `{path}` is a symbolic link; refusing to write through it"
            raise LedgerError(msg) from None
        raise


def _read_last_lines(fd: int, size: int) -> tuple[bytes, int]:
    """The end of the file holding its last two whole lines, and the offset it starts at."""
    buf, base, block = b"", size, _TAIL_BLOCK
    # read until the buffer holds the last two lines entirely (three newlines, or the file start)
    while base > 0 and buf.count(b"\n") < 3:
        start = max(0, base - block)
        buf = os.pread(fd, base - start, start) + buf
        base = start
        block *= 2
    return buf, base


def read_tail(fd: int, size: int, path: Path) -> _Tail:
    """Find the last whole record and any torn final line by reading backwards from the end."""
    if size == 0:
        return _Tail(None, None, b"")
    buf, base = _read_last_lines(fd, size)
    parts = buf.split(b"\n")
    torn = parts.pop()  # bytes after the last newline (b"" when the file ends with one)
    torn_offset = size - len(torn)
    # parts[-1] is the last newline-terminated line; parts[0] may be cut if base > 0
    complete = parts if base == 0 else parts[1:]
    last: dict[str, Any] | None = None
    while complete:
        line = complete.pop()
        record, problem = parse_record(line)
        if problem is None:
            last = record
            break
        if record is None and not torn:
            # an unparsable final line (with its newline) counts as torn: a crash artifact
            torn_offset -= len(line) + 1
            torn = line + b"\n"
            continue
        lineno = "before the torn final line" if torn else "the last line"
        msg = f"ledger `{path}`: {lineno} {problem}; refusing to append (run `qpipe ledger verify`)"
        raise LedgerError(msg)
    if last is None and torn_offset > 0:
        # the buffer did not reach a whole record although the file has one: cannot happen
        # with the read loop above, but never build on a guess
        msg = f"ledger `{path}`: cannot find the last whole record; run `qpipe ledger verify`"
        raise LedgerError(msg)
    info = TornTail(None, torn_offset, len(torn)) if torn else None
    return _Tail(last, info, torn)


class Ledger:
    """An ``audit.jsonl`` ledger: appends serialized across threads and processes.

    Parameters
    ----------
    path
        The ledger file; it and its folder are created on the first append. A sidecar
        ``<path>.lock`` serializes writers and holds the head (last seq and hash).

    Records are written through :class:`~qpipe.ledger.recorder.RunRecorder`; read them with
    :meth:`records` or :func:`~qpipe.ledger.reader.iter_records`.
    """

    def __init__(self, path: str | Path, key_folder: str | Path | None = None) -> None:
        self.path = Path(path)
        self.lock_path = lock_path(self.path)
        self.key_folder = Path(key_folder) if key_folder is not None else None
        self._thread_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"

    def __reduce__(self):  # a Ledger is its path (and key folder); the lock is per process
        return (self.__class__, (self.path, self.key_folder))

    @property
    def trust(self) -> LedgerTrust:
        """The key folder's journal and signed head for this ledger."""
        return LedgerTrust(self.path, self.key_folder)

    def _append(
        self, run_id: str, kind: str, data: Mapping[str, Any], *, check: bool = False
    ) -> dict[str, Any]:
        """Append one record and return it (with ``seq``, ``ts``, ``prev`` and ``hash``).

        ``data`` is made JSON-safe first (NaN/inf become ``null``). If the file ends with a torn
        line, a ``recovered`` record holding its bytes is written first. With ``check`` (a run
        starting) the whole ledger is checked against the key folder first (see
        :func:`~qpipe.ledger.signing.scan_tail`). Raises :class:`~qpipe.errors.LedgerError` if
        the file cannot be written or is not intact.
        """
        _check_arguments(run_id, kind, data)
        payload = jsonable(data)
        return self._locked(
            lambda fd, lock_fd: self._append_to(fd, lock_fd, run_id, kind, payload, check)
        )

    def _checkpoint(self, run_id: str) -> dict[str, Any]:
        """Append a signed ``checkpoint`` covering every record so far; return it."""
        return self._locked(lambda fd, lock_fd: self._checkpoint_to(fd, lock_fd, run_id))

    def _locked(self, body: Callable[[int, int], dict[str, Any]]) -> dict[str, Any]:
        with self._thread_lock:
            try:
                return self._locked_files(body)
            except OSError as exc:
                msg = f"cannot append to ledger `{self.path}`: {exc.strerror or exc}"
                raise LedgerError(msg) from None

    def _locked_files(self, body: Callable[[int, int], dict[str, Any]]) -> dict[str, Any]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_fd = open_no_follow(self.lock_path, os.O_RDWR | os.O_CREAT, "ledger lock file")
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            fd = open_no_follow(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
            try:
                record = body(fd, lock_fd)
            finally:
                os.close(fd)
            os.pwrite(lock_fd, head_bytes(record["seq"], record["hash"]), 0)
            return record
        finally:
            os.close(lock_fd)  # releases the flock

    def _open_tail(self, fd: int, lock_fd: int, run_id: str) -> tuple[dict[str, Any] | None, int]:
        """The last whole record and the file size, after recovering a torn final line."""
        size = os.fstat(fd).st_size
        if size == 0:
            fsync_dir(self.path.parent)  # make the new file's name durable
        tail = read_tail(fd, size, self.path)
        last = tail.last
        self._check_head(lock_fd, last)
        if tail.torn is not None:
            os.ftruncate(fd, tail.torn.offset)
            recovered = make_record(last, run_id, "recovered", _recovered_data(tail))
            last = self._write_noted(fd, tail.torn.offset, recovered)
            size = os.fstat(fd).st_size
        return last, size

    def _append_to(
        self, fd: int, lock_fd: int, run_id: str, kind: str, payload: dict[str, Any], check: bool
    ) -> dict[str, Any]:
        if check:
            size = os.fstat(fd).st_size
            torn = read_tail(fd, size, self.path).torn
            whole = torn.offset if torn is not None else size
            key = load_key(self.trust.folder, create=False)
            scan = scan_tail(fd, whole, self.path, self.trust, key.public_hex if key else None)
            check_before_run(scan, self.path)
        last, size = self._open_tail(fd, lock_fd, run_id)
        return self._write_noted(fd, size, make_record(last, run_id, kind, payload))

    def _checkpoint_to(self, fd: int, lock_fd: int, run_id: str) -> dict[str, Any]:
        last, size = self._open_tail(fd, lock_fd, run_id)
        key = load_key(self.trust.folder)
        assert key is not None
        scan = scan_tail(fd, size, self.path, self.trust, key.public_hex)
        if scan.lost_at_end > 1:
            check_before_run(scan, self.path)
        data = checkpoint_data(scan, last, size, key)
        record = self._write_noted(fd, size, make_record(last, run_id, "checkpoint", data))
        record_head(fd, record, key, self.trust, scan)
        return record

    def _write_noted(self, fd: int, size: int, record: dict[str, Any]) -> dict[str, Any]:
        """Journal the record in the key folder, then write it (see :mod:`qpipe.ledger.trust`)."""
        self.trust.note(record["seq"], record["hash"])
        return self._write(fd, size, record)

    def _check_head(self, lock_fd: int, last: dict[str, Any] | None) -> None:
        head = read_head(lock_fd)
        if head is None:
            return
        seq, digest = head
        last_seq = last["seq"] if last is not None else 0
        if seq > last_seq or (seq == last_seq and last is not None and digest != last["hash"]):
            msg = (
                f"ledger `{self.path}` ends at seq {last_seq} but its head in `{self.lock_path}` "
                f"records seq {seq}: records were removed or replaced; refusing to append "
                f"(run `qpipe ledger verify`)"
            )
            raise LedgerError(msg)

    def _write(self, fd: int, size: int, record: dict[str, Any]) -> dict[str, Any]:
        line = (canonical_json(record) + "\n").encode("utf-8")
        try:
            written = os.write(fd, line)  # one call: a reader never sees two half lines mixed
        except OSError:
            _truncate_quietly(fd, size)
            raise
        if written != len(line):
            _truncate_quietly(fd, size)
            msg = f"short write to ledger `{self.path}` ({written} of {len(line)} bytes); undone"
            raise LedgerError(msg)
        os.fsync(fd)
        return record

    def records(self) -> list[dict[str, Any]]:
        """Every whole record of this ledger (see :func:`~qpipe.ledger.reader.records`)."""
        return records(self.path)

    def runs(self) -> list[RunSummary]:
        """One summary per run (see :func:`~qpipe.ledger.reader.runs`)."""
        return runs(self.path)


def _check_arguments(run_id: Any, kind: Any, data: Any) -> None:
    if not isinstance(run_id, str):
        msg = f"ledger run id must be a string, got {type(run_id).__name__}"
        raise LedgerError(msg)
    if not isinstance(kind, str) or not kind:
        msg = f"ledger record kind must be a non-empty string, got `{kind!r}`"
        raise LedgerError(msg)
    if not isinstance(data, Mapping):
        msg = f"ledger `{kind}` data must be a mapping, got {type(data).__name__}"
        raise LedgerError(msg)


def _recovered_data(tail: _Tail) -> dict[str, Any]:
    assert tail.torn is not None
    try:
        text, encoding = tail.torn_bytes.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(tail.torn_bytes).decode("ascii"), "base64"
    return {
        "offset": tail.torn.offset,
        "bytes": tail.torn.nbytes,
        "encoding": encoding,
        "torn": text,
    }


def _truncate_quietly(fd: int, size: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, size)
