"""RunRecorder: one method per kind, typed payloads only, and no other writer of records."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from qpipe.errors import LedgerError
from qpipe.ledger import Ledger, RunRecorder, records, verify
from qpipe.ledger import payloads as p
from qpipe.ledger.kinds import ALL_PAYLOADS

PACKAGE = Path(__file__).resolve().parents[3] / "qpipe"
WRITER_MODULES = {"ledger/recorder.py", "ledger/writer.py"}


def _ledger_write_calls(source: str) -> list[int]:
    """Lines calling ``<x>.append``/``<x>._append`` with 3 arguments (a list's append takes 1)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("append", "_append")
            and len(node.args) + len(node.keywords) >= 3
        ):
            found.append(node.lineno)
    return found


def test_nothing_but_the_recorder_writes_records():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in WRITER_MODULES:
            continue
        text = path.read_text(encoding="utf-8")
        offenders += [f"{rel}:{n}" for n in _ledger_write_calls(text)]
        if "._append(" in text:
            offenders.append(f"{rel}: calls Ledger._append")
    assert not offenders, f"ledger records written outside RunRecorder: {offenders}"


def test_the_writer_scan_finds_a_ledger_append():
    assert _ledger_write_calls("book.append(run_id, 'metrics', {})\nxs.append(1)\n") == [1]


def _started() -> p.RunStarted:
    return p.RunStarted(
        config={"a": {"b": 1}},
        config_digest="d" * 64,
        code_version="0.1.0",
        git_commit=None,
        git_dirty=None,
        packages={"polars": "2.1.0"},
        engine="local",
        host="h",
        argv=["runner.py"],
        out_dir="runs/x",
    )


def test_each_method_writes_its_kind_and_returns_the_record(tmp_path):
    rec = RunRecorder(Ledger(tmp_path / "audit.jsonl"), "run-1")
    first = rec.run_started(_started())
    assert (first["seq"], first["kind"], first["run_id"]) == (1, "run_started", "run-1")
    assert first["data"]["git_commit"] is None and "phase" not in first["data"]
    m = rec.metrics(p.Metrics({"sharpe": float("inf"), "n_trades": 3}))
    assert m["data"] == {"sharpe": None, "n_trades": 3}
    done = rec.run_finished(p.RunFinished(seconds=1.25, out_dir="runs/x"))
    assert done["seq"] == 3 and done["prev"] == m["hash"]
    assert records(tmp_path / "audit.jsonl") == [first, m, done, rec.last_checkpoint]
    assert verify(tmp_path / "audit.jsonl").ok


def test_a_method_refuses_another_kinds_payload(tmp_path):
    rec = RunRecorder(tmp_path / "audit.jsonl", "run-1")
    with pytest.raises(LedgerError, match="needs a RunFinished"):
        rec.run_finished(p.RunFailed(error="E", message="m"))  # type: ignore[arg-type]
    with pytest.raises(LedgerError, match="typed record kind"):
        rec.write({"seconds": 1})  # type: ignore[arg-type]
    with pytest.raises(LedgerError, match="written by the ledger itself"):
        rec.write(p.Recovered(offset=0, bytes=1, encoding="utf-8", torn="x"))
    assert not (tmp_path / "audit.jsonl").exists()


def test_every_kind_has_a_recorder_method():
    assert callable(RunRecorder.checkpoint)  # checkpoints are built and signed by the ledger
    for cls in ALL_PAYLOADS:
        if cls in (p.Recovered, p.Checkpoint):
            continue
        method = getattr(RunRecorder, cls.KIND)
        annotation = method.__annotations__["payload"]
        assert annotation is cls or str(annotation).split(".")[-1] == cls.__name__, cls
