"""A run from start to end: every run that starts ends in the ledger, whatever happens."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from qpipe.config import ThreadSafeConfig
from qpipe.errors import ConfigError
from qpipe.ledger import records, verify
from qpipe.runs import resolve_paths, run
from qpipe.runs.lifecycle import opened_run, signals_blocked

SMALL = {
    "data": {"symbols": 12, "start": "2020-01-01", "end": "2021-03-31"},
    "strategy": {"lookback": 40, "skip": 5},
    "allocation": {"top_n": 4, "max_weight": 0.25},
    "run": {"report": False},
}


@pytest.fixture(scope="module")
def small() -> ThreadSafeConfig:
    return ThreadSafeConfig.from_mapping(SMALL)


def _kinds(ledger: Path) -> list[str]:
    return [r["kind"] for r in records(ledger)]


def test_a_run_records_each_phase_in_order(tmp_path: Path, small: ThreadSafeConfig) -> None:
    events: list[str] = []
    result = run(small, out=tmp_path, on_event=lambda kind, data: events.append(kind))
    kinds = _kinds(tmp_path / "audit.jsonl")
    assert kinds[:3] == ["run_started", "dataset", "validation"]
    assert kinds[-2:] == ["run_finished", "checkpoint"]  # every run ends signed
    assert kinds.index("allocation_audit") < kinds.index("metrics") < kinds.index("artifact")
    tiers = [
        r["data"]["tier"] for r in records(tmp_path / "audit.jsonl") if r["kind"] == "validation"
    ]
    assert tiers == ["tier1", "tier2"]
    assert [e for e in events if e == "phase"] == ["phase"] * 5
    assert result.metrics == records(tmp_path / "audit.jsonl")[kinds.index("metrics")]["data"]
    assert verify(tmp_path / "audit.jsonl").ok


def test_per_step_mode_records_every_step_check(tmp_path: Path, small: ThreadSafeConfig) -> None:
    run(small.replace(validation={"mode": "per_step"}), out=tmp_path)
    steps = [
        r["data"]
        for r in records(tmp_path / "audit.jsonl")
        if r["kind"] == "validation" and r["data"]["tier"] == "per_step"
    ]
    assert len(steps) >= 5 and all(s["passed"] and s["failures"] == [] for s in steps)
    assert {s["target"] for s in steps} >= {"allocate.weights", "backtest.equity"}


def test_a_failing_phase_ends_the_run_as_failed(tmp_path: Path, small: ThreadSafeConfig) -> None:
    with pytest.raises(ConfigError, match="top_n"):
        run(small.replace(allocation={"top_n": 50}), out=tmp_path)
    *_, failed, checkpoint = records(tmp_path / "audit.jsonl")
    assert failed["kind"] == "run_failed" and failed["data"]["error"] == "ConfigError"
    assert checkpoint["kind"] == "checkpoint"
    assert not any(p.is_dir() and p.name.startswith("20") for p in tmp_path.iterdir())


def test_an_interrupt_inside_a_run_is_recorded(tmp_path: Path, small: ThreadSafeConfig) -> None:
    paths = resolve_paths(small, tmp_path)
    with pytest.raises(KeyboardInterrupt), opened_run(
        small, paths, None, argv=None, emit=lambda k, d: None, cache=None, report=False
    ):
        raise KeyboardInterrupt
    *_, last, checkpoint = records(paths.ledger)
    assert (last["kind"], last["data"]["error"]) == ("run_failed", "KeyboardInterrupt")
    assert checkpoint["kind"] == "checkpoint"


def test_signals_are_held_while_the_last_record_is_written() -> None:
    reached = []
    with pytest.raises(KeyboardInterrupt), signals_blocked():
        os.kill(os.getpid(), signal.SIGINT)
        reached.append("after the signal, inside the block")
    assert reached == ["after the signal, inside the block"]


def test_an_unwritable_ledger_leaves_no_run_folder(tmp_path: Path, small: ThreadSafeConfig) -> None:
    ledger = tmp_path / "ledger-is-a-folder"
    ledger.mkdir()
    out = tmp_path / "runs"
    with pytest.raises(Exception):  # noqa: B017 - the ledger's own error; what matters is below
        run(small, out=out, ledger=ledger)
    assert [p.name for p in out.iterdir()] in ([], ["store"])
