"""Validation certificates end to end through ``qpipe.run``: a re-run skips the audit and points
at the certificate; another ledger's certificate, a missing record, a changed setting or
``skip_validated = false`` run the full audit (and say why when a certificate was offered)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from qpipe.api import run as qrun
from qpipe.config import ThreadSafeConfig
from qpipe.ledger import records, verify

CFG = ThreadSafeConfig.default().replace(
    data={"symbols": 20, "start": "2020-01-01", "end": "2021-06-30"},
    strategy={"lookback": 60, "skip": 5},
    allocation={"top_n": 5, "max_weight": 0.2},
    run={"report": False},
)


def _run(tmp: Path, ledger: str, store: Path, cfg: ThreadSafeConfig = CFG):
    events: list[tuple[str, dict]] = []
    cfg = cfg.replace(store={"path": str(store)})
    result = qrun(
        cfg,
        out=tmp / "runs",
        ledger=tmp / ledger,
        on_event=lambda kind, data: events.append((kind, data)),
    )
    audits = [r for r in records(tmp / ledger) if r["kind"] == "allocation_audit"]
    return result, audits[-1], events


def _warnings(events) -> list[str]:
    return [d["message"] for k, d in events if k == "warning"]


@pytest.fixture
def first(tmp_path):
    store = tmp_path / "store"
    result, audit, events = _run(tmp_path, "a.jsonl", store)
    return tmp_path, store, result, audit, events


def test_a_rerun_skips_the_audit_and_points_at_the_certificate(first):
    tmp, store, result, audit, _ = first
    assert result.audit is not None and not result.audit.skipped
    assert audit["data"]["passed"] and "point_in_time" in audit["data"]["checks"]
    key = audit["data"]["certificate"]["key"]
    assert (store / "index" / f"certificate-{key}.json").exists()

    again, skip, events = _run(tmp, "a.jsonl", store)
    assert again.audit is not None and again.audit.skipped
    assert again.audit.certificate_seq == audit["seq"]
    assert skip["data"]["skipped"] is True
    assert skip["data"]["certificate"]["seq"] == audit["seq"]
    assert skip["data"]["certificate"]["hash"] == audit["hash"]
    assert ("audit_skipped", {"certificate_seq": audit["seq"], "key": key}) in events
    assert again.metrics == result.metrics
    assert verify(tmp / "a.jsonl").ok


def test_another_ledgers_certificate_is_ignored_and_the_run_says_why(first):
    tmp, store, _, _, _ = first
    result, audit, events = _run(tmp, "b.jsonl", store)  # same store, a new ledger
    assert not result.audit.skipped and "point_in_time" in audit["data"]["checks"]
    (why,) = [w for w in _warnings(events) if "certificate" in w]
    assert why.startswith("validation certificate ignored, full audit runs: ")
    assert "another ledger" in why


def test_a_certificate_whose_record_is_missing_or_replaced_is_ignored(first):
    tmp, store, _, audit, _ = first
    wider = CFG.replace(allocation={"max_weight": 0.25})
    _, later, _ = _run(tmp, "a.jsonl", store, wider)  # a second certificate, further on
    lines = (tmp / "a.jsonl").read_text().splitlines(keepends=True)
    (tmp / "cut.jsonl").write_text(lines[0])  # the ledger cut back to its first record
    assert later["seq"] > 10
    result, _, events = _run(tmp, "cut.jsonl", store, wider)
    assert not result.audit.skipped
    (why,) = [w for w in _warnings(events) if "certificate" in w]
    assert f"points at record {later['seq']}, which this ledger does not have" in why
    # the first certificate's seq exists again by then, but it is another record
    result, _, events = _run(tmp, "cut.jsonl", store)
    (why,) = [w for w in _warnings(events) if "certificate" in w]
    assert f"certificate's record {audit['seq']} has changed" in why


@pytest.mark.parametrize(
    "change",
    [{"validation": {"skip_validated": False}}, {"allocation": {"max_weight": 0.25}}],
    ids=["skip_validated-false", "other-limit"],
)
def test_a_changed_setting_or_no_reuse_runs_the_full_audit(first, change):
    tmp, store, _, _, _ = first
    result, audit, _ = _run(tmp, "a.jsonl", store, CFG.replace(**change))
    assert not result.audit.skipped and not audit["data"].get("skipped")


def test_steps_proven_in_this_ledger_are_not_rechecked_on_new_data(first):
    tmp, store, _, audit, _ = first
    proven = {s["digest"] for s in audit["data"]["pit_stages"]}
    other = CFG.replace(data={"seed": 99})  # new prices, same code, params and schema
    result, again, _ = _run(tmp, "a.jsonl", store, other)
    assert not result.audit.skipped  # new data: no certificate
    stages = again["data"]["pit_stages"]
    assert all(s["reused"] for s in stages) and {s["digest"] for s in stages} == proven
    assert json.dumps(again["data"])  # plain JSON
    shutil.rmtree(tmp / "runs")


def _rebuild_chain(ledger: Path, edit) -> None:
    """Rewrite the ledger with ``edit`` applied to its records and every hash and link redone,
    as a forger with write access would (the head beside it too)."""
    from qpipe._canonical import canonical_json
    from qpipe.ledger import record_hash
    from qpipe.ledger.lock import head_bytes, lock_path

    recs = records(ledger)
    edit(recs)
    prev = "0" * 64
    lines = []
    for rec in recs:
        rec["prev"] = prev
        rec["hash"] = record_hash(rec)
        prev = rec["hash"]
        lines.append(canonical_json(rec) + "\n")
    ledger.write_text("".join(lines), encoding="utf-8")
    lock_path(ledger).write_bytes(head_bytes(recs[-1]["seq"], prev))


def test_ledger_verify_catches_a_tampered_certificate_behind_a_valid_chain(first):
    tmp, store, _, _, _ = first
    wider = CFG.replace(allocation={"max_weight": 0.25})
    _, failed_like, _ = _run(tmp, "a.jsonl", store, wider)  # another full audit record
    _, skip, _ = _run(tmp, "a.jsonl", store)
    ledger = tmp / "a.jsonl"
    assert verify(ledger).ok

    def point_elsewhere(recs):  # the skipped audit now claims the other audit certifies it
        cert = recs[skip["seq"] - 1]["data"]["certificate"]
        cert["seq"] = failed_like["seq"]

    _rebuild_chain(ledger, point_elsewhere)
    report = verify(ledger)
    # the re-hashed chain no longer matches the run's signed checkpoint (issue 15 §1), and the
    # certificate check catches the edit on its own as well
    assert report.reason is not None and "checkpoint" in report.reason
    assert not report.ok
    ((seq, problem),) = report.bad_certificates
    assert seq == skip["seq"] and f"record {failed_like['seq']} has changed" in problem

    from qpipe.cli.main import main

    assert main(["ledger", "verify", str(ledger)]) == 1
