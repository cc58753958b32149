"""The ledger: canonical hash-chained records, tamper detection, torn tails, summaries, commands."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import pickle
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from qpipe.cli import main
from qpipe.errors import LedgerError
from qpipe.ledger import (
    GENESIS,
    Ledger,
    canonical_json,
    record_hash,
    records,
    run_records,
    runs,
    verify,
)


def verify_command(path: Path) -> int:
    return main(["ledger", "verify", str(path)])


def show_command(path: Path, run_id: str | None = None) -> int:
    return main(["ledger", "show", "--ledger", str(path), *([run_id] if run_id else [])])


TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
# each example rewrites the files in tmp_path, so sharing it across examples is safe
FIXTURES_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
CFG = {"backtest": {"cost_bps": 10.0}, "strategy": {"kind": "momentum", "lookback": 252}}


def _digest(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# Raw appends (no run, no checkpoint) leave an unsigned tail that qpipe journaled: the chain
# tests below accept it with ``allow_open_runs``; signing has its own tests (tests/unit/ledger/).


def write_run(
    led: Ledger, run_id: str, out: Path, *, status: str = "finished", sharpe: float = 1.0
) -> None:
    """The records one run writes, in the payload shapes the run code uses."""
    led._append(
        run_id,
        "run_started",
        {
            "config": CFG,
            "config_digest": _digest(canonical_json(CFG).encode()),
            "code_version": "0.1.0",
            "git_commit": "a" * 40,
            "git_dirty": False,
            "packages": {"polars": "2.1.0"},
            "engine": "local",
            "host": "test",
            "argv": ["runner.py"],
        },
    )
    led._append(
        run_id,
        "dataset",
        {
            "name": "prices",
            "path": "store/ab/x.arrow",
            "digest": "b" * 64,
            "rows": 960,
            "schema": [["date", "Date"], ["symbol", "String"], ["close", "Float64"]],
            "source": "builtin",
            "source_digest": None,
        },
    )
    led._append(
        run_id,
        "stage",
        {
            "stage": "momentum",
            "inputs": {"prices": "b" * 64},
            "outputs": {"signal": {"digest": "c" * 64, "rows": 960, "path": "store/cc/c.arrow"}},
            "seconds": 0.01,
            "shards": 1,
            "retries": 0,
        },
    )
    if status == "failed":
        led._append(run_id, "run_failed", {"error": "StageError", "message": "boom"})
        led._checkpoint(run_id)
        return
    led._append(
        run_id,
        "metrics",
        {"sharpe": sharpe, "cagr": 0.05, "max_drawdown": -0.2, "total_return": 0.3, "beta": None},
    )
    art = out / run_id / "equity.arrow"
    art.parent.mkdir(parents=True, exist_ok=True)
    art.write_bytes(run_id.encode() * 10)
    led._append(
        run_id,
        "artifact",
        {"name": "equity.arrow", "path": str(art), "digest": _digest(art.read_bytes()), "bytes": 1},
    )
    if status == "finished":
        led._append(run_id, "run_finished", {"seconds": 1.5, "out_dir": str(out / run_id)})
        led._checkpoint(run_id)


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[bytes, bytes]:
    """A small ledger (two runs, 12 records with their checkpoints) as (file, lock-file) bytes."""
    root = tmp_path_factory.mktemp("sample")
    led = Ledger(root / "audit.jsonl")
    write_run(led, "run-a", root)
    write_run(led, "run-b", root, status="failed")
    return led.path.read_bytes(), led.lock_path.read_bytes()


def _materialize(tmp: Path, blob: bytes, head: bytes | None) -> Path:
    path = tmp / "audit.jsonl"
    path.write_bytes(blob)
    lock = tmp / "audit.jsonl.lock"
    if head is None:
        lock.unlink(missing_ok=True)
    else:
        lock.write_bytes(head)
    return path


# ------------------------------------------------------------------------ the record format


def test_records_are_canonical_and_chained(tmp_path):
    led = Ledger(tmp_path / "sub" / "audit.jsonl")  # the folder is created on first append
    first = led._append("r1", "run_started", {"b": 1, "a": "é"})
    second = led._append("r1", "metrics", {"sharpe": 0.5})
    lines = led.path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 3
    for raw, rec in zip(lines[:2], (first, second), strict=True):
        parsed = json.loads(raw)
        assert parsed == rec
        assert set(parsed) == {"seq", "ts", "run_id", "kind", "data", "prev", "hash"}
        assert raw == canonical_json(parsed).encode("utf-8")  # sorted keys, no spaces, raw UTF-8
        assert parsed["hash"] == record_hash(parsed)
        assert TS.match(parsed["ts"])
    assert "é".encode() in lines[0]
    assert (first["seq"], second["seq"]) == (1, 2)
    assert first["prev"] == GENESIS and second["prev"] == first["hash"]
    body = {k: v for k, v in first.items() if k != "hash"}
    expected = json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    assert first["hash"] == _digest(expected.encode("utf-8"))


def test_non_finite_and_non_json_values_are_made_json_safe(tmp_path):
    led = Ledger(tmp_path / "audit.jsonl")
    rec = led._append(
        "r1",
        "metrics",
        {
            "nan": math.nan,
            "inf": -math.inf,
            "np_nan": np.float64("nan"),
            "np_int": np.int64(3),
            "np_arr": np.array([1.0, np.inf]),
            "day": dt.date(2024, 1, 2),
            "path": Path("/tmp/x"),
            "tuple": (1, 2),
            "nested": {"deep": [math.nan, {"k": math.inf}]},
            7: "int key",
        },
    )
    assert rec["data"] == {
        "nan": None,
        "inf": None,
        "np_nan": None,
        "np_int": 3,
        "np_arr": [1.0, None],
        "day": "2024-01-02",
        "path": "/tmp/x",
        "tuple": [1, 2],
        "nested": {"deep": [None, {"k": None}]},
        "7": "int key",
    }
    assert records(led.path)[0] == rec
    assert verify(led.path, allow_open_runs=True).ok


@pytest.mark.parametrize(
    ("run_id", "kind", "data"),
    [(1, "metrics", {}), ("r", "", {}), ("r", "metrics", [1, 2])],
    ids=["int-run-id", "empty-kind", "list-data"],
)
def test_append_rejects_bad_arguments(tmp_path, run_id, kind, data):
    with pytest.raises(LedgerError):
        Ledger(tmp_path / "audit.jsonl")._append(run_id, kind, data)


def test_ledger_pickles_as_its_path(tmp_path):
    led = Ledger(tmp_path / "audit.jsonl")
    led._append("r", "x", {})
    clone = pickle.loads(pickle.dumps(led))
    assert clone.path == led.path
    assert clone._append("r", "y", {})["seq"] == 2


def test_threads_append_without_loss_or_reorder(tmp_path):
    path = tmp_path / "audit.jsonl"
    shared = Ledger(path)

    def writer(n: int) -> None:
        led = shared if n % 2 else Ledger(path)  # one shared instance and private ones
        for i in range(40):
            led._append(f"t{n}", "tick", {"i": i})

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = verify(path, allow_open_runs=True)
    assert report.ok, report.reason
    recs = records(path)
    assert [r["seq"] for r in recs] == list(range(1, 241))
    for n in range(6):
        assert [r["data"]["i"] for r in recs if r["run_id"] == f"t{n}"] == list(range(40))


def test_append_after_a_record_larger_than_the_tail_block(tmp_path):
    led = Ledger(tmp_path / "audit.jsonl")
    led._append("r", "a", {})
    big = led._append("r", "validation", {"failures": ["x" * 100] * 2000})  # ~200 KB line
    nxt = led._append("r", "b", {})
    assert nxt["prev"] == big["hash"] and nxt["seq"] == 3
    assert verify(led.path, allow_open_runs=True).ok


# ------------------------------------------------------------------------ verify: tampering


def test_verify_accepts_an_intact_ledger(sample, tmp_path, capsys):
    path = _materialize(tmp_path, *sample)
    report = verify(path, check_artifacts=False)
    assert report.ok and report.records == 12 and report.runs == 2
    assert report.first_bad_line is None and report.torn_tail is None


@settings(FIXTURES_OK, max_examples=300)
@given(data=st.data())
@example(data=None)  # the last byte of the file: its final newline
def test_verify_detects_any_changed_byte(sample, tmp_path, data):
    blob, head = sample
    if data is None:
        pos, mode, value = len(blob) - 1, "replace", ord("x")
    else:
        pos = data.draw(st.integers(0, len(blob) - 1), label="pos")
        mode = data.draw(st.sampled_from(["replace", "delete", "insert"]), label="mode")
        value = data.draw(st.integers(0, 255).filter(lambda b: b != blob[pos]), label="value")
    if mode == "replace":
        bad = blob[:pos] + bytes([value]) + blob[pos + 1 :]
    elif mode == "delete":
        bad = blob[:pos] + blob[pos + 1 :]
    else:
        bad = blob[:pos] + bytes([value]) + blob[pos:]
    report = verify(_materialize(tmp_path, bad, head), check_artifacts=False)
    assert not report.ok
    assert report.first_bad_line is not None and report.reason
    # the first bad line is the tampered one (or the one right after a merged/split line)
    line_of_pos = blob[:pos].count(b"\n") + 1
    assert line_of_pos <= report.first_bad_line <= line_of_pos + 1


def _lines(blob: bytes) -> list[bytes]:
    return blob.split(b"\n")[:-1]


def _join(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


@FIXTURES_OK
@given(st.integers(0, 11))
def test_verify_detects_a_deleted_record(sample, tmp_path, index):
    blob, head = sample
    lines = _lines(blob)
    del lines[index]
    report = verify(_materialize(tmp_path, _join(lines), head), check_artifacts=False)
    assert not report.ok
    assert "deleted" in report.reason
    assert report.first_bad_line == index + 1


def test_deleting_the_last_record_is_caught_only_by_the_head(sample, tmp_path):
    blob, head = sample
    cut = _join(_lines(blob)[:-1])
    report = verify(_materialize(tmp_path, cut, head), check_artifacts=False)
    assert not report.ok and "head" in report.reason and report.first_bad_line == 12
    # a copied ledger without its lock file: the cut checkpoint leaves an unsigned tail
    report = verify(_materialize(tmp_path, cut, None), check_artifacts=False)
    assert not report.ok and "unsigned tail" in report.reason


@FIXTURES_OK
@given(st.integers(0, 11), st.integers(0, 11))
def test_verify_detects_swapped_records(sample, tmp_path, i, j):
    if i == j:
        return
    blob, head = sample
    lines = _lines(blob)
    lines[i], lines[j] = lines[j], lines[i]
    report = verify(_materialize(tmp_path, _join(lines), head), check_artifacts=False)
    assert not report.ok
    assert "reordered" in report.reason
    assert report.first_bad_line == min(i, j) + 1


@FIXTURES_OK
@given(st.integers(0, 11), st.integers(0, 12))
def test_verify_detects_an_inserted_copy(sample, tmp_path, source, at):
    blob, head = sample
    lines = _lines(blob)
    lines.insert(at, lines[source])
    report = verify(_materialize(tmp_path, _join(lines), head), check_artifacts=False)
    assert not report.ok
    assert "inserted" in report.reason


def test_verify_detects_a_forged_record_with_a_valid_hash(sample, tmp_path):
    blob, head = sample
    lines = _lines(blob)
    prev = json.loads(lines[3])
    forged = {"seq": 5, "ts": prev["ts"], "run_id": "run-a", "kind": "metrics"}
    forged |= {"data": {"sharpe": 9.9}, "prev": prev["hash"]}
    forged["hash"] = record_hash(forged)
    lines.insert(4, canonical_json(forged).encode())
    report = verify(_materialize(tmp_path, _join(lines), head), check_artifacts=False)
    assert not report.ok and "inserted" in report.reason


def test_verify_detects_a_rehashed_edit_of_the_last_record_by_the_head(sample, tmp_path):
    blob, head = sample
    lines = _lines(blob)
    last = json.loads(lines[-1])
    last["data"]["count"] = 99
    last["hash"] = record_hash(last)
    lines[-1] = canonical_json(last).encode()
    report = verify(_materialize(tmp_path, _join(lines), head), check_artifacts=False)
    assert not report.ok and "replaced" in report.reason and report.first_bad_line == 12
    # without the lock file, the edited checkpoint's signature gives it away
    report = verify(_materialize(tmp_path, _join(lines), None), check_artifacts=False)
    assert not report.ok and "does not verify" in report.reason


def test_verify_detects_reformatted_json_with_the_same_content(sample, tmp_path):
    blob, head = sample
    lines = _lines(blob)
    lines[2] = json.dumps(json.loads(lines[2]), sort_keys=True).encode()  # spaces added
    report = verify(_materialize(tmp_path, _join(lines), head), check_artifacts=False)
    assert not report.ok and "canonical" in report.reason and report.first_bad_line == 3


# ------------------------------------------------------------------------ torn tails


def test_torn_tail_is_reported_precisely_then_recovered(sample, tmp_path):
    blob, head = sample
    half = _lines(blob)[4][:57]
    path = _materialize(tmp_path, blob + half, head)
    report = verify(path, check_artifacts=False)
    assert not report.ok and "torn final line" in report.reason
    assert report.torn_tail is not None
    assert (report.torn_tail.line, report.torn_tail.nbytes) == (13, 57)
    assert report.torn_tail.offset == len(blob)
    assert report.records == 12  # the torn line is not a record
    assert len(records(path)) == 12

    rec = Ledger(path)._append("run-c", "run_started", {})
    recs = records(path)
    assert [r["kind"] for r in recs[-2:]] == ["recovered", "run_started"]
    recovered = recs[-2]["data"]
    assert recovered == {
        "offset": len(blob),
        "bytes": 57,
        "encoding": "utf-8",
        "torn": half.decode(),
    }
    assert recs[-2]["prev"] == recs[-3]["hash"] and rec["seq"] == 14
    after = verify(path, check_artifacts=False, allow_open_runs=True)  # run-c is still open
    assert after.ok and after.torn_tail is None


def test_torn_binary_bytes_are_recovered_as_base64(tmp_path):
    led = Ledger(tmp_path / "audit.jsonl")
    led._append("r", "a", {})
    with led.path.open("ab") as f:
        f.write(b'{"data":\xff\xfe')
    led._append("r", "b", {})
    rec = records(led.path)[1]
    assert rec["kind"] == "recovered" and rec["data"]["encoding"] == "base64"
    assert rec["data"]["torn"] == "eyJkYXRhIjr//g=="
    assert verify(led.path, allow_open_runs=True).ok


def test_unparsable_final_line_with_newline_is_torn_and_recovered(tmp_path):
    led = Ledger(tmp_path / "audit.jsonl")
    led._append("r", "a", {})
    with led.path.open("ab") as f:
        f.write(b"\x00\x00\x00\n")
    report = verify(led.path)
    assert not report.ok and report.torn_tail is not None and report.torn_tail.nbytes == 4
    led._append("r", "b", {})
    assert [r["kind"] for r in records(led.path)] == ["a", "recovered", "b"]
    assert verify(led.path, allow_open_runs=True).ok


def test_a_ledger_holding_only_a_torn_line_restarts_the_chain(tmp_path):
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"data":{')
    rec = Ledger(path)._append("r", "a", {})
    first = records(path)[0]
    assert first["kind"] == "recovered" and first["prev"] == GENESIS and rec["seq"] == 2
    assert verify(path, allow_open_runs=True).ok


def test_append_refuses_to_build_on_an_edited_last_record(tmp_path):
    led = Ledger(tmp_path / "audit.jsonl")
    led._append("r", "a", {"x": 1})
    led.path.write_bytes(led.path.read_bytes().replace(b'"x":1', b'"x":2'))
    with pytest.raises(LedgerError, match="refusing to append"):
        led._append("r", "b", {})


def test_append_refuses_when_records_were_cut_from_the_end(tmp_path):
    led = Ledger(tmp_path / "audit.jsonl")
    for i in range(3):
        led._append("r", "a", {"i": i})
    led.path.write_bytes(_join(_lines(led.path.read_bytes())[:2]))
    with pytest.raises(LedgerError, match="head"):
        led._append("r", "b", {})
    assert len(records(led.path)) == 2  # nothing was written


# ------------------------------------------------------------------------ artifacts, summaries


def test_verify_reports_changed_and_missing_artifacts(tmp_path, capsys):
    led = Ledger(tmp_path / "audit.jsonl")
    write_run(led, "run-a", tmp_path)
    write_run(led, "run-b", tmp_path)
    assert verify_command(led.path) == 0
    said = capsys.readouterr().out
    assert re.fullmatch(
        r"ok: 14 records, 2 runs, chain intact, signed \(2 checkpoints, key [0-9a-f]{16}\), "
        r"2 artifacts verified\n",
        said,
    ), said

    (tmp_path / "run-a" / "equity.arrow").write_bytes(b"changed")
    (tmp_path / "run-b" / "equity.arrow").unlink()
    report = verify(led.path)
    assert not report.ok and report.reason is None  # the chain itself is intact
    assert [(a.run_id, a.line) for a in report.bad_artifacts] == [("run-a", 5), ("run-b", 12)]
    assert "digest" in report.bad_artifacts[0].problem
    assert report.bad_artifacts[1].problem == "missing"
    assert verify(led.path, check_artifacts=False).ok

    assert verify_command(led.path) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("FAILED:") and "2 of 2 artifacts" in out[0]
    assert "run-a" in out[1] and "run-b" in out[2]


def test_verify_command_names_the_first_bad_line(sample, tmp_path, capsys):
    blob, head = sample
    lines = _lines(blob)
    del lines[6]
    assert verify_command(_materialize(tmp_path, _join(lines), head)) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAILED:") and "line 7 deleted: seq 7 missing" in out


def test_runs_summarizes_status_digest_and_key_metrics(tmp_path):
    led = Ledger(tmp_path / "audit.jsonl")
    write_run(led, "run-a", tmp_path, sharpe=1.25)
    write_run(led, "run-b", tmp_path, status="failed")
    write_run(led, "run-c", tmp_path, status="running")
    led._append("", "note", {})  # records outside any run are not runs
    summary = runs(led.path)
    assert [s.run_id for s in summary] == ["run-a", "run-b", "run-c"]
    assert [s.status for s in summary] == ["finished", "failed", "running"]
    a, b, _ = summary
    assert a.metrics == {"sharpe": 1.25, "cagr": 0.05, "max_drawdown": -0.2, "total_return": 0.3}
    assert a.config_digest == _digest(canonical_json(CFG).encode())
    assert a.records == 7 and a.ended is not None  # its checkpoint included
    assert b.error == "StageError: boom" and b.metrics == {}


def test_show_command_lists_runs_and_one_runs_records(tmp_path, capsys):
    led = Ledger(tmp_path / "audit.jsonl")
    write_run(led, "20261126T073512Z-3fa9c1", tmp_path, sharpe=1.25)
    write_run(led, "20261126T080000Z-000000", tmp_path, status="failed")
    assert show_command(led.path) == 0
    out = capsys.readouterr().out
    assert "20261126T073512Z-3fa9c1" in out and "20261126T080000Z-000000" in out
    assert "finished" in out and "failed" in out and "1.25" in out
    assert _digest(canonical_json(CFG).encode())[:12] in out

    assert show_command(led.path, "20261126T0735") == 0  # a unique prefix is enough
    out = capsys.readouterr().out
    for kind in ("run_started", "dataset", "stage", "metrics", "artifact", "run_finished"):
        assert kind in out
    assert "run_failed" not in out

    with pytest.raises(LedgerError, match="no run `nope`"):
        run_records(led.path, "nope")
    with pytest.raises(LedgerError, match=r"2 runs match .*`20261126T073512Z-3fa9c1`, `2026"):
        run_records(led.path, "20261126T0")
    assert show_command(led.path, "nope") == 1
    assert "no run `nope`" in capsys.readouterr().err


@pytest.mark.parametrize("call", [records, runs, verify], ids=["records", "runs", "verify"])
def test_a_missing_ledger_is_a_clear_ledger_error(tmp_path, call):
    with pytest.raises(LedgerError, match="does not exist"):
        call(tmp_path / "nope.jsonl")


@pytest.mark.parametrize("command", ["verify", "show"])
def test_a_missing_ledger_is_one_line_from_the_cli(tmp_path, capsys, command):
    assert main(["ledger", command, "--ledger", str(tmp_path / "nope.jsonl")]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and len(err.strip().splitlines()) == 1


def test_reading_refuses_a_corrupt_middle_line(sample, tmp_path):
    blob, head = sample
    lines = _lines(blob)
    lines[3] = b"not json"
    path = _materialize(tmp_path, _join(lines), head)
    with pytest.raises(LedgerError, match="line 4"):
        records(path)
