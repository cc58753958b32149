"""Verification: every record's hash, form and link, the head, a torn tail, and the artifacts.

:func:`verify` returns a :class:`VerifyReport`; it never prints (the CLI renders reports).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qpipe._fs import file_digest
from qpipe.ledger.chain import GENESIS, parse_record
from qpipe.ledger.lock import lock_path, read_head_file
from qpipe.ledger.reader import read_ledger_bytes, require_ledger
from qpipe.ledger.trust import LedgerHead
from qpipe.ledger.verify_signed import (
    SigningReport,
    anchor_problem,
    check_signing,
    key_folder_view,
)
from qpipe.ledger.writer import TornTail
from qpipe.validation.certificate import certificate_problems

__all__ = ["BadArtifact", "VerifyReport", "artifact_path", "verify"]

_Parsed = list[tuple[dict[str, Any] | None, str | None]]


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
    with its head, there is no torn final line, every artifact matches its digest, every
    checkpoint verifies with the user's key, the ledger still holds the last signed head kept in
    the key folder, and no record follows the last checkpoint (unless ``allow_open_runs``; see
    :class:`~qpipe.ledger.verify_signed.SigningReport`). ``first_bad_line`` (1-based) and
    ``reason`` name the first problem.
    """

    ok: bool
    records: int
    runs: int
    first_bad_line: int | None = None
    reason: str | None = None
    torn_tail: TornTail | None = None
    bad_artifacts: tuple[BadArtifact, ...] = ()
    artifacts: int = 0
    bad_certificates: tuple[tuple[int, str], ...] = ()  # (seq of a skipped audit, problem)
    signing: SigningReport | None = None  # None when the chain itself is broken


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


def _seq_problem(i: int, seq: int, expected_seq: int, lines_of: dict[int, list[int]]) -> str:
    """Why line ``i`` holding ``seq`` breaks the sequence where ``expected_seq`` was due."""
    later = [n for n in lines_of.get(expected_seq, []) if n > i]
    twins = [n for n in lines_of.get(seq, []) if n != i]
    if twins:  # the same seq twice: one of them was inserted
        return f"inserted: seq {seq} also appears at line {twins[0]}"
    if later:
        return (
            f"reordered: seq {seq} where seq {expected_seq} was expected (it is at line {later[0]})"
        )
    if seq > expected_seq:
        gap = f"seq {expected_seq}"
        if seq > expected_seq + 1:
            gap = f"seqs {expected_seq}-{seq - 1}"
        return f"deleted: {gap} missing before seq {seq}"
    return f"inserted or reordered: seq {seq} where seq {expected_seq} was expected"


def chain_problem(parsed: _Parsed) -> tuple[int, str] | None:
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
            return i, f"line {i} {_seq_problem(i, seq, expected_seq, lines_of)}"
        if rec["prev"] != expected_prev:
            before = f"line {i - 1}" if i > 1 else "the start"
            why = f"its prev does not match the hash of {before} (a record replaced or inserted)"
            return i, f"line {i} (seq {seq}) {why}"
        expected_seq, expected_prev = seq + 1, rec["hash"]
    return None


def _head_problem(path: Path, whole: list[dict[str, Any]], nlines: int) -> tuple[int, str] | None:
    head = read_head_file(path)
    if head is None:
        return None
    lock = lock_path(path)
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


def parse_lines(blob: bytes) -> tuple[_Parsed, TornTail | None, bool]:
    """Every line parsed, a torn final line split off, and whether it lacked its newline."""
    lines = blob.split(b"\n")
    trailing = lines.pop()
    parsed = [parse_record(raw) for raw in lines]
    torn: TornTail | None = None
    if trailing:
        torn = TornTail(len(lines) + 1, len(blob) - len(trailing), len(trailing))
    elif parsed and parsed[-1][0] is None:
        # an unparsable final line is a torn write (or an edit): not a record either way
        torn = TornTail(len(lines), len(blob) - len(lines[-1]) - 1, len(lines[-1]) + 1)
        parsed.pop()
    return parsed, torn, bool(trailing)


def _torn_problem(torn: TornTail, no_newline: bool) -> tuple[int, str]:
    if no_newline:
        why = "torn final line (no trailing newline; an interrupted append)"
    else:
        why = "torn final line (not valid JSON; an interrupted append or an edit)"
    return (torn.line or 0), f"{why}: {torn.describe()}"


def _artifact_problem(ledger: Path, data: dict[str, Any]) -> tuple[str, str] | None:
    """``(path, problem)`` when an artifact's file is missing or changed, else None."""
    recorded, digest = str(data.get("path", "")), data.get("digest")
    target = artifact_path(ledger, recorded)
    if not recorded or not target.is_file():
        return str(target), "missing"
    try:
        actual = file_digest(target)
    except OSError as exc:
        return str(target), f"unreadable: {exc}"
    if actual != digest:
        return str(target), f"digest {actual[:12]} != recorded {str(digest)[:12]}"
    return None


def check_artifacts(ledger: Path, parsed: _Parsed) -> tuple[list[BadArtifact], int]:
    """Re-hash every file an ``artifact`` or ``sweep_chunk`` record names (a sweep's chunk of
    trial rows): the bad ones and how many were checked."""
    bad: list[BadArtifact] = []
    n = 0
    for i, (rec, _) in enumerate(parsed, 1):
        if rec is None or rec["kind"] not in ("artifact", "sweep_chunk"):
            continue
        n += 1
        found = _artifact_problem(ledger, rec["data"])
        if found is not None:
            if rec["kind"] == "sweep_chunk":
                name = f"sweep chunk {rec['data'].get('chunk')}"
            else:
                name = str(rec["data"].get("name", rec["data"].get("path", "")))
            bad.append(BadArtifact(i, rec["run_id"], name, found[0], found[1]))
    return bad, n


def _tail_problem(signing: SigningReport, allow_open_runs: bool) -> str | None:
    if not signing.tail:
        return None
    after = f"after the last checkpoint (seq {signing.last_checkpoint})"
    if signing.last_checkpoint == 0:
        after = "and no checkpoint signs them yet"
    unknown = signing.tail_unknown if signing.key_id else ()
    if allow_open_runs and not unknown:
        return None
    if allow_open_runs:
        return (
            f"{len(unknown)} record(s) {after} were appended by no qpipe writer with this key "
            f"folder (seq {', '.join(map(str, unknown[:8]))}): a forgery, or written elsewhere"
        )
    return (
        f"unsigned tail (a run in progress or a forgery): {len(signing.tail)} record(s) {after}, "
        f"seq {signing.tail[0]}-{signing.tail[-1]} ({len(signing.tail_journaled)} journaled by "
        f"qpipe here); pass --allow-open-runs to accept runs still in progress"
    )


def verify(
    path: str | Path,
    *,
    check_artifacts: bool = True,
    allow_open_runs: bool = False,
    key_folder: str | Path | None = None,
    anchor: LedgerHead | None = None,
) -> VerifyReport:
    """Check every record's hash, form and link, the head, the tail, signatures and artifacts.

    Detects an edited record (hash or canonical form), a deleted, inserted or reordered record
    (seq and ``prev`` links), records removed from the end (the head in ``<ledger>.lock``, when
    present, and the signed head in the key folder), a torn final line, a forged checkpoint,
    records no checkpoint signs (an unsigned tail: refused unless ``allow_open_runs``, and
    even then when no qpipe writer here journaled them), artifacts whose file is missing or
    has another digest, and validation certificates that do not point at a passing audit of
    this ledger. ``key_folder`` defaults to :func:`~qpipe.ledger.keys.key_dir`.
    ``anchor`` (from :func:`~qpipe.ledger.verify_signed.read_anchor`) is a head published
    elsewhere: the ledger must still hold it, which works without the key folder too.
    """
    p = require_ledger(path)
    folder = Path(key_folder) if key_folder else None
    blob, view = read_ledger_bytes(p, lambda: key_folder_view(p, folder))
    parsed, torn, no_newline = parse_lines(blob)
    whole = [rec for rec, _ in parsed if rec is not None]
    nruns = len({r["run_id"] for r in whole if r["kind"] == "run_started"})
    problem = chain_problem(parsed) or _head_problem(p, whole, len(parsed))
    signing = None
    if problem is None:
        signing = check_signing(p, whole, folder, view)
    if problem is None and torn is not None:
        problem = _torn_problem(torn, no_newline)
    if problem is None and signing is not None:
        why = signing.problem or _tail_problem(signing, allow_open_runs)
        if why is None and anchor is not None:
            why = anchor_problem(p, whole, anchor)
        problem = (len(parsed), why) if why else None
    bad, nart = _check_all(p, parsed, check_artifacts)
    # every skipped Tier 2 audit must point at a real, passing full audit of this ledger
    certs = tuple(certificate_problems(whole))
    return VerifyReport(
        ok=problem is None and not bad and not certs,
        records=len(whole),
        runs=nruns,
        first_bad_line=problem[0] if problem else None,
        reason=problem[1] if problem else None,
        torn_tail=torn,
        bad_artifacts=tuple(bad),
        artifacts=nart,
        bad_certificates=certs,
        signing=signing,
    )


def _check_all(p: Path, parsed: _Parsed, enabled: bool) -> tuple[list[BadArtifact], int]:
    return check_artifacts(p, parsed) if enabled else ([], 0)
