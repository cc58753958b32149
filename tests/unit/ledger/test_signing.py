"""Signed checkpoints against each attack: forged runs, cuts, middle edits, reordering, links.

The attacker can write the runs folder (ledger, lock file) but not the key folder. Each test
has its own key folder; ledgers are written through RunRecorder as runs write them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from qpipe._canonical import canonical_json
from qpipe.errors import LedgerError
from qpipe.ledger import (
    Ledger,
    RunRecorder,
    forget_head,
    read_anchor,
    records,
    signed_head,
    verify,
)
from qpipe.ledger import payloads as p
from qpipe.ledger.chain import make_record
from qpipe.ledger.lock import head_bytes


@pytest.fixture
def keys(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "keys"
    monkeypatch.setenv("QPIPE_KEY_DIR", str(folder))
    return folder


@pytest.fixture
def ledger(tmp_path, keys) -> Path:
    path = tmp_path / "runs" / "audit.jsonl"
    for i in range(3):
        finished_run(path, f"run-{i}", sharpe=0.5 + i)
    return path


def _started(run_id: str) -> p.RunStarted:
    return p.RunStarted(
        config={"backtest": {"cost_bps": 10.0}},
        config_digest="d" * 64,
        code_version="0.1.0",
        engine="local",
        host="h",
        argv=["runner.py"],
        out_dir=f"runs/{run_id}",
    )


def open_run(path: Path, run_id: str, *, sharpe: float = 1.0) -> RunRecorder:
    rec = RunRecorder(Ledger(path), run_id)
    rec.run_started(_started(run_id))
    rec.metrics(p.Metrics({"sharpe": sharpe, "cagr": 0.1}))
    return rec


def finished_run(path: Path, run_id: str, *, sharpe: float = 1.0) -> None:
    open_run(path, run_id, sharpe=sharpe).run_finished(p.RunFinished(seconds=1.0, out_dir="x"))


def _forge(path: Path, items: list[tuple[str, str, dict]]) -> None:
    """Append records with a valid chain and update the lock head, as an attacker can."""
    path.parent.mkdir(parents=True, exist_ok=True)
    last = records(path)[-1] if path.exists() else None
    with path.open("a", encoding="utf-8") as f:
        for run_id, kind, data in items:
            last = make_record(last, run_id, kind, data)
            f.write(canonical_json(last) + "\n")
    assert last is not None
    _set_lock_head(path, last)


def _set_lock_head(path: Path, last: dict | None) -> None:
    lock = path.with_name(path.name + ".lock")
    lock.write_bytes(head_bytes(last["seq"], last["hash"]) if last else b"")


def _rewrite(path: Path, recs: list[dict]) -> None:
    """Re-chain ``recs`` (new seq, prev and hash) and write them: a full rewrite of the file."""
    out, last = [], None
    for r in recs:
        last = make_record(last, r["run_id"], r["kind"], r["data"])
        out.append(canonical_json(last) + "\n")
    path.write_text("".join(out), encoding="utf-8")
    _set_lock_head(path, last)


FORGED_RUN = [
    ("run-fake", "run_started", _started("run-fake").to_data()),
    ("run-fake", "metrics", {"sharpe": 5.0, "cagr": 0.9}),
    ("run-fake", "run_finished", {"seconds": 1.0, "out_dir": "x"}),
]


def test_a_signed_ledger_verifies(ledger):
    report = verify(ledger)
    assert report.ok, report.reason
    s = report.signing
    assert s is not None and s.status == "signed" and s.checkpoints == 3 and s.tail == ()
    kinds = [r["kind"] for r in records(ledger)]
    assert kinds.count("checkpoint") == 3 and kinds[-1] == "checkpoint"


def test_a_forged_run_with_a_valid_chain_fails_verify_and_stops_the_next_run(ledger):
    _forge(ledger, FORGED_RUN)
    report = verify(ledger)
    assert not report.ok and "unsigned tail" in str(report.reason)
    open_ok = verify(ledger, allow_open_runs=True)
    assert not open_ok.ok and "no qpipe writer" in str(open_ok.reason)
    with pytest.raises(LedgerError, match="no qpipe writer with this key folder appended"):
        open_run(ledger, "run-next")


def test_a_forged_checkpoint_signed_with_another_key_fails(ledger, tmp_path, monkeypatch):
    _forge(ledger, FORGED_RUN)
    # the attacker signs with a key of their own (their own key folder)
    monkeypatch.setenv("QPIPE_KEY_DIR", str(tmp_path / "attacker"))
    Ledger(ledger)._checkpoint("run-fake")
    monkeypatch.setenv("QPIPE_KEY_DIR", str(tmp_path / "keys"))
    report = verify(ledger)
    assert not report.ok and "does not verify with this key" in str(report.reason)


def test_cutting_the_last_run_and_emptying_the_lock_fails(ledger):
    recs = records(ledger)
    starts = [i for i, r in enumerate(recs) if r["kind"] == "run_started"]
    lines = ledger.read_bytes().splitlines(keepends=True)
    ledger.write_bytes(b"".join(lines[: starts[-1]]))
    _set_lock_head(ledger, None)
    report = verify(ledger)
    assert not report.ok and "cut from the end" in str(report.reason)
    with pytest.raises(LedgerError, match="edited or cut"):
        open_run(ledger, "run-next")


def test_editing_a_middle_record_makes_the_next_run_refuse(ledger):
    lines = ledger.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"sharpe":0.5', b'"sharpe":4.5')  # hash no longer matches
    ledger.write_bytes(b"".join(lines))
    with pytest.raises(LedgerError, match="edited or cut at or before"):
        open_run(ledger, "run-next")
    assert not verify(ledger).ok


def test_a_rehashed_middle_edit_breaks_the_signatures(ledger):
    recs = records(ledger)
    recs[1]["data"]["sharpe"] = 4.5  # the attacker re-chains every record after it
    _rewrite(ledger, recs)
    report = verify(ledger)
    assert not report.ok and "does not sign the record before it" in str(report.reason)
    with pytest.raises(LedgerError, match="edited or cut at or before"):
        open_run(ledger, "run-next")


def test_reordering_two_runs_breaks_the_signatures(ledger):
    recs = records(ledger)
    starts = [i for i, r in enumerate(recs) if r["kind"] == "run_started"]
    first, second = recs[starts[0] : starts[1]], recs[starts[1] : starts[2]]
    _rewrite(ledger, second + first + recs[starts[2] :])
    report = verify(ledger)
    assert not report.ok and "checkpoint at seq" in str(report.reason)


def test_a_killed_run_leaves_an_open_tail_that_the_next_run_signs(ledger):
    open_run(ledger, "run-killed")  # never finishes: no checkpoint
    report = verify(ledger)
    assert not report.ok and "unsigned tail" in str(report.reason)
    assert report.signing is not None and len(report.signing.tail_journaled) == 2
    assert verify(ledger, allow_open_runs=True).ok
    finished_run(ledger, "run-next")  # journaled records are qpipe's own: the run may start
    assert verify(ledger).ok


def test_a_checkpoint_follows_a_failed_run(ledger):
    rec = open_run(ledger, "run-bad")
    failed = rec.run_failed(p.RunFailed(error="StageError", message="boom"))
    assert rec.last_checkpoint is not None and rec.last_checkpoint["seq"] == failed["seq"] + 1
    assert verify(ledger).ok


def test_a_legacy_ledger_verifies_as_unsigned_then_is_signed_by_the_next_run(tmp_path, keys):
    path = tmp_path / "old" / "audit.jsonl"
    _forge(path, FORGED_RUN)  # written before signing existed: no journal, no checkpoint
    report = verify(path)
    assert report.ok and report.signing is not None
    assert report.signing.status == "unsigned ledger" and report.signing.legacy == 3
    finished_run(path, "run-new")
    report = verify(path)
    assert report.ok and report.signing is not None and report.signing.status == "signed"
    assert records(path)[-1]["data"]["legacy"] == 3
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"sharpe":5.0', b'"sharpe":6.0')
    path.write_bytes(b"".join(lines))
    assert not verify(path).ok  # once signed, legacy records are protected too


def test_anchor_exported_then_checked_without_the_key_folder(ledger, tmp_path, monkeypatch):
    anchor_file = tmp_path / "anchor.json"
    anchor_file.write_text(json.dumps(signed_head(ledger).to_json()))
    monkeypatch.setenv("QPIPE_KEY_DIR", str(tmp_path / "elsewhere"))  # no key, no head
    anchor = read_anchor(anchor_file)
    assert verify(ledger, anchor=anchor).ok
    lines = ledger.read_bytes().splitlines(keepends=True)
    ledger.write_bytes(b"".join(lines[:-4]))
    _set_lock_head(ledger, None)
    report = verify(ledger, anchor=anchor)
    assert not report.ok and "anchor" in str(report.reason)


@pytest.mark.parametrize("name", ["audit.jsonl", "audit.jsonl.lock"])
def test_a_symlink_at_the_ledger_or_its_lock_is_never_written_through(tmp_path, keys, name):
    runs = tmp_path / "runs"
    runs.mkdir()
    target = tmp_path / "precious.txt"
    target.write_bytes(b"do not touch\n")
    (runs / name).symlink_to(target)
    with pytest.raises(LedgerError, match="symbolic link"):
        open_run(runs / "audit.jsonl", "run-x")
    assert target.read_bytes() == b"do not touch\n"


def test_the_key_is_private_and_outside_the_runs_folder(ledger, keys):
    key = keys / "ledger_ed25519.key"
    assert key.is_file() and (key.stat().st_mode & 0o077) == 0
    assert not any(ledger.parent.rglob("*.key"))
    assert os.environ["QPIPE_KEY_DIR"] == str(keys)


def test_cutting_an_open_run_is_seen_in_the_journal(ledger):
    before = ledger.read_bytes()
    lock = ledger.with_name("audit.jsonl.lock").read_bytes()
    open_run(ledger, "run-open")  # two records, no checkpoint yet
    ledger.write_bytes(before)  # the attacker cuts them and restores the lock file
    ledger.with_name("audit.jsonl.lock").write_bytes(lock)
    report = verify(ledger, allow_open_runs=True)
    assert not report.ok and "missing from the end (cut)" in str(report.reason)
    with pytest.raises(LedgerError, match="lost 2 journaled records"):
        open_run(ledger, "run-next")


def test_a_ledger_removed_on_purpose_is_forgotten_before_a_new_one_starts(ledger):
    ledger.unlink()
    ledger.with_name("audit.jsonl.lock").unlink()
    with pytest.raises(LedgerError, match="qpipe ledger forget"):
        open_run(ledger, "run-new")
    assert not ledger.exists() or ledger.read_bytes() == b""
    assert forget_head(ledger) is not None
    finished_run(ledger, "run-new")
    assert verify(ledger).ok and forget_head(tmp := ledger.with_name("none.jsonl")) is None
    assert not tmp.exists()


def test_the_cli_exports_an_anchor_checks_it_elsewhere_and_forgets(ledger, tmp_path, capsys):
    from qpipe.cli import main

    anchor = tmp_path / "anchor.json"
    assert main(["ledger", "anchor", "--ledger", str(ledger), "--output", str(anchor)]) == 0
    assert main(["ledger", "verify", str(ledger)]) == 0
    assert "signed (3 checkpoints, key " in capsys.readouterr().out
    os.environ["QPIPE_KEY_DIR"] = str(tmp_path / "elsewhere")  # monkeypatch restores it
    assert main(["ledger", "verify", "--anchor", str(anchor), str(ledger)]) == 0
    assert "anchor (seq 12) held" in capsys.readouterr().out  # 3 runs x (3 + checkpoint)
    os.environ["QPIPE_KEY_DIR"] = str(tmp_path / "keys")
    assert main(["ledger", "forget", str(ledger)]) == 0
    assert "forgot the signed head" in capsys.readouterr().out
