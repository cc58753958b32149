"""Typed payloads rebuild exactly the ``data`` a real run writes; the docs table follows them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import qpipe
from qpipe._canonical import jsonable
from qpipe.config import ThreadSafeConfig
from qpipe.ledger import payloads as p
from qpipe.ledger import records
from qpipe.ledger.kinds import ALL_PAYLOADS, kinds_table

REPO = Path(__file__).resolve().parents[3]
BY_KIND = {cls.KIND: cls for cls in ALL_PAYLOADS}


@pytest.fixture(scope="module")
def run_records(tmp_path_factory) -> list[dict]:
    """The records of one real run on a small built-in universe (report on: every artifact)."""
    out = tmp_path_factory.mktemp("runs")
    cfg = ThreadSafeConfig.default().replace(
        data={"symbols": 20, "start": "2020-01-01", "end": "2021-06-30"},
        strategy={"lookback": 60, "skip": 5},
        allocation={"top_n": 5},
    )
    qpipe.run(cfg, out=out, argv=["test"], report=True)
    return records(out / "audit.jsonl")


def _payload_from(kind: str, data: dict) -> p.Payload:
    cls = BY_KIND[kind]
    if cls is p.Metrics:
        return p.Metrics(data)
    if cls is p.Stage:
        return p.Stage.from_data(data)
    if cls is p.Validation:
        failures = tuple(p.ValidationFailure(**f) for f in data["failures"])
        return p.Validation(**{**data, "failures": failures})
    return cls(**data)


def test_payloads_rebuild_every_record_of_a_real_run_exactly(run_records):
    kinds = [r["kind"] for r in run_records]
    expected = {"run_started", "dataset", "validation", "stage", "allocation_audit", "metrics"}
    assert expected | {"artifact", "run_finished"} <= set(kinds)
    for rec in run_records:
        payload = _payload_from(rec["kind"], rec["data"])  # unknown or missing keys raise
        assert jsonable(payload.to_data()) == rec["data"], rec["kind"]


def test_every_payload_has_a_kind_and_documented_fields():
    assert len({cls.KIND for cls in ALL_PAYLOADS}) == len(ALL_PAYLOADS)
    for cls in ALL_PAYLOADS:
        assert cls.KIND and cls.__doc__
        assert dataclasses.fields(cls), cls
        assert all(f.metadata.get("doc") for f in dataclasses.fields(cls)), cls
        assert {f.name for f in dataclasses.fields(cls)} >= cls.OMIT_NONE


def test_optional_fields_are_left_out_when_none():
    failed = p.RunFailed(error="ConfigError", message="bad key")
    assert failed.to_data() == {"error": "ConfigError", "message": "bad key"}
    assert p.RunFailed(error="E", message="m", phase="config").to_data()["phase"] == "config"
    v = p.Validation(
        tier="tier2",
        target="weights",
        passed=False,
        skipped=False,
        seconds=0.5,
        failures=(
            p.ValidationFailure(check="max_weight", column="weight", count=3, example="0.4"),
        ),
    )
    assert v.to_data() == {
        "tier": "tier2",
        "target": "weights",
        "passed": False,
        "skipped": False,
        "seconds": 0.5,
        "failures": [{"check": "max_weight", "column": "weight", "count": 3, "example": "0.4"}],
    }


def test_payloads_are_frozen():
    a = p.Artifact(name="x", path="y", digest="0" * 64, bytes=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.name = "z"  # type: ignore[misc]


def test_docs_table_of_kinds_is_generated_from_the_payloads():
    text = (REPO / "docs" / "ledger.md").read_text(encoding="utf-8")
    begin, end = "<!-- kinds:begin -->\n", "<!-- kinds:end -->"
    assert begin in text and end in text, "docs/ledger.md lost its kinds-table markers"
    table = text[text.index(begin) + len(begin) : text.index(end)]
    fix = "qpipe.ledger.kinds.write_kinds_table('docs/ledger.md')"
    assert table == kinds_table(), f"docs/ledger.md kinds table is stale; run: {fix}"
