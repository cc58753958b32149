"""The Tier 2 phase of a run: reuse a certificate or audit, and say what to record.

The run graph calls :func:`tier2` with the run's frames, its ledger records and any certificate
the store's index offers; it writes :meth:`Tier2Outcome.record_data` as the ``allocation_audit``
record, emits :attr:`Tier2Outcome.events`, and after a passing full audit stores
:meth:`Tier2Outcome.index_entry` (built from the record as written) in the store's index with
:func:`write_index`. With ``validation.skip_validated = false`` nothing is reused: no
certificate, no earlier proof of a step.

Steps proven causal by an earlier full audit in this ledger (:func:`proven_steps`) are not re-run
by the point-in-time check; their proof is the earlier record, named by digest in
``pit_stages``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from qpipe._fs import write_bytes_atomic
from qpipe.config import ThreadSafeConfig
from qpipe.stages.base import Pipeline
from qpipe.validation.audit import AuditReport, audit_allocation, price_keys
from qpipe.validation.certificate import (
    Certificate,
    CertificateKey,
    audit_settings,
    certificate_key,
    choose_certificate,
    proven_steps,
    strategy_digest,
)
from qpipe.validation.notes import allocation_notes, price_notes
from qpipe.validation.pit import step_digest

__all__ = ["Tier2Outcome", "read_index", "tier2", "write_index"]


@dataclass(frozen=True)
class Tier2Outcome:
    """What the Tier 2 phase did: the report, the warnings, and the certificate involved.

    ``reused`` is the certificate trusted instead of auditing (the report is then ``skipped``);
    ``key`` is this run's certificate key; ``events`` are ``(kind, data)`` for ``on_event``
    (a rejected certificate is a ``warning`` saying why the full audit ran).
    """

    report: AuditReport
    notes: list[str]
    key: CertificateKey
    reused: Certificate | None = None
    certified: Mapping[str, Any] | None = None  # the certifying record's data, when reused
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def record_data(self) -> dict[str, Any]:
        """The ``allocation_audit`` record's data."""
        data = {**self.report.to_json(), "warnings": list(self.notes)}
        if self.reused is not None:
            return {**data, "skipped": True, "certificate": self.reused.to_json()}
        return {**data, "certificate": self.key.to_json()} if self.report.passed else data

    def index_entry(
        self, written: Mapping[str, Any], records: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any] | None:
        """The store-index entry for a passing full audit, from its record as written; ``None``
        when nothing new was certified. ``records`` are the ledger's records before it."""
        if self.reused is not None or not self.report.passed:
            return None
        first = records[0] if records else written
        cert = Certificate(
            self.key.digest, str(first["hash"]), int(written["seq"]), written["hash"]
        )
        return cert.to_json()


def _key(
    cfg: ThreadSafeConfig,
    strategy: Pipeline | None,
    schemas: Mapping[str, pl.Schema],
    prices_digest: str,
    weights_digest: str,
) -> CertificateKey:
    steps = None
    if strategy is not None:
        digests = [step_digest(s, [schemas[n] for n in s.inputs]) for s in strategy.steps]
        steps = strategy_digest(digests)
    return certificate_key(prices_digest, weights_digest, audit_settings(cfg), strategy=steps)


def _skipped(cert: Certificate, certified: Mapping[str, Any], seconds: float) -> AuditReport:
    """The report of an audit skipped for a certificate: the certified result, this run's time."""
    return AuditReport(
        passed=True,
        checks=tuple(certified.get("checks", ())),
        violations=(),
        seconds=seconds,
        certificate_seq=cert.seq,
    )


def tier2(
    weights: pl.DataFrame,
    prices: pl.DataFrame,
    cfg: ThreadSafeConfig,
    *,
    strategy: Pipeline | None,
    intermediates: Mapping[str, pl.DataFrame],
    records: Sequence[Mapping[str, Any]],
    prices_digest: str,
    weights_digest: str,
    index: Path | None = None,
) -> Tier2Outcome:
    """Reuse a valid certificate for these inputs, or run the full audit (never raises on a
    violation: the caller records first, then calls ``report.raise_for_violations()``).

    ``index`` is the store's certificate index folder (certificates there may come from other
    ledgers sharing the store; they are checked against ``records`` like any other).
    """
    start = time.perf_counter()
    schemas = {"prices": prices.schema, **{n: f.schema for n, f in intermediates.items()}}
    key = _key(cfg, strategy, schemas, prices_digest, weights_digest)
    reuse = cfg.validation.skip_validated
    events: list[tuple[str, dict[str, Any]]] = []
    if reuse:
        indexed = read_index(index, key.digest) if index is not None else None
        cert, why = choose_certificate(records, key.digest, indexed)
        if cert is not None:
            certified = records[cert.seq - 1]["data"]
            report = _skipped(cert, certified, time.perf_counter() - start)
            events.append(("audit_skipped", {"certificate_seq": cert.seq, "key": key.digest}))
            notes = list(certified.get("warnings", []))
            return Tier2Outcome(report, notes, key, cert, certified, events)
        if why is not None:
            message = f"validation certificate ignored, full audit runs: {why}"
            events.append(("warning", {"message": message}))
    facts = price_keys(weights, prices)  # once, for the audit and the price-move warning
    report = audit_allocation(
        weights,
        prices,
        cfg,
        strategy=strategy,
        raise_on_violation=False,
        intermediates=intermediates,
        proven=proven_steps(records) if reuse else frozenset(),
        facts=facts,
    )
    notes = allocation_notes(weights, cfg) if report.passed else []
    notes += price_notes(prices, cfg, ordered=facts.ordered)
    return Tier2Outcome(report, notes, key, events=events)


def _index_file(folder: Path, key: str) -> Path:
    return folder / f"certificate-{key}.json"


def read_index(folder: Path, key: str) -> dict[str, Any] | None:
    """The certificate the store's index holds for ``key`` (``None`` if none or unreadable:
    an unreadable entry is as good as none, the ledger is searched instead)."""
    try:
        data = json.loads(_index_file(folder, key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_index(folder: Path, entry: Mapping[str, Any]) -> None:
    """Store a certificate in the index (atomically; the last run to certify a key wins)."""
    text = json.dumps(dict(entry), sort_keys=True)
    write_bytes_atomic(_index_file(folder, str(entry["key"])), text.encode("utf-8"))
