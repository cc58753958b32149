"""Verification against the key folder: checkpoints, signatures, the unsigned tail, the head.

Given an intact chain, :func:`check_signing` answers: is every record vouched for by a valid
checkpoint signed with the user's key; which records come after the last checkpoint (a run in
progress or killed, or a forgery) and which of those a qpipe writer journaled; and does the
ledger still hold the last signed head the key folder kept (records cut from the end or
replaced). It never writes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from qpipe.errors import LedgerError
from qpipe.ledger.keys import load_key, verify_signature
from qpipe.ledger.signing import valid_checkpoint
from qpipe.ledger.trust import LedgerHead, LedgerTrust, prefix_digest

__all__ = [
    "SigningReport",
    "anchor_problem",
    "check_signing",
    "forget_head",
    "key_folder_view",
    "read_anchor",
    "signed_head",
]

SigningStatus = Literal["signed", "unsigned ledger", "no key"]


@dataclass(frozen=True, slots=True)
class SigningReport:
    """What the signatures say about a ledger (see :func:`check_signing`).

    ``status``: ``signed`` (checkpoints checked with the user's key), ``unsigned ledger`` (no
    checkpoint and no head in the key folder: written before signing, chain checked only) or
    ``no key`` (checkpoints present, but no key here to check them). ``tail``: seqs after the
    last valid checkpoint; ``tail_journaled``: those a qpipe writer here appended.
    ``problem``: the first forgery, cut or bad signature found, or None.
    """

    status: SigningStatus
    checkpoints: int = 0
    last_checkpoint: int = 0
    tail: tuple[int, ...] = ()
    tail_journaled: tuple[int, ...] = ()
    legacy: int = 0
    key_id: str | None = None
    problem: str | None = None

    @property
    def tail_unknown(self) -> tuple[int, ...]:
        """Tail records no qpipe writer with this key folder journaled."""
        known = set(self.tail_journaled)
        return tuple(s for s in self.tail if s not in known)


def _seqs(seqs: list[int] | tuple[int, ...]) -> str:
    shown = ", ".join(str(s) for s in seqs[:8])
    return shown + (f" and {len(seqs) - 8} more" if len(seqs) > 8 else "")


def _checkpoint_problem(recs: list[dict[str, Any]], public_hex: str) -> tuple[int, str | None]:
    """Seq of the last valid checkpoint, and the first bad checkpoint or forgery it reports."""
    last = 0
    for rec in recs:
        if rec["kind"] != "checkpoint":
            continue
        if rec["data"].get("head") != rec["prev"] or rec["data"].get("seq") != rec["seq"] - 1:
            why = "does not sign the record before it (records before it were changed)"
            return last, f"checkpoint at seq {rec['seq']} {why}"
        if not valid_checkpoint(rec, public_hex):
            why = "has a signature that does not verify with this key (forged or another key)"
            return last, f"checkpoint at seq {rec['seq']} {why}"
        unvouched = rec["data"].get("unvouched") or []
        if unvouched:
            why = "were appended by no qpipe writer with this key (forged), its checkpoint says"
            return last, f"records at seq {_seqs(unvouched)} {why} (seq {rec['seq']})"
        last = rec["seq"]
    return last, None


def _head_problem(path: Path, recs: list[dict[str, Any]], head: LedgerHead) -> str | None:
    """Does the ledger still hold the checkpoint the key folder recorded as its last?"""
    if not verify_signature(head.public_key, head.message(), head.signature):
        return f"the signed head for this ledger is invalid (not signed by its key {head.key_id})"
    if len(recs) < head.seq:
        return (
            f"deleted: the file ends at seq {len(recs)} but its last signed checkpoint "
            f"(kept in the key folder) is seq {head.seq}: records were cut from the end"
        )
    if recs[head.seq - 1]["hash"] != head.hash:
        return f"seq {head.seq} was replaced: it is not the checkpoint the key folder signed"
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        same = prefix_digest(fd, head.end) == head.prefix_sha256
    finally:
        os.close(fd)
    return None if same else f"bytes before the signed checkpoint at seq {head.seq} changed"


KeyFolderView = tuple[LedgerHead | None, dict[int, set[str]]]


def key_folder_view(path: Path, folder: Path | None) -> KeyFolderView:
    """The key folder's head and journal for the ledger at ``path`` (read them under its lock)."""
    trust = LedgerTrust(path, folder)
    return trust.read_head(), trust.journal()


def check_signing(
    path: Path, recs: list[dict[str, Any]], folder: Path | None, view: KeyFolderView
) -> SigningReport:
    """Check ``recs`` (the intact chain of the ledger at ``path``) against the key folder."""
    trust = LedgerTrust(path, folder)
    head, journal = view
    has_checkpoints = any(r["kind"] == "checkpoint" for r in recs)
    key = load_key(trust.folder, create=False)
    if key is None:
        if has_checkpoints or head:
            return SigningReport("no key", sum(r["kind"] == "checkpoint" for r in recs))
        return SigningReport("unsigned ledger", legacy=len(recs))
    last, problem = _checkpoint_problem(recs, key.public_hex)
    if problem is None and head is not None:
        problem = _head_problem(path, recs, head)
    lost = [s for s in journal if s > (recs[-1]["seq"] if recs else 0)]
    if problem is None and len(lost) > 1:  # one is an append cut short by a kill
        problem = f"deleted: {len(lost)} records qpipe journaled are missing from the end (cut)"
    tail = [r for r in recs if r["seq"] > last]
    journaled = tuple(r["seq"] for r in tail if r["hash"] in journal.get(r["seq"], ()))
    legacy = 0
    if last == 0 and head is None:  # never signed: leading records not journaled predate signing
        legacy = next((i for i, r in enumerate(tail) if r["seq"] in journaled), len(tail))
        tail = tail[legacy:]
    status: SigningStatus = "signed" if (last or head is not None) else "unsigned ledger"
    return SigningReport(
        status=status,
        checkpoints=sum(r["kind"] == "checkpoint" for r in recs),
        last_checkpoint=last,
        tail=tuple(r["seq"] for r in tail),
        tail_journaled=journaled,
        legacy=legacy,
        key_id=key.key_id,
        problem=problem,
    )


def signed_head(path: str | Path, folder: Path | None = None) -> LedgerHead:
    """The last signed head of the ledger at ``path``, as the key folder keeps it (to publish)."""
    head = LedgerTrust(Path(path), folder).read_head()
    if head is None:
        msg = f"ledger `{path}` has no signed checkpoint in the key folder yet (run something)"
        raise LedgerError(msg)
    return head


def read_anchor(path: str | Path) -> LedgerHead:
    """An anchor exported by ``qpipe ledger anchor --output FILE``."""
    try:
        return LedgerHead(**json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        msg = f"anchor `{path}` is not a readable ledger anchor (from `qpipe ledger anchor`)"
        raise LedgerError(msg) from None


def anchor_problem(path: Path, recs: list[dict[str, Any]], anchor: LedgerHead) -> str | None:
    """Does the ledger still hold a published anchor (same checkpoint, same bytes before it)?"""
    why = _head_problem(path, recs, anchor)
    return f"does not match the anchor: {why}" if why else None


def forget_head(path: str | Path, folder: Path | None = None) -> LedgerHead | None:
    """Forget the key folder's head and journal of the ledger at ``path`` (returns the head).

    For a ledger its owner deleted or replaced on purpose: without this, runs refuse to append
    to a ledger that no longer holds its last signed checkpoint.
    """
    return LedgerTrust(Path(path), folder).forget()
