"""The ledger: an append-only, hash-chained record of every run (``audit.jsonl``).

One JSON object per line, UTF-8, in canonical form (``json.dumps(obj, sort_keys=True,
separators=(",", ":"), ensure_ascii=False, allow_nan=False)``). Each record carries ``seq``
(global, from 1), ``ts`` (UTC ISO-8601 ending in ``Z``), ``run_id``, ``kind``, ``data``, ``prev``
(the previous record's ``hash``; 64 zeros for the first) and ``hash`` (SHA-256 hex of the canonical
JSON of the record without ``hash``).

How an append works (:meth:`Ledger.append`):

1. take a ``threading.Lock`` and an exclusive ``fcntl.flock`` on the sidecar ``<ledger>.lock``,
   so appends from threads and processes are serialized;
2. read only the tail of the file (backwards from the end) to find the last whole record;
3. a torn final line (no trailing newline, or an unparsable last line) is not a record: its bytes
   are truncated and kept, as text or base64, in a ``recovered`` record that continues the chain;
4. write the whole line in one ``os.write``, then ``fsync``; a short write is truncated away;
5. record the new head (seq and hash) in the lock file, so :func:`verify` also notices records
   removed from the end of the file.

Values are made JSON-safe before hashing: NaN and infinities become ``null``; dates and times
become ISO strings; paths, and anything else unknown, become strings; tuples and sets become lists;
numpy scalars and arrays become numbers and lists.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import math
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as dtime
from pathlib import Path, PurePath
from typing import Any, Literal

from qpipe._fs import file_digest, fsync_dir
from qpipe.errors import LedgerError

__all__ = [
    "GENESIS",
    "KEY_METRICS",
    "BadArtifact",
    "Ledger",
    "RunSummary",
    "TornTail",
    "VerifyReport",
    "artifact_path",
    "canonical_json",
    "iter_records",
    "record_hash",
    "records",
    "runs",
    "show_command",
    "verify",
    "verify_command",
]

GENESIS = "0" * 64
KEY_METRICS = ("sharpe", "cagr", "max_drawdown", "total_return")
_FIELDS = frozenset({"seq", "ts", "run_id", "kind", "data", "prev", "hash"})
_HEAD_LEN = 20 + 1 + 64 + 1  # "<seq:020d> <hash>\n"
_TAIL_BLOCK = 1 << 13


# --------------------------------------------------------------------------- canonical form


def canonical_json(obj: Any) -> str:
    """The canonical JSON text of ``obj`` (sorted keys, no spaces, UTF-8, finite numbers)."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of ``record`` without its ``hash`` field."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: finite numbers, strings, lists and string-keyed dicts."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        if not value.isascii():
            # lone surrogates cannot be encoded as UTF-8; replace them rather than fail the run
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return value.encode("utf-8", "replace").decode("utf-8")
        return value
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {_key(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=canonical_json)  # sets have no order; make one
    if isinstance(value, datetime | date | dtime):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return _jsonable(value.tolist())
    return str(value)


def _key(k: Any) -> str:
    if isinstance(k, str):
        return k
    if isinstance(k, datetime | date | dtime):
        return k.isoformat()
    return str(k)


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_record(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """Parse one line (without its newline). Returns ``(record, None)`` or ``(maybe, problem)``.

    ``problem`` is None for a whole, self-consistent record; otherwise it says what is wrong, and
    the record is returned too when the line was at least a JSON object with the right fields.
    """
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, "is not valid JSON"
    if not isinstance(obj, dict) or set(obj) != _FIELDS:
        return None, "is not a ledger record (wrong fields)"
    if (
        type(obj["seq"]) is not int
        or not isinstance(obj["hash"], str)
        or not isinstance(obj["prev"], str)
        or not isinstance(obj["run_id"], str)
        or not isinstance(obj["kind"], str)
        or not isinstance(obj["data"], dict)
    ):
        return None, "is not a ledger record (wrong field types)"
    try:
        if record_hash(obj) != obj["hash"]:
            return obj, "was edited: its hash does not match its content"
        if canonical_json(obj).encode("utf-8") != raw:
            return obj, "was edited: it is not in canonical form"
    except ValueError:  # non-finite numbers cannot be canonical
        return obj, "was edited: it holds non-finite numbers"
    return obj, None


# --------------------------------------------------------------------------- head (lock file)


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _read_head(fd: int) -> tuple[int, str] | None:
    raw = os.pread(fd, _HEAD_LEN, 0)
    if len(raw) != _HEAD_LEN:
        return None
    try:
        seq_text, digest = raw.decode("ascii").split()
        return int(seq_text), digest
    except ValueError:
        return None


def _head_bytes(seq: int, digest: str) -> bytes:
    return f"{seq:020d} {digest}\n".encode("ascii")


@contextlib.contextmanager
def _shared_lock(path: Path) -> Iterator[None]:
    """Hold a shared lock while reading, if the ledger has a lock file (never create one)."""
    try:
        fd = os.open(_lock_path(path), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock


# --------------------------------------------------------------------------- tail reading


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


def _read_tail(fd: int, size: int, path: Path) -> _Tail:
    """Find the last whole record and any torn final line by reading backwards from the end."""
    if size == 0:
        return _Tail(None, None, b"")
    buf, base, block = b"", size, _TAIL_BLOCK
    # read until the buffer holds the last two lines entirely (three newlines, or the file start)
    while base > 0 and buf.count(b"\n") < 3:
        start = max(0, base - block)
        buf = os.pread(fd, base - start, start) + buf
        base = start
        block *= 2
    parts = buf.split(b"\n")
    trailing = parts.pop()  # bytes after the last newline (b"" when the file ends with one)
    torn_offset = size - len(trailing)
    torn = trailing
    # parts[-1] is the last newline-terminated line; parts[0] may be cut if base > 0
    complete = parts if base == 0 else parts[1:]
    last: dict[str, Any] | None = None
    while complete:
        line = complete.pop()
        record, problem = _parse_record(line)
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


# --------------------------------------------------------------------------- writer


class Ledger:
    """Append records to an ``audit.jsonl`` ledger, safely across threads and processes.

    Parameters
    ----------
    path
        The ledger file; it and its folder are created on the first append. A sidecar
        ``<path>.lock`` serializes writers and holds the head (last seq and hash).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> led = Ledger(pathlib.Path(tempfile.mkdtemp()) / "audit.jsonl")
    >>> rec = led.append("20261126T073512Z-3fa9c1", "metrics", {"sharpe": float("nan")})
    >>> rec["seq"], rec["prev"] == GENESIS, rec["data"]
    (1, True, {'sharpe': None})
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock_path = _lock_path(self.path)
        self._thread_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"

    def __reduce__(self):  # a Ledger is its path; the lock is per process
        return (self.__class__, (self.path,))

    def append(self, run_id: str, kind: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """Append one record and return it (with ``seq``, ``ts``, ``prev`` and ``hash``).

        ``data`` is made JSON-safe first (NaN/inf become ``null``; see the module docstring).
        If the file ends with a torn line, a ``recovered`` record holding its bytes is written
        first. Raises :class:`~qpipe.errors.LedgerError` if the file cannot be written or its
        last record is not intact.
        """
        if not isinstance(run_id, str):
            msg = f"ledger run id must be a string, got {type(run_id).__name__}"
            raise LedgerError(msg)
        if not isinstance(kind, str) or not kind:
            msg = f"ledger record kind must be a non-empty string, got `{kind!r}`"
            raise LedgerError(msg)
        if not isinstance(data, Mapping):
            msg = f"ledger `{kind}` data must be a mapping, got {type(data).__name__}"
            raise LedgerError(msg)
        payload = _jsonable(data)
        with self._thread_lock:
            try:
                return self._append_locked(run_id, kind, payload)
            except OSError as exc:
                msg = f"cannot append to ledger `{self.path}`: {exc.strerror or exc}"
                raise LedgerError(msg) from None

    def _append_locked(self, run_id: str, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                size = os.fstat(fd).st_size
                if size == 0:
                    fsync_dir(self.path.parent)  # make the new file's name durable
                tail = _read_tail(fd, size, self.path)
                last = tail.last
                self._check_head(lock_fd, last)
                if tail.torn is not None:
                    os.ftruncate(fd, tail.torn.offset)
                    size = tail.torn.offset
                    last = self._write(
                        fd, size, self._record(last, run_id, "recovered", _recovered_data(tail))
                    )
                    size = os.fstat(fd).st_size
                record = self._write(fd, size, self._record(last, run_id, kind, payload))
                os.pwrite(lock_fd, _head_bytes(record["seq"], record["hash"]), 0)
                return record
            finally:
                os.close(fd)
        finally:
            os.close(lock_fd)  # releases the flock

    def _check_head(self, lock_fd: int, last: dict[str, Any] | None) -> None:
        head = _read_head(lock_fd)
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

    @staticmethod
    def _record(
        last: dict[str, Any] | None, run_id: str, kind: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        record = {
            "seq": (last["seq"] if last is not None else 0) + 1,
            "ts": _utc_now(),
            "run_id": run_id,
            "kind": kind,
            "data": payload,
            "prev": last["hash"] if last is not None else GENESIS,
        }
        record["hash"] = record_hash(record)
        return record

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
        """Every whole record of this ledger (see :func:`records`)."""
        return records(self.path)

    def runs(self) -> list[RunSummary]:
        """One summary per run (see :func:`runs`)."""
        return runs(self.path)


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


# --------------------------------------------------------------------------- reading


def _require(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        what = "is not a file" if p.exists() else "does not exist"
        msg = f"ledger `{p}` {what} (pass `--ledger FILE`, or run something first)"
        raise LedgerError(msg)
    return p


def _read_bytes(p: Path) -> bytes:
    with _shared_lock(p):
        try:
            return p.read_bytes()
        except OSError as exc:
            msg = f"cannot read ledger `{p}`: {exc.strerror or exc}"
            raise LedgerError(msg) from None


def iter_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield every whole record in file order; a torn final line is skipped.

    A line other than the last that is not JSON raises :class:`~qpipe.errors.LedgerError`
    (nothing built on the ledger should silently skip a record). Hashes are not checked here;
    use :func:`verify` for that.
    """
    p = _require(path)
    lines = _read_bytes(p).split(b"\n")
    trailing = lines.pop()
    for i, raw in enumerate(lines, 1):
        record, problem = _parse_record(raw)
        if record is not None:
            yield record
        elif i == len(lines) and not trailing:
            return  # an unparsable final line is a torn write, not a record
        else:
            msg = f"ledger `{p}` line {i} {problem}; run `qpipe ledger verify`"
            raise LedgerError(msg)


def records(path: str | Path) -> list[dict[str, Any]]:
    """Every whole record of the ledger at ``path``, in file order."""
    return list(iter_records(path))


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What the ledger says about one run."""

    run_id: str
    started: str
    config_digest: str | None
    status: str  # "finished" | "failed" | "running"
    metrics: dict[str, float | None] = field(default_factory=dict)
    ended: str | None = None
    error: str | None = None
    records: int = 0


def runs(path: str | Path) -> list[RunSummary]:
    """One summary per run that has a ``run_started`` record, in the order runs started.

    ``status`` is ``failed`` if the run wrote ``run_failed``, ``finished`` if it wrote
    ``run_finished``, else ``running`` (still going, or killed before it could say).
    ``metrics`` holds the key metrics (sharpe, cagr, max_drawdown, total_return) of its
    ``metrics`` record.
    """
    state: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    for rec in iter_records(path):
        rid, kind, data = rec["run_id"], rec["kind"], rec["data"]
        counts[rid] = counts.get(rid, 0) + 1
        if kind == "run_started" and rid not in state:
            state[rid] = {
                "run_id": rid,
                "started": rec["ts"],
                "config_digest": data.get("config_digest"),
                "status": "running",
                "metrics": {},
            }
            continue
        s = state.get(rid)
        if s is None:
            continue
        if kind == "metrics":
            s["metrics"] = {k: data.get(k) for k in KEY_METRICS if k in data}
        elif kind == "run_finished" and s["status"] != "failed":
            s["status"], s["ended"] = "finished", rec["ts"]
        elif kind == "run_failed":
            s["status"], s["ended"] = "failed", rec["ts"]
            s["error"] = f"{data.get('error', '')}: {data.get('message', '')}".strip(": ")
    return [RunSummary(**s, records=counts[rid]) for rid, s in state.items()]


# --------------------------------------------------------------------------- verification


@dataclass(frozen=True, slots=True)
class BadArtifact:
    """An ``artifact`` record whose file is missing or no longer has its recorded digest."""

    line: int
    run_id: str
    name: str
    path: str
    problem: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The result of :func:`verify`.

    ``ok`` is True only when every line is a whole record, the chain is intact, the file agrees
    with its head, there is no torn final line and every artifact matches its digest.
    ``first_bad_line`` (1-based) and ``reason`` name the first problem in the chain.
    """

    ok: bool
    records: int
    runs: int
    first_bad_line: int | None = None
    reason: str | None = None
    torn_tail: TornTail | None = None
    bad_artifacts: tuple[BadArtifact, ...] = ()
    artifacts: int = 0


def artifact_path(ledger_path: str | Path, recorded: str) -> Path:
    """Where an artifact recorded as ``recorded`` lives.

    Absolute paths are taken as they are; a relative path is looked up beside the ledger first,
    then in the current folder (runs record paths relative to where they were started).
    """
    p = Path(recorded)
    if p.is_absolute():
        return p
    beside = Path(ledger_path).parent / p
    if beside.exists() or not p.exists():
        return beside
    return p


def _chain_problem(
    parsed: list[tuple[dict[str, Any] | None, str | None]],
) -> tuple[int, str] | None:
    """The first break in the chain as ``(line, reason)``, or None."""
    lines_of: dict[int, list[int]] = {}
    for i, (rec, _) in enumerate(parsed, 1):
        if rec is not None:
            lines_of.setdefault(rec["seq"], []).append(i)
    expected_seq, expected_prev = 1, GENESIS
    for i, (rec, problem) in enumerate(parsed, 1):
        if problem is not None:
            if rec is None and problem == "is not valid JSON":
                problem = "is not valid JSON (edited, corrupted or a blank line inserted)"
            where = f"line {i}" if rec is None else f"line {i} (seq {rec['seq']})"
            return i, f"{where} {problem}"
        assert rec is not None
        seq = rec["seq"]
        if seq != expected_seq:
            later = [n for n in lines_of.get(expected_seq, []) if n > i]
            twins = [n for n in lines_of.get(seq, []) if n != i]
            if twins:  # the same seq twice: one of them was inserted
                why = f"inserted: seq {seq} also appears at line {twins[0]}"
            elif later:
                why = (
                    f"reordered: seq {seq} where seq {expected_seq} was expected "
                    f"(it is at line {later[0]})"
                )
            elif seq > expected_seq:
                gap = f"seq {expected_seq}"
                if seq > expected_seq + 1:
                    gap = f"seqs {expected_seq}-{seq - 1}"
                why = f"deleted: {gap} missing before seq {seq}"
            else:
                why = f"inserted or reordered: seq {seq} where seq {expected_seq} was expected"
            return i, f"line {i} {why}"
        if rec["prev"] != expected_prev:
            before = f"line {i - 1}" if i > 1 else "the start"
            why = f"its prev does not match the hash of {before} (a record replaced or inserted)"
            return i, f"line {i} (seq {seq}) {why}"
        expected_seq, expected_prev = seq + 1, rec["hash"]
    return None


def _head_problem(path: Path, whole: list[dict[str, Any]], nlines: int) -> tuple[int, str] | None:
    lock = _lock_path(path)
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None  # a copied ledger without its head: the chain alone is checked
    try:
        head = _read_head(fd)
    finally:
        os.close(fd)
    if head is None:
        return None
    seq, digest = head
    last_seq = whole[-1]["seq"] if whole else 0
    if seq > last_seq:
        gap = f"seq {seq}" if seq == last_seq + 1 else f"seqs {last_seq + 1}-{seq}"
        why = f"deleted: the file ends at seq {last_seq} but its head `{lock.name}` records {seq}"
        return nlines + 1, f"line {nlines + 1} {why} ({gap} missing at the end)"
    if seq >= 1 and whole[seq - 1]["hash"] != digest:
        why = f"was replaced: its hash differs from the head `{lock.name}`"
        return seq, f"line {seq} (seq {seq}) {why}"
    return None


def verify(path: str | Path, *, check_artifacts: bool = True) -> VerifyReport:
    """Check every record's hash, form and link, the head, the tail and (optionally) artifacts.

    Detects an edited record (hash or canonical form), a deleted, inserted or reordered record
    (seq and ``prev`` links), records removed from the end (the head in ``<ledger>.lock``, when
    present), a torn final line, and artifacts whose file is missing or has another digest.
    """
    p = _require(path)
    blob = _read_bytes(p)
    lines = blob.split(b"\n")
    trailing = lines.pop()
    parsed = [_parse_record(raw) for raw in lines]
    torn: TornTail | None = None
    if trailing:
        torn = TornTail(len(lines) + 1, len(blob) - len(trailing), len(trailing))
    elif parsed and parsed[-1][0] is None:
        # an unparsable final line is a torn write (or an edit): not a record either way
        torn = TornTail(len(lines), len(blob) - len(lines[-1]) - 1, len(lines[-1]) + 1)
        parsed.pop()
    whole = [rec for rec, _ in parsed if rec is not None]
    nruns = len({r["run_id"] for r in whole if r["kind"] == "run_started"})

    problem = _chain_problem(parsed) or _head_problem(p, whole, len(parsed))
    if problem is None and torn is not None:
        if trailing:
            why = "torn final line (no trailing newline; an interrupted append)"
        else:
            why = "torn final line (not valid JSON; an interrupted append or an edit)"
        problem = (torn.line or len(lines)), f"{why}: {torn.describe()}"

    bad: list[BadArtifact] = []
    nart = 0
    if check_artifacts:
        for i, (rec, _) in enumerate(parsed, 1):
            if rec is None or rec["kind"] != "artifact":
                continue
            nart += 1
            data = rec["data"]
            recorded, digest = str(data.get("path", "")), data.get("digest")
            name = str(data.get("name", recorded))
            target = artifact_path(p, recorded)
            if not recorded or not target.is_file():
                bad.append(BadArtifact(i, rec["run_id"], name, str(target), "missing"))
                continue
            try:
                actual = file_digest(target)
            except OSError as exc:
                bad.append(BadArtifact(i, rec["run_id"], name, str(target), f"unreadable: {exc}"))
                continue
            if actual != digest:
                why = f"digest {actual[:12]} != recorded {str(digest)[:12]}"
                bad.append(BadArtifact(i, rec["run_id"], name, str(target), why))
    return VerifyReport(
        ok=problem is None and not bad,
        records=len(whole),
        runs=nruns,
        first_bad_line=problem[0] if problem else None,
        reason=problem[1] if problem else None,
        torn_tail=torn,
        bad_artifacts=tuple(bad),
        artifacts=nart,
    )


# --------------------------------------------------------------------------- commands


def verify_command(path: Path) -> int:
    """``qpipe ledger verify [FILE]``: print a one-line summary; exit 0 if intact, else 1."""
    report = verify(path)
    if report.ok:
        print(
            f"ok: {_count(report.records, 'record')}, {_count(report.runs, 'run')}, "
            f"chain intact, {_count(report.artifacts, 'artifact')} verified"
        )
        return 0
    if report.reason is not None:
        print(f"FAILED: `{path}` {report.reason}")
    else:
        print(
            f"FAILED: `{path}`: {_count(report.records, 'record')}, "
            f"{_count(report.runs, 'run')}, chain intact, but {len(report.bad_artifacts)} of "
            f"{_count(report.artifacts, 'artifact')} do not match their digest"
        )
    for a in report.bad_artifacts:
        print(f"  artifact `{a.name}` of run {a.run_id} (line {a.line}): {a.problem} at `{a.path}`")
    return 1


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _fmt_metric(name: str, value: Any) -> str:
    from qpipe.report import format_metric  # one formatting for summary, report and listings

    if isinstance(value, int | float) or value is None:
        return format_metric(name, value)
    return str(value)


def _summarize(kind: str, data: dict[str, Any]) -> str:
    """A short one-line view of a record's data for ``ledger show RUN_ID``."""
    if kind == "run_started":
        return f"config {str(data.get('config_digest', ''))[:12]} engine={data.get('engine')} " + (
            f"code {data.get('code_version')} @ {str(data.get('git_commit', ''))[:10]}"
            + (" (dirty)" if data.get("git_dirty") else "")
        )
    if kind == "dataset":
        return (
            f"{data.get('name')}: {data.get('rows')} rows, {str(data.get('digest', ''))[:12]} "
            f"from {data.get('source')}"
        )
    if kind == "stage":
        outs = ", ".join(
            f"{n}={o.get('rows')} rows"
            for n, o in (data.get("outputs") or {}).items()
            if isinstance(o, dict)
        )
        return f"{data.get('stage')}: {outs} in {_fmt_metric('seconds', data.get('seconds'))}s"
    if kind == "validation":
        verdict = "passed" if data.get("passed") else "FAILED"
        return f"{data.get('tier')} {data.get('target')}: {verdict}"
    if kind == "allocation_audit":
        n = data.get("n_violations", len(data.get("violations", [])))
        return "passed" if data.get("passed") else f"FAILED ({n} violations)"
    if kind == "metrics":
        return " ".join(f"{k}={_fmt_metric(k, v)}" for k, v in data.items())
    if kind == "artifact":
        return f"{data.get('name')}: {str(data.get('digest', ''))[:12]} {data.get('bytes')} bytes"
    text = canonical_json(data)
    return text if len(text) <= 100 else text[:97] + "..."


def show_command(path: Path, run_id: str | None = None) -> int:
    """``qpipe ledger show [RUN_ID]``: a table of runs, or of one run's records. Returns 0.

    ``run_id`` may be a unique prefix of a run id.
    """
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    if not console.is_terminal:  # piped or captured: do not squeeze run ids into 80 columns
        console = Console(highlight=False, width=max(console.width, 160))
    if run_id is None:
        table = Table(title=f"runs in {path}")
        for col in ("run id", "started", "config", "status", *KEY_METRICS):
            justify: Literal["left", "right"] = "right" if col in KEY_METRICS else "left"
            table.add_column(col, no_wrap=col in ("run id", "started"), justify=justify)
        for s in runs(path):
            table.add_row(
                s.run_id,
                s.started.replace("T", " ")[:19],
                (s.config_digest or "")[:12],
                s.status,
                *(_fmt_metric(k, s.metrics.get(k)) for k in KEY_METRICS),
            )
        console.print(table)
        return 0
    all_records = records(path)
    ids = list(dict.fromkeys(r["run_id"] for r in all_records))
    matches = [rid for rid in ids if rid == run_id]
    matches = matches or [rid for rid in ids if rid.startswith(run_id)]
    if len(matches) != 1:
        what = "no run" if not matches else f"{len(matches)} runs match"
        msg = f"{what} `{run_id}` in ledger `{path}`"
        raise LedgerError(msg)
    table = Table(title=f"run {matches[0]}")
    table.add_column("seq", justify="right")
    table.add_column("time", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("data")
    for rec in all_records:
        if rec["run_id"] == matches[0]:
            table.add_row(
                str(rec["seq"]),
                rec["ts"].replace("T", " ")[:23],
                rec["kind"],
                _summarize(rec["kind"], rec["data"]),
            )
    console.print(table)
    return 0
