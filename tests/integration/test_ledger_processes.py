"""The ledger under concurrent writer processes and writers killed with SIGKILL mid-append."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from qpipe.ledger import Ledger, records, runs, verify

WRITERS, APPENDS = 8, 200


def _spawn(script: str, *args: str) -> subprocess.Popen:
    # a fresh interpreter per writer: separate processes, separate open files, real flock
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


APPENDER = """
    import os, sys, time
    from qpipe.ledger import Ledger
    path, writer, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    led = Ledger(path)
    print("ready", flush=True)
    while not os.path.exists(path + ".go"):
        time.sleep(0.005)
    for i in range(n):
        led._append(writer, "tick", {"i": i, "writer": writer, "pad": "x" * 200})
"""


@pytest.mark.slow
def test_eight_processes_appending_give_one_intact_chain(tmp_path):
    path = tmp_path / "audit.jsonl"
    procs = [_spawn(APPENDER, str(path), f"w{k}", str(APPENDS)) for k in range(WRITERS)]
    for p in procs:  # wait until every writer has imported qpipe, then start them together
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    start = time.perf_counter()
    Path(f"{path}.go").touch()
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    seconds = time.perf_counter() - start

    report = verify(path, allow_open_runs=True)
    assert report.ok, report.reason
    assert report.records == WRITERS * APPENDS
    recs = records(path)
    assert [r["seq"] for r in recs] == list(range(1, WRITERS * APPENDS + 1))
    for k in range(WRITERS):
        # nothing lost, nothing reordered within a writer
        assert [r["data"]["i"] for r in recs if r["run_id"] == f"w{k}"] == list(range(APPENDS))
    print(f"\n{WRITERS} writers x {APPENDS}: {WRITERS * APPENDS / seconds:.0f} appends/s in total")


KILLED_MID_LINE = """
    import os, signal, sys
    from qpipe.ledger import Ledger, canonical_json
    led = Ledger(sys.argv[1])
    led._append("run-x", "run_started", {"config": {}})
    rec = led._append("run-x", "dataset", {"name": "prices", "digest": "a" * 64})
    line = (canonical_json(rec) + "\\n").encode()
    # a crash inside the one write: half a line reaches the file, then the process dies
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
    os.write(fd, line[: len(line) // 2])
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_writer_killed_mid_line_leaves_an_explained_recoverable_ledger(tmp_path):
    path = tmp_path / "audit.jsonl"
    p = _spawn(KILLED_MID_LINE, str(path))
    _, err = p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL, err
    whole = path.read_bytes()
    torn = whole[whole.rindex(b"\n") + 1 :]
    assert torn  # the half line is there

    report = verify(path, allow_open_runs=True)
    assert not report.ok
    assert report.reason is not None and "torn final line" in report.reason
    assert report.torn_tail is not None
    assert (report.torn_tail.line, report.torn_tail.nbytes) == (3, len(torn))
    assert report.records == 2
    assert [s.status for s in runs(path)] == ["running"]  # killed before it could say

    # the next run appends as usual; the torn bytes move into a `recovered` record
    led = Ledger(path)
    led._append("run-y", "run_started", {"config": {}})
    led._append("run-y", "run_finished", {"seconds": 0.1, "out_dir": "x"})
    after = verify(path, allow_open_runs=True)
    assert after.ok, after.reason
    kinds = [r["kind"] for r in records(path)]
    assert kinds == ["run_started", "dataset", "recovered", "run_started", "run_finished"]
    recovered = records(path)[2]["data"]
    assert recovered["torn"].encode() == torn and recovered["bytes"] == len(torn)


LOOPING_WRITER = """
    import sys
    from qpipe.ledger import Ledger
    led = Ledger(sys.argv[1])
    big = "y" * (1 << 20)  # 1 MB records: a kill lands inside a write now and then (~1 in 8)
    i = 0
    while True:
        led._append("run-z", "validation", {"i": i, "failures": [big]})
        print(i, flush=True)
        i += 1
"""


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2], ids=["at-once", "50ms", "200ms"])
def test_a_writer_killed_while_appending_in_a_loop(tmp_path, delay):
    path = tmp_path / "audit.jsonl"
    p = _spawn(LOOPING_WRITER, str(path))
    assert p.stdout is not None
    p.stdout.readline()  # at least one record is whole
    time.sleep(delay)
    os.kill(p.pid, signal.SIGKILL)
    p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL

    report = verify(path, allow_open_runs=True)
    # either the kill fell between appends (intact) or it tore the last line (explained)
    assert report.ok or (report.torn_tail is not None and "torn final line" in report.reason)
    before = report.records
    assert before >= 1

    # the killed writer held the lock: the kernel released it, so this append cannot hang
    Ledger(path)._append("run-next", "run_started", {})
    after = verify(path, allow_open_runs=True)
    assert after.ok, after.reason
    expected = before + 1 + (report.torn_tail is not None)
    assert after.records == expected
    assert [r["seq"] for r in records(path)] == list(range(1, expected + 1))
