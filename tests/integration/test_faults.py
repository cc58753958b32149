"""Faults: runs killed with SIGKILL at chosen points, a full disk, a read-only runs folder, and
two runs at once.

Each kill runs ``runner.py`` in a real subprocess through ``tests/integration/_kill_at.py``,
which wraps one qpipe function *in the child only* so that reaching it kills the process. After
every kill: no file under a final name is partial (only ``.tmp`` files and the store's staging
folder may hold leftovers), every store entry still hashes to its name, ``ledger verify`` passes
or reports the torn last line exactly, and the next run succeeds and leaves a verified ledger.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pyarrow.ipc as ipc
import pytest

from qpipe._fs import file_digest
from qpipe.cli import main, runner_main
from qpipe.ledger import records, runs, verify
from tests.conftest import FAST_SETS, REPO, SMALL_BUILTIN_SETS, random_walk_prices

KILLER = REPO / "tests" / "integration" / "_kill_at.py"
FAST = [
    *FAST_SETS,
    "--quiet",
]
CHILD_ENV = {**os.environ, "POLARS_MAX_THREADS": "1", "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def prices_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fault_inputs") / "prices.csv"
    random_walk_prices().write_csv(path)
    return path


def run_killed(spec: dict, argv: list[str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, str(KILLER), json.dumps(spec), "--", *argv],
        capture_output=True,
        text=True,
        timeout=180,
        env=CHILD_ENV,
    )
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-2000:])
    return proc


def assert_nothing_partial(out: Path) -> None:
    """Every file under a final name is whole; every store entry matches its digest."""
    store = out / "store"
    entries = {p.stem for p in store.glob("??/*.arrow")}
    for p in store.glob("??/*.arrow"):
        assert file_digest(p) == p.stem, f"store entry {p} does not match its digest"
    for p in sorted(out.rglob("*")):
        if not p.is_file() or p.name.endswith(".tmp") or p.name.startswith("audit.jsonl"):
            continue
        rel = p.relative_to(out)
        if rel.parts[0] == "store":
            continue  # entries checked above; staging (store/tmp) and index are not outputs
        if p.suffix == ".arrow":
            ipc.open_file(p).read_all()  # a complete Arrow IPC file (footer included)
            if p.name in ("equity.arrow", "weights.arrow", "trades.arrow"):
                assert file_digest(p) in entries, f"{rel} is not a stored dataset"
        elif p.name == "metrics.json":
            json.loads(p.read_text())
        elif p.name == "config.toml":
            tomllib.loads(p.read_text())
        elif p.name == "report.html":
            assert p.read_text().rstrip().endswith("</html>"), f"{rel} is truncated"


def assert_next_run_succeeds(out: Path, prices_csv: Path, capsys) -> None:
    assert runner_main(["--data", str(prices_csv), "--out", str(out), *FAST]) == 0
    assert main(["ledger", "verify", "--out", str(out)]) == 0
    capsys.readouterr()
    assert [r["kind"] for r in records(out / "audit.jsonl")[-2:]] == ["run_finished", "checkpoint"]
    assert_nothing_partial(out)


# (id, kill spec, the last ledger record kind when the kill lands, files the killed run has)
KILL_POINTS = [
    ("ingestion", {"kill": "qpipe.store.arrow:file_digest", "nth": 1}, "run_started"),
    ("stage", {"kill": "qpipe.store.arrow:file_digest", "nth": 2}, "validation"),
    # the audit ends with its allocation_audit record and its tier2 validation record
    ("backtest", {"kill": "qpipe.store.arrow:file_digest", "nth": 5}, "validation"),
    ("report", {"arm": "qpipe.views:render_run_page", "kill": "os:replace", "nth": 1}, "artifact"),
]


@pytest.mark.parametrize(
    ("spec", "last_kind"), [p[1:] for p in KILL_POINTS], ids=[p[0] for p in KILL_POINTS]
)
def test_a_run_killed_mid_write_leaves_nothing_partial(
    tmp_path, prices_csv, capsys, spec, last_kind
):
    out = tmp_path / "runs"
    run_killed(spec, ["--data", str(prices_csv), "--out", str(out), *FAST])
    recs = records(out / "audit.jsonl")
    assert recs[-1]["kind"] == last_kind  # the kill landed where this case says
    run_id = recs[0]["run_id"]
    leftovers = [p for p in out.rglob("*.tmp")] + list((out / "store" / "tmp").glob("*"))
    assert leftovers, "the kill should land inside a write"
    assert_nothing_partial(out)
    if last_kind == "artifact":
        assert not (out / run_id / "report.html").exists()
        assert list((out / run_id).glob(".report.html.*.tmp"))
    # the killed run never signed its records: an unsigned tail, which qpipe journaled
    assert main(["ledger", "verify", "--out", str(out)]) == 1
    assert "unsigned tail" in capsys.readouterr().out
    assert main(["ledger", "verify", "--allow-open-runs", "--out", str(out)]) == 0
    assert "ok:" in capsys.readouterr().out
    assert_next_run_succeeds(out, prices_csv, capsys)
    statuses = {s.run_id: s.status for s in runs(out / "audit.jsonl")}
    assert statuses[run_id] == "running"  # killed before it could say


def test_a_run_killed_mid_ledger_append_leaves_a_torn_line_that_is_recovered(
    tmp_path, prices_csv, capsys
):
    out = tmp_path / "runs"
    ledger = out / "audit.jsonl"
    spec = {
        "arm": "qpipe.ledger:Ledger._write",
        "arm_nth": 4,
        "kill": "os:write",
        "mode": "half_write",
    }
    run_killed(spec, ["--data", str(prices_csv), "--out", str(out), *FAST])
    raw = ledger.read_bytes()
    torn = raw[raw.rindex(b"\n") + 1 :]
    assert torn.startswith(b"{") and not raw.endswith(b"\n")
    report = verify(ledger)
    assert not report.ok and report.torn_tail is not None
    assert (report.torn_tail.line, report.torn_tail.nbytes) == (4, len(torn))
    assert report.records == 3
    assert main(["ledger", "verify", "--out", str(out)]) == 1
    said = capsys.readouterr().out
    assert "torn final line" in said and "line 4" in said
    assert_nothing_partial(out)
    assert_next_run_succeeds(out, prices_csv, capsys)
    recovered = [r for r in records(ledger) if r["kind"] == "recovered"]
    assert len(recovered) == 1 and recovered[0]["data"]["bytes"] == len(torn)


# ------------------------------------------------------------------------- disk full, read-only


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here (needs root and mount rights): {exc}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def test_disk_full_fails_with_a_clear_error_and_nothing_half_written(tmp_path, capsys):
    """The runs folder on a 192 KB file system: a stage output does not fit."""
    with tmpfs(tmp_path / "small", "192k") as small:
        out = small / "runs"
        ledger = tmp_path / "audit.jsonl"  # elsewhere, so the failure can be recorded
        code = runner_main(
            [
                *SMALL_BUILTIN_SETS,
                "--out",
                str(out),
                "--ledger",
                str(ledger),
                "--quiet",
            ]
        )
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert code == 1, err
        assert err.startswith("qpipe: error:") and "no space left on device" in err.lower()
        last = [r for r in records(ledger) if r["kind"] != "checkpoint"][-1]
        assert last["kind"] == "run_failed" and last["data"]["error"] == "StoreError"
        assert not list(out.rglob("*.tmp")), "a failed write left its temp file"
        assert_nothing_partial(out)
        # the full disk may refuse the checkpoint line too: the run is then an open, journaled tail
        assert verify(ledger, check_artifacts=False, allow_open_runs=True).ok


def test_read_only_runs_folder_fails_with_a_clear_error(tmp_path, prices_csv, capsys):
    with tmpfs(tmp_path / "ro", "16m") as ro:
        out = ro / "runs"
        assert runner_main(["--data", str(prices_csv), "--out", str(out), *FAST]) == 0
        capsys.readouterr()
        before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True, capture_output=True)
        code = runner_main(["--data", str(prices_csv), "--out", str(out), *FAST])
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert code == 1, err
        assert err.startswith("qpipe: error:") and "read-only file system" in err.lower()
        assert str(out) in err
        after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
        assert after == before


# ------------------------------------------------------------------------- concurrency


def test_two_runs_at_once_share_the_runs_folder_and_ledger(tmp_path, prices_csv):
    out = tmp_path / "runs"
    argv = [sys.executable, str(REPO / "runner.py"), "--data", str(prices_csv), "--out", str(out)]
    procs = [
        subprocess.Popen(
            [*argv, *FAST, "--set", f"backtest.cost_bps={c}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=CHILD_ENV,
        )
        for c in (5, 20)
    ]
    results = [p.communicate(timeout=180) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
    report = verify(out / "audit.jsonl")
    assert report.ok, report.reason
    recs = records(out / "audit.jsonl")
    finished = [r for r in recs if r["kind"] == "run_finished"]
    assert len(finished) == 2 and len({r["run_id"] for r in finished}) == 2
    for rec in finished:
        names = {p.name for p in (out / rec["run_id"]).iterdir()}
        assert {
            "equity.arrow",
            "weights.arrow",
            "trades.arrow",
            "metrics.json",
            "report.html",
        } <= names
    assert_nothing_partial(out)


def _argv(prices_csv: Path, out: Path) -> list[str]:
    return ["--data", str(prices_csv), "--out", str(out), *FAST]


def test_ctrl_c_mid_run_is_recorded_as_failed_and_exits_130(tmp_path, prices_csv, capsys):
    out = tmp_path / "runs"
    spec = {"kill": "qpipe.engines.local:run_step", "nth": 2, "signal": "SIGINT"}
    proc = subprocess.run(
        [sys.executable, str(KILLER), json.dumps(spec), "--", *_argv(prices_csv, out)],
        capture_output=True,
        text=True,
        timeout=180,
        env=CHILD_ENV,
    )
    assert proc.returncode == 130, proc.stderr[-2000:]
    last_line = proc.stderr.strip().splitlines()[-1]
    assert last_line.startswith("qpipe: error: interrupted") and "Traceback" not in proc.stderr
    *_, last, checkpoint = records(out / "audit.jsonl")
    assert last["kind"] == "run_failed" and last["data"]["error"] == "KeyboardInterrupt"
    assert checkpoint["kind"] == "checkpoint"
    assert main(["ledger", "verify", "--out", str(out)]) == 0
    assert_nothing_partial(out)
    assert_next_run_succeeds(out, prices_csv, capsys)
