"""Certificates: the key follows every input, a valid one is found, and every way of faking or
misplacing one is refused with a reason (pure functions over ledger records)."""

from __future__ import annotations

from typing import Any

from qpipe.config import ThreadSafeConfig
from qpipe.ledger import record_hash
from qpipe.validation.certificate import (
    Certificate,
    audit_settings,
    certificate_key,
    certificate_problems,
    check_certificate,
    choose_certificate,
    find_certificate,
    ledger_id,
    proven_steps,
    strategy_digest,
)

CFG = ThreadSafeConfig.default()
KEY = certificate_key("p" * 64, "w" * 64, audit_settings(CFG), strategy=strategy_digest(["a", "b"]))


def chain(datas: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Records as the ledger writes them: seq from 1, prev links, hashes."""
    out: list[dict[str, Any]] = []
    prev = "0" * 64
    for i, (kind, data) in enumerate(datas, start=1):
        rec = {
            "seq": i,
            "ts": "2026-01-01T00:00:00Z",
            "run_id": f"r{i}",
            "kind": kind,
            "data": data,
            "prev": prev,
        }
        rec["hash"] = record_hash(rec)
        prev = rec["hash"]
        out.append(rec)
    return out


def full_pass(key=KEY, passed=True) -> tuple[str, dict[str, Any]]:
    return (
        "allocation_audit",
        {
            "passed": passed,
            "certificate": key.to_json(),
            "pit_stages": [{"digest": "d1", "violations": 0}, {"digest": "d2", "violations": 3}],
        },
    )


def skipped(cert: Certificate) -> tuple[str, dict[str, Any]]:
    return ("allocation_audit", {"passed": True, "skipped": True, "certificate": cert.to_json()})


def test_the_key_follows_prices_weights_strategy_and_every_setting():
    settings = audit_settings(CFG)
    base = certificate_key("p", "w", settings, strategy="s").digest
    assert certificate_key("p", "w", settings, strategy="s").digest == base
    assert certificate_key("q", "w", settings, strategy="s").digest != base
    assert certificate_key("p", "x", settings, strategy="s").digest != base
    assert certificate_key("p", "w", settings, strategy="t").digest != base
    assert certificate_key("p", "w", settings).digest != base  # external weights
    for change in (
        {"allocation": {"max_weight": 0.2}},
        {"allocation": {"long_only": False}},
        {"validation": {"pit_cuts": 2}},
        {"validation": {"max_daily_return": 5.0}},
    ):
        other = audit_settings(CFG.replace(**change))
        assert certificate_key("p", "w", other, strategy="s").digest != base, change
    assert certificate_key("p", "w", audit_settings(CFG, pit_window=2), strategy="s").digest != base


def test_a_passing_full_audit_is_found_and_holds():
    recs = chain([("run_started", {}), full_pass()])
    cert = find_certificate(recs, KEY.digest)
    assert cert == Certificate(KEY.digest, ledger_id(recs), 2, recs[1]["hash"])
    assert check_certificate(cert, recs, KEY.digest) is None
    assert choose_certificate(recs, KEY.digest) == (cert, None)
    again = chain([("run_started", {}), full_pass(), skipped(cert)])
    assert certificate_problems(again) == []


def test_no_certificate_for_a_failed_or_skipped_audit_or_another_key():
    assert find_certificate(chain([full_pass(passed=False)]), KEY.digest) is None
    other = certificate_key("x" * 64, "w" * 64, audit_settings(CFG))
    assert find_certificate(chain([full_pass(other)]), KEY.digest) is None
    assert choose_certificate(chain([("run_started", {})]), KEY.digest) == (None, None)


def test_a_certificate_from_another_ledger_or_with_a_missing_record_is_refused():
    mine = chain([("run_started", {"n": 1}), full_pass()])
    theirs = chain([("run_started", {"n": 2}), full_pass()])
    foreign = find_certificate(theirs, KEY.digest)
    assert foreign is not None
    reason = check_certificate(foreign, chain([("run_started", {"n": 1})]))
    assert reason is not None and "another ledger" in reason
    cut = mine[:1]  # the audit record was cut off the end
    own = find_certificate(mine, KEY.digest)
    assert own is not None
    reason = check_certificate(own, cut)
    assert reason is not None and "does not have" in reason
    # offered from outside (a shared store's index): refused with the reason, full audit runs
    assert choose_certificate(cut, KEY.digest, foreign.to_json()) == (
        None,
        check_certificate(foreign, cut, KEY.digest),
    )
    # ... unless the ledger has its own
    assert choose_certificate(mine, KEY.digest, foreign.to_json()) == (own, None)
    assert choose_certificate(cut, KEY.digest, {"junk": 1})[1] == (
        "the stored certificate is unreadable"
    )


def test_verify_catches_a_tampered_certificate_even_with_a_rebuilt_chain():
    good = chain([("run_started", {}), full_pass(), full_pass(passed=False)])
    cert = find_certificate(good, KEY.digest)
    assert cert is not None
    datas = [(r["kind"], r["data"]) for r in good]
    cases = {
        "points at the failed audit": {**cert.to_json(), "seq": 3, "hash": good[2]["hash"]},
        "wrong hash": {**cert.to_json(), "hash": "0" * 64},
        "missing record": {**cert.to_json(), "seq": 99},
        "another ledger": {**cert.to_json(), "ledger": "f" * 64},
        "unreadable": {"seq": "x"},
    }
    for name, forged in cases.items():
        tampered = [
            *datas,
            ("allocation_audit", {"passed": True, "skipped": True, "certificate": forged}),
        ]
        problems = certificate_problems(chain(tampered))
        assert len(problems) == 1, (name, problems)


def test_proven_steps_are_the_clean_steps_of_full_audits():
    recs = chain([full_pass(), skipped(Certificate(KEY.digest, "x", 1, "y"))])
    assert proven_steps(recs) == frozenset({"d1"})
