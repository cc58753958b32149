"""A reader that closes the pipe (``runner.py | head -1``) costs output, never the work."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from qpipe.cli._pipes import PipeSafe
from tests.conftest import REPO, SMALL_BUILTIN_SETS


def test_writes_after_the_reader_left_are_dropped_and_the_fd_goes_to_devnull() -> None:
    read, write = os.pipe()
    stream = os.fdopen(write, "w", buffering=1)
    safe = PipeSafe(stream)
    safe.write("seen\n")
    assert os.read(read, 100) == b"seen\n"
    os.close(read)  # the reader goes away
    assert safe.write("lost\n") == len("lost\n")
    safe.flush()
    assert safe.broken
    assert os.path.realpath(f"/proc/self/fd/{stream.fileno()}") == os.devnull
    stream.close()


def test_a_run_piped_into_a_closed_reader_finishes_and_exits_zero(tmp_path) -> None:
    """Both streams closed before the run ends: rich's SystemExit(1) and the BrokenPipeError
    used to fail the run (exit 3, or `run_failed` in the ledger)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, str(REPO / "runner.py"), "--out", str(tmp_path), *SMALL_BUILTIN_SETS]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    assert proc.stdout is not None
    proc.stdout.readline()  # like `| head -1`
    proc.stdout.close()
    assert proc.wait(timeout=300) == 0
    kinds = [json.loads(line)["kind"] for line in (tmp_path / "audit.jsonl").open()]
    assert "run_finished" in kinds and "run_failed" not in kinds
