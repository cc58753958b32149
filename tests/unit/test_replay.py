"""Replay re-runs a recorded run from the ledger alone and compares data outputs by digest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qpipe.config import ThreadSafeConfig
from qpipe.errors import ReplayError
from qpipe.ledger import records
from qpipe.replay import replay
from qpipe.runs import run
from tests.conftest import random_walk_prices

SMALL = {
    "strategy": {"lookback": 20, "skip": 2},
    "allocation": {"top_n": 3, "max_weight": 0.34},
    "run": {"report": False},
}


@pytest.fixture()
def recorded(tmp_path: Path) -> tuple[str, Path, Path]:
    prices = tmp_path / "prices.csv"
    random_walk_prices(symbols=6, days=90).write_csv(prices)
    result = run(ThreadSafeConfig.from_mapping(SMALL), data=prices, out=tmp_path / "runs")
    return result.run_id, tmp_path / "runs" / "audit.jsonl", prices


def test_a_replay_gives_the_same_digests_as_a_new_run(recorded) -> None:
    run_id, ledger, _ = recorded
    report = replay(run_id, ledger)
    assert report.identical and report.replay_run_id != run_id
    assert set(report.outputs) == {"equity.arrow", "weights.arrow", "trades.arrow", "metrics.json"}
    started = [r for r in records(ledger) if r["kind"] == "run_started"]
    assert started[-1]["data"]["argv"] == ["replay", run_id]


def test_a_changed_input_is_refused(recorded) -> None:
    run_id, ledger, prices = recorded
    prices.write_text(prices.read_text() + "\n", encoding="utf-8")
    with pytest.raises(ReplayError, match="changed since run"):
        replay(run_id, ledger)


def test_an_edited_ledger_is_refused_before_anything_runs(recorded) -> None:
    run_id, ledger, _ = recorded
    lines = ledger.read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    first["data"]["host"] = "elsewhere"  # a middle-of-history edit, hash left stale
    lines[0] = json.dumps(first, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    ledger.write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = len(lines)
    with pytest.raises(ReplayError, match="failed verification"):
        replay(run_id, ledger)
    assert len(ledger.read_text(encoding="utf-8").splitlines()) == before


def test_an_unknown_run_is_a_one_line_error(recorded) -> None:
    _, ledger, _ = recorded
    with pytest.raises(ReplayError, match="is not in the ledger"):
        replay("20990101T000000Z-000000", ledger)


def test_a_study_id_is_refused_with_what_it_is_and_what_can_be_replayed(recorded) -> None:
    """A walk-forward's id names the study and its replayable out-of-sample run (the old
    message said the study "did not finish")."""
    from qpipe.ledger import RunRecorder
    from qpipe.ledger import payloads as p

    run_id, ledger, _ = recorded
    study = RunRecorder(ledger, "wf-study")
    study.research_started(
        p.ResearchStarted(
            method="walk_forward", params={"train": 40, "test": 20}, grid={}, metric="sharpe",
            config_digest="0" * 64, data_digest="1" * 64, argv=[],
        )
    )  # fmt: skip
    study.research_finished(
        p.ResearchFinished(
            method="walk_forward", splits_digest="2" * 64, splits={}, result={},
            out_dir=str(ledger.parent), run_id=run_id,
        )
    )  # fmt: skip
    with pytest.raises(ReplayError, match=f"walk-forward study, not a run.*`{run_id}` can be"):
        replay("wf-study", ledger)
