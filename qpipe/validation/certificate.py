"""Validation certificates: a passing Tier 2 audit, keyed by what it depends on, so that a re-run
with the same inputs skips it.

The **key** is the digest of three digests (:func:`certificate_key`):

``prices``    the stored prices dataset the weights were audited against;
``weights``   the stored weights dataset, and for a strategy also the digest of its steps (code,
              params, input schemas: :func:`strategy_digest`) -- the same weights from other code
              are not the same claim, since the point-in-time check is about the code;
``settings``  everything else the audit reads (:func:`audit_settings`): the config limits, the
              point-in-time settings and the digest of the audit's own code.

A passing full audit is written to the ledger as an ``allocation_audit`` record whose
``certificate`` holds the key and its parts. A later run that computes the same key finds that
record (:func:`find_certificate`) and writes an ``allocation_audit`` record with ``skipped``
true and a ``certificate`` that points at it: the ledger's identity (the hash of its first
record), the record's ``seq`` and its ``hash``. :func:`check_certificate` says why a certificate
cannot be trusted -- from another ledger, its record missing, changed, not a passing full audit,
or for another key -- and ``ledger verify`` runs it on every skipped audit
(:func:`certificate_problems`). Everything here is pure: records in, values out.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qpipe._canonical import canonical_digest

__all__ = [
    "AUDIT_KIND",
    "Certificate",
    "CertificateKey",
    "audit_settings",
    "certificate_key",
    "certificate_problems",
    "check_certificate",
    "choose_certificate",
    "find_certificate",
    "ledger_id",
    "proven_steps",
    "strategy_digest",
]

AUDIT_KIND = "allocation_audit"
VERSION = 1  # bump when the meaning of a certificate changes


def _digest(obj: Any) -> str:
    return canonical_digest(obj)


@dataclass(frozen=True)
class CertificateKey:
    """What a Tier 2 result depends on; ``digest`` is the key itself."""

    prices: str
    weights: str
    settings: str

    @property
    def digest(self) -> str:
        return _digest({"v": VERSION, **self.to_parts()})

    def to_parts(self) -> dict[str, str]:
        return {"prices": self.prices, "weights": self.weights, "settings": self.settings}

    def to_json(self) -> dict[str, str]:
        """The ``certificate`` of a full audit's record: the key and its parts."""
        return {"key": self.digest, **self.to_parts()}


@dataclass(frozen=True)
class Certificate:
    """A pointer to a passing full audit: which ledger, which record, for which key."""

    key: str
    ledger: str  # the hash of the ledger's first record
    seq: int
    record_hash: str

    def to_json(self) -> dict[str, Any]:
        """The ``certificate`` of a skipped audit's record."""
        return {"key": self.key, "ledger": self.ledger, "seq": self.seq, "hash": self.record_hash}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Certificate:
        return cls(str(data["key"]), str(data["ledger"]), int(data["seq"]), str(data["hash"]))


def _audit_code() -> str:
    """Digest of the audit's own code: a changed check invalidates earlier certificates."""
    from qpipe.validation import _keys, _pit_plan, audit, notes, pit  # local: no cycle

    return _digest([inspect.getsource(m) for m in (audit, pit, _pit_plan, _keys, notes)])


def audit_settings(cfg: Any, *, pit_window: int = 3) -> dict[str, Any]:
    """Everything besides the data that decides a Tier 2 result (the config keys it reads)."""
    a, v = cfg.allocation, cfg.validation
    return {
        "max_weight": a.max_weight,
        "gross_leverage": a.gross_leverage,
        "long_only": a.long_only,
        "rebalance": a.rebalance,
        "every_k": a.every_k,
        "target_vol": a.target_vol,
        "vol_window": a.vol_window,
        "pit_cuts": v.pit_cuts,
        "pit_window": pit_window,
        "max_daily_return": v.max_daily_return,
        "code": _audit_code(),
    }


def strategy_digest(step_digests: Sequence[str]) -> str:
    """The strategy's identity for a certificate: its step digests in order."""
    return _digest(list(step_digests))


def certificate_key(
    prices_digest: str,
    weights_digest: str,
    settings: Mapping[str, Any],
    *,
    strategy: str | None = None,
) -> CertificateKey:
    """The key of a Tier 2 result.

    Parameters
    ----------
    prices_digest, weights_digest
        Digests of the stored prices and weights datasets.
    settings
        :func:`audit_settings` of the run's config.
    strategy
        :func:`strategy_digest` when a strategy made the weights; ``None`` for external weights.
    """
    weights = weights_digest if strategy is None else _digest([weights_digest, strategy])
    return CertificateKey(prices_digest, weights, _digest(dict(settings)))


def ledger_id(records: Sequence[Mapping[str, Any]]) -> str | None:
    """A ledger's identity: the hash of its first record (``None`` for an empty ledger)."""
    return str(records[0]["hash"]) if records else None


def _is_full_pass(record: Mapping[str, Any]) -> bool:
    data = record.get("data") or {}
    return (
        record.get("kind") == AUDIT_KIND
        and data.get("passed") is True
        and not data.get("skipped")
        and isinstance(data.get("certificate"), Mapping)
    )


def find_certificate(records: Sequence[Mapping[str, Any]], key: str) -> Certificate | None:
    """The latest passing full audit in ``records`` for ``key``, as a certificate."""
    me = ledger_id(records)
    for record in reversed(records):
        if _is_full_pass(record) and record["data"]["certificate"].get("key") == key:
            return Certificate(key, str(me), int(record["seq"]), str(record["hash"]))
    return None


def check_certificate(
    cert: Certificate, records: Sequence[Mapping[str, Any]], key: str | None = None
) -> str | None:
    """Why ``cert`` cannot be trusted in this ledger, or ``None`` if it can.

    ``records`` are the ledger's records in order (seq 1 first); ``key``, if given, is the key
    the caller needs.
    """
    if key is not None and cert.key != key:
        return f"certificate is for key {cert.key[:12]}, this run needs {key[:12]}"
    me = ledger_id(records)
    if cert.ledger != me:
        return (
            f"certificate is from another ledger ({cert.ledger[:12]}, this one is {str(me)[:12]})"
        )
    if not 1 <= cert.seq <= len(records) or records[cert.seq - 1].get("seq") != cert.seq:
        return f"certificate points at record {cert.seq}, which this ledger does not have"
    record = records[cert.seq - 1]
    if record.get("hash") != cert.record_hash:
        return f"certificate's record {cert.seq} has changed (hash {str(record.get('hash'))[:12]})"
    if not _is_full_pass(record):
        return f"certificate's record {cert.seq} is not a passing full allocation audit"
    if record["data"]["certificate"].get("key") != cert.key:
        return f"certificate's record {cert.seq} certifies another key"
    return None


def choose_certificate(
    records: Sequence[Mapping[str, Any]], key: str, indexed: Mapping[str, Any] | None = None
) -> tuple[Certificate | None, str | None]:
    """The certificate a run may trust for ``key``, or why none.

    ``indexed`` is a certificate found outside the ledger (the store's index, which several
    ledgers may share). It is tried first; if it does not hold, the ledger's own records are
    searched. Returns ``(certificate, None)``, or ``(None, reason)`` when an offered certificate
    was rejected and the ledger has none (``reason`` is ``None`` when nothing was offered).
    """
    problem = None
    if indexed is not None:
        try:
            cert = Certificate.from_json(indexed)
        except (KeyError, TypeError, ValueError):
            problem = "the stored certificate is unreadable"
        else:
            problem = check_certificate(cert, records, key)
            if problem is None:
                return cert, None
    own = find_certificate(records, key)
    return (own, None) if own is not None else (None, problem)


def certificate_problems(records: Sequence[Mapping[str, Any]]) -> list[tuple[int, str]]:
    """``(seq, problem)`` for every skipped audit whose certificate does not hold (for verify)."""
    out: list[tuple[int, str]] = []
    for record in records:
        data = record.get("data") or {}
        if record.get("kind") != AUDIT_KIND or not data.get("skipped"):
            continue
        raw = data.get("certificate")
        try:
            cert = Certificate.from_json(raw)  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError):
            out.append((int(record["seq"]), "skipped audit without a readable certificate"))
            continue
        problem = check_certificate(cert, records)
        if problem is None and cert.seq >= int(record["seq"]):
            problem = f"certificate points forward, at record {cert.seq}"
        if problem is not None:
            out.append((int(record["seq"]), problem))
    return out


def proven_steps(records: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """Digests of strategy steps a full audit in ``records`` proved causal (no look-ahead)."""
    proven: set[str] = set()
    for record in records:
        data = record.get("data") or {}
        if record.get("kind") != AUDIT_KIND or data.get("skipped"):
            continue
        for step in data.get("pit_stages") or []:
            if step.get("violations") == 0 and not step.get("reused") and step.get("digest"):
                proven.add(str(step["digest"]))
    return frozenset(proven)
