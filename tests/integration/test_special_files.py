"""A FIFO or character device as ``--data``, ``--benchmark``, ``--weights`` or ``--config`` fails at
once with one line (issue 15, defect 7); before, opening or hashing it blocked forever.

Each case runs ``runner.py`` in a subprocess with a timeout, so a regression fails instead of
hanging the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FAST_SETS, REPO, random_walk_prices


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("special")
    prices = root / "prices.csv"
    random_walk_prices().write_csv(prices)
    fifo = root / "pipe.csv"
    os.mkfifo(fifo)
    fifo_toml = root / "pipe.toml"
    os.mkfifo(fifo_toml)
    return {"root": root, "prices": prices, "fifo": fifo, "fifo_toml": fifo_toml}


def run(argv: list[str], root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "runner.py"), *argv, "--out", str(root / "runs")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


CASES = {
    "data-fifo": (["--data", "{fifo}"], "FIFO"),
    "data-device": (["--data", "/dev/zero"], "character device"),
    "benchmark-fifo": (["--data", "{prices}", "--benchmark", "{fifo}"], "FIFO"),
    "weights-fifo": (["--data", "{prices}", "--weights", "{fifo}"], "FIFO"),
    "config-fifo": (["--config", "{fifo_toml}"], "FIFO"),
    "config-device": (["--config", "/dev/zero"], "character device"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_special_file_fails_at_once_with_one_line(inputs, case):
    argv, fragment = CASES[case]
    argv = [a.format(**inputs) for a in argv]
    done = run([*argv, *FAST_SETS, "--no-report", "--quiet"], inputs["root"])
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1 and lines[0].startswith("qpipe: error: "), done.stderr
    assert fragment in lines[0] and "not a regular file" in lines[0]
