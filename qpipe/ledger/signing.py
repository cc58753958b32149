"""Signed checkpoints: proof that nobody added, changed, reordered or cut a ledger record.

At the end of every run the writer appends a ``checkpoint`` record (under the ledger's lock)
whose data names the last record it covers (``seq``, ``head`` hash, ``count``, ``bytes``) and
carries an Ed25519 signature made with the user's key (:mod:`qpipe.ledger.keys`). The key
folder also keeps a signed copy of that head and the SHA-256 of the ledger's bytes up to it
(:mod:`qpipe.ledger.trust`).

:func:`scan_tail` is the cheap check every run makes when it opens the ledger: one SHA-256 pass
over the bytes up to the last checkpoint (any edit or cut there changes it), then a full parse
of the records after it, each of which must be in the journal (written by a qpipe writer).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from qpipe._canonical import canonical_json
from qpipe.errors import LedgerError
from qpipe.ledger.chain import GENESIS, parse_record
from qpipe.ledger.keys import SigningKey, verify_signature
from qpipe.ledger.trust import LedgerHead, LedgerTrust, hash_bytes

__all__ = [
    "TailScan",
    "check_before_run",
    "checkpoint_data",
    "checkpoint_message",
    "record_head",
    "scan_tail",
    "valid_checkpoint",
]

KIND = "checkpoint"


def checkpoint_message(data: dict[str, Any]) -> bytes:
    """The bytes a checkpoint's signature covers: its data without ``signature``, canonical."""
    return canonical_json({k: v for k, v in data.items() if k != "signature"}).encode("utf-8")


def valid_checkpoint(rec: dict[str, Any], public_hex: str) -> bool:
    """True when ``rec`` is a checkpoint signed by ``public_hex`` over the record before it."""
    data = rec["data"]
    return (
        rec["kind"] == KIND
        and data.get("seq") == rec["seq"] - 1
        and data.get("head") == rec["prev"]
        and isinstance(data.get("signature"), str)
        and verify_signature(public_hex, checkpoint_message(data), data["signature"])
    )


@dataclass(frozen=True, slots=True)
class TailScan:
    """The records after the last checkpoint, and how they are vouched for."""

    checkpoint_seq: int  # 0 when the ledger has no checkpoint
    records: tuple[dict[str, Any], ...]  # whole records after it, chain-checked
    unjournaled: tuple[int, ...]  # their seqs that no qpipe writer journaled (forged?)
    legacy: int  # leading records of an unsigned (pre-signing) ledger
    lost_at_end: int  # journaled seqs beyond the last record (1: an interrupted append)
    prefix: Any = None  # SHA-256 state over the bytes up to the last signed head
    prefix_end: int = 0  # ... and how many bytes it has read


def _refuse(path: Path, why: str) -> LedgerError:
    return LedgerError(f"ledger `{path}` {why}; refusing to append (run `qpipe ledger verify`)")


def _check_prefix(fd: int, size: int, path: Path, head: LedgerHead) -> Any:
    """The SHA-256 state of the bytes up to ``head`` (they must match it), to continue from."""
    h = hash_bytes(fd, 0, head.end) if size >= head.end else None
    if h is None or h.copy().hexdigest() != head.prefix_sha256:
        raise _refuse(
            path,
            f"was edited or cut at or before its last signed checkpoint (seq {head.seq}, "
            f"whose signed head the key folder keeps; if you removed or replaced this ledger "
            f"yourself, run `qpipe ledger forget --ledger {path}` first)",
        )
    return h


def _parse_from(fd: int, start: int, end: int, path: Path, prev: tuple[int, str]) -> list[dict]:
    """Whole records in bytes ``[start, end)``, each checked and linked to ``prev``."""
    blob = os.pread(fd, end - start, start) if end > start else b""
    out = []
    seq, digest = prev
    for raw in blob.split(b"\n")[:-1]:
        rec, problem = parse_record(raw)
        if problem is not None or rec is None:
            raise _refuse(path, f"has a record after seq {seq} that {problem}")
        if rec["seq"] != seq + 1 or rec["prev"] != digest:
            raise _refuse(path, f"has seq {rec['seq']} where seq {seq + 1} should follow")
        out.append(rec)
        seq, digest = rec["seq"], rec["hash"]
    return out


def scan_tail(
    fd: int, size: int, path: Path, trust: LedgerTrust, public_hex: str | None
) -> TailScan:
    """Check the ledger (open as ``fd``, ``size`` whole bytes) against the key folder.

    Raises LedgerError when bytes before the last signed checkpoint changed, or a record after
    it fails its hash or link. The caller decides what unjournaled records mean.
    """
    head = trust.read_head()
    start, prev, prefix = 0, (0, GENESIS), None
    if head is not None:
        prefix = _check_prefix(fd, size, path, head)
        start, prev = head.end, (head.seq, head.hash)
    parsed = _parse_from(fd, start, size, path, prev)
    last_seq = parsed[-1]["seq"] if parsed else prev[0]
    checkpoint_seq = head.seq if head is not None else 0
    if public_hex is not None:  # a checkpoint not yet in the head (moved ledger, failed write)
        for rec in parsed:
            if valid_checkpoint(rec, public_hex):
                checkpoint_seq = rec["seq"]
    tail = [r for r in parsed if r["seq"] > checkpoint_seq]
    journal = trust.journal()
    known = [r["hash"] in journal.get(r["seq"], ()) for r in tail]
    legacy = 0
    if checkpoint_seq == 0:  # never signed: records before the first journaled one predate it
        legacy = next((i for i, k in enumerate(known) if k), len(known))
    unjournaled = tuple(
        r["seq"] for r, k in zip(tail[legacy:], known[legacy:], strict=True) if not k
    )
    lost = len([s for s in journal if s > last_seq])
    return TailScan(checkpoint_seq, tuple(tail), unjournaled, legacy, lost, prefix, start)


def check_before_run(scan: TailScan, path: Path) -> None:
    """Refuse to start a run on a ledger holding forged records or cut at the end."""
    if scan.unjournaled:
        seqs = ", ".join(str(s) for s in scan.unjournaled[:10])
        raise _refuse(
            path,
            f"holds {len(scan.unjournaled)} record(s) after its last checkpoint that no qpipe "
            f"writer with this key folder appended (seq {seqs}): a forgery, or written elsewhere",
        )
    if scan.lost_at_end > 1:
        raise _refuse(path, f"lost {scan.lost_at_end} journaled records at its end (cut)")


def checkpoint_data(
    scan: TailScan, last: dict[str, Any] | None, size: int, key: SigningKey
) -> dict:
    """The signed ``data`` of a checkpoint covering everything up to ``last``."""
    data: dict[str, Any] = {
        "seq": last["seq"] if last else 0,
        "head": last["hash"] if last else GENESIS,
        "count": last["seq"] if last else 0,
        "bytes": size,
        "prev_checkpoint": scan.checkpoint_seq,
        "legacy": scan.legacy,
        "unvouched": list(scan.unjournaled),
        "key_id": key.key_id,
    }
    data["signature"] = key.sign(checkpoint_message(data))
    return data


def record_head(fd: int, record: dict, key: SigningKey, trust: LedgerTrust, scan: TailScan) -> None:
    """After a checkpoint line is written: keep its signed head in the key folder.

    The digest continues from the scan's (which checked the bytes up to the previous head), so
    a checkpoint reads the ledger once.
    """
    end = os.fstat(fd).st_size
    start = scan.prefix_end if scan.prefix is not None else 0
    prefix = scan.prefix.copy() if scan.prefix is not None else None
    head = LedgerHead(
        ledger=trust.ledger,
        seq=record["seq"],
        hash=record["hash"],
        end=end,
        prefix_sha256=hash_bytes(fd, start, end, prefix).hexdigest(),
        key_id=key.key_id,
        public_key=key.public_hex,
    )
    trust.write_head(replace(head, signature=key.sign(head.message())))
    trust.compact(record["seq"])
