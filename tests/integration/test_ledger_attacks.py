"""Attacks on a ledger written by real runs: forged run, cut tail, middle edit, replay.

The attacker writes the runs folder only; the key folder is this test session's own
(``QPIPE_KEY_DIR``, set in tests/conftest.py). Each attack must make ``ledger verify`` fail
and the next run refuse with one line (exit 1, no traceback), leaving the ledger as it was.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from qpipe._canonical import canonical_json
from qpipe.cli import main, runner_main
from qpipe.errors import ReplayError
from qpipe.ledger import records
from qpipe.ledger.chain import make_record
from qpipe.ledger.lock import head_bytes
from qpipe.replay import replay
from tests.conftest import SMALL_BUILTIN_SETS


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> Path:
    """A runs folder holding two real runs on the small built-in universe."""
    out = tmp_path_factory.mktemp("attacks") / "runs"
    for top_n in ("5", "6"):
        args = [*SMALL_BUILTIN_SETS, "--set", f"allocation.top_n={top_n}", "--out", str(out)]
        assert runner_main([*args, "--set", "run.report=false"]) == 0
    return out


@pytest.fixture
def out(two_runs, tmp_path) -> Path:
    """The ledger of ``two_runs`` restored before each attack (the key folder keeps its head)."""
    ledger = two_runs / "audit.jsonl"
    saved = tmp_path / "saved"
    saved.mkdir()
    for name in ("audit.jsonl", "audit.jsonl.lock"):
        shutil.copy2(two_runs / name, saved / name)
    yield two_runs
    for name in ("audit.jsonl", "audit.jsonl.lock"):
        shutil.copy2(saved / name, two_runs / name)
    assert main(["ledger", "verify", str(ledger)]) == 0


def _refused(out: Path, capsys) -> str:
    before = (out / "audit.jsonl").read_bytes()
    code = runner_main([*SMALL_BUILTIN_SETS, "--set", "run.report=false", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "Traceback" not in err[0], err
    assert (out / "audit.jsonl").read_bytes() == before  # nothing appended to a bad ledger
    return err[0]


def _verify_fails(out: Path, capsys, *flags: str) -> str:
    assert main(["ledger", "verify", *flags, str(out / "audit.jsonl")]) == 1
    return capsys.readouterr().out


def test_a_forged_run_with_a_valid_chain(out, capsys):
    recs = records(out / "audit.jsonl")
    real = [r for r in recs if r["run_id"] == recs[0]["run_id"] and r["kind"] != "checkpoint"]
    last = recs[-1]
    lines = []
    for r in real:  # a copy of a real run, with better numbers, correctly chained
        data = dict(r["data"])
        if r["kind"] == "metrics":
            data["sharpe"] = 5.0
        last = make_record(last, "20991231T000000Z-f0f0f0", r["kind"], data)
        lines.append(canonical_json(last) + "\n")
    with (out / "audit.jsonl").open("a") as f:
        f.write("".join(lines))
    (out / "audit.jsonl.lock").write_bytes(head_bytes(last["seq"], last["hash"]))
    assert "unsigned tail" in _verify_fails(out, capsys)
    assert "no qpipe writer" in _verify_fails(out, capsys, "--allow-open-runs")
    assert "a forgery" in _refused(out, capsys)


def test_cutting_the_last_run_and_emptying_the_lock(out, capsys):
    recs = records(out / "audit.jsonl")
    last_run = recs[-1]["run_id"]
    keep = next(i for i, r in enumerate(recs) if r["run_id"] == last_run)
    lines = (out / "audit.jsonl").read_bytes().splitlines(keepends=True)
    (out / "audit.jsonl").write_bytes(b"".join(lines[:keep]))
    (out / "audit.jsonl.lock").write_bytes(b"")
    assert "cut from the end" in _verify_fails(out, capsys)
    assert "edited or cut" in _refused(out, capsys)


def test_editing_a_middle_record_then_running(out, capsys):
    lines = (out / "audit.jsonl").read_bytes().splitlines(keepends=True)
    i = next(n for n, line in enumerate(lines) if b'"kind":"metrics"' in line)
    lines[i] = lines[i].replace(b'"sharpe":', b'"sharpe":1', 1)
    (out / "audit.jsonl").write_bytes(b"".join(lines))
    assert "edited" in _verify_fails(out, capsys)
    assert "edited or cut" in _refused(out, capsys)


def test_replay_refuses_an_edited_ledger(out, capsys):
    recs = records(out / "audit.jsonl")
    run_id = recs[0]["run_id"]
    lines = (out / "audit.jsonl").read_bytes().splitlines(keepends=True)
    lines[0] = lines[0].replace(b'"cost_bps":10.0', b'"cost_bps":0.0', 1)
    (out / "audit.jsonl").write_bytes(b"".join(lines))
    with pytest.raises(ReplayError, match="failed verification"):
        replay(run_id, out / "audit.jsonl")
