"""The record form: seven fields, canonical JSON, each hash covering the record and its ``prev``.

A record is ``{seq, ts, run_id, kind, data, prev, hash}``: ``seq`` counts from 1 with no gaps,
``prev`` is the previous record's ``hash`` (64 zeros for the first) and ``hash`` is the SHA-256
hex of the canonical JSON of the record without ``hash``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from qpipe._canonical import canonical_digest, canonical_json

__all__ = ["FIELDS", "GENESIS", "make_record", "parse_record", "record_hash", "utc_now"]

GENESIS = "0" * 64
FIELDS = frozenset({"seq", "ts", "run_id", "kind", "data", "prev", "hash"})


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of ``record`` without its ``hash`` field."""
    return canonical_digest({k: v for k, v in record.items() if k != "hash"})


def utc_now() -> str:
    """The current UTC time as ``2026-11-26T07:35:12.123456Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_record(
    last: Mapping[str, Any] | None, run_id: str, kind: str, payload: dict[str, Any]
) -> dict[str, Any]:
    """The record that follows ``last`` (None: the first record), hashed."""
    record = {
        "seq": (last["seq"] if last is not None else 0) + 1,
        "ts": utc_now(),
        "run_id": run_id,
        "kind": kind,
        "data": payload,
        "prev": last["hash"] if last is not None else GENESIS,
    }
    record["hash"] = record_hash(record)
    return record


def _well_typed(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and set(obj) == FIELDS
        and type(obj["seq"]) is int
        and isinstance(obj["hash"], str)
        and isinstance(obj["prev"], str)
        and isinstance(obj["run_id"], str)
        and isinstance(obj["kind"], str)
        and isinstance(obj["data"], dict)
    )


def parse_record(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """Parse one line (without its newline). Returns ``(record, None)`` or ``(maybe, problem)``.

    ``problem`` is None for a whole, self-consistent record; otherwise it says what is wrong, and
    the record is returned too when the line was at least a JSON object with the right fields.
    """
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, "is not valid JSON"
    if not isinstance(obj, dict) or set(obj) != FIELDS:
        return None, "is not a ledger record (wrong fields)"
    if not _well_typed(obj):
        return None, "is not a ledger record (wrong field types)"
    try:
        if record_hash(obj) != obj["hash"]:
            return obj, "was edited: its hash does not match its content"
        if canonical_json(obj).encode("utf-8") != raw:
            return obj, "was edited: it is not in canonical form"
    except ValueError:  # non-finite numbers cannot be canonical
        return obj, "was edited: it holds non-finite numbers"
    return obj, None
