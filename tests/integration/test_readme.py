"""Every command in the README runs exactly as written (issue 14, "Examples that run").

The ``bash`` blocks of README.md are read at collection time; every line that starts with
``python `` becomes one test case, run in README order in one scratch folder that holds the
repository's ``examples/`` and ``configs/`` (so relative paths resolve as they do for a user in a
checkout) and collects ``runs/``. ``RUN_ID`` is a finished run (one on the example prices, the
cheapest to replay); ``[RUN_ID]`` is optional and left out. The README's Python block runs too.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

README = REPO / "README.md"


def readme_blocks(language: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def readme_commands() -> list[str]:
    commands = []
    for block in readme_blocks("bash"):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("python "):
                commands.append(line)
    return commands


COMMANDS = readme_commands()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("readme")
    for name in ("examples", "configs"):
        (root / name).symlink_to(REPO / name)
    return root


def small_finished_run(root: Path) -> str:
    """The last finished run on the example prices (the cheapest to replay), else the last."""
    lines = (root / "runs" / "audit.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    finished = [r["run_id"] for r in records if r["kind"] == "run_finished"]
    on_examples = {
        r["run_id"]
        for r in records
        if r["kind"] == "dataset" and "examples" in str(r["data"].get("source", ""))
    }
    return next((run for run in reversed(finished) if run in on_examples), finished[-1])


def argv_of(command: str, root: Path) -> list[str]:
    command = command.replace("[RUN_ID]", "")
    if "RUN_ID" in command:
        command = command.replace("RUN_ID", small_finished_run(root))
    if "SWEEP_ID" in command:  # the last sweep the README ran
        command = command.replace("SWEEP_ID", sorted((root / "runs" / "sweeps").iterdir())[-1].name)
    words = shlex.split(command)
    assert words[0] == "python"
    if words[1] == "runner.py":
        return [sys.executable, str(REPO / "runner.py"), *words[2:]]
    return [sys.executable, *words[1:]]


def marks(command: str) -> list[pytest.MarkDecorator]:
    if "--engine ray" in command:
        return [pytest.mark.ray, pytest.mark.slow]
    if "mlflow" in command:
        return [pytest.mark.mlflow, pytest.mark.slow]
    return [pytest.mark.slow]


def test_the_readme_has_the_examples_it_promises():
    assert any("examples/prices.csv" in c for c in COMMANDS)
    assert any("examples/weights.csv" in c for c in COMMANDS)
    for command in COMMANDS:
        for word in shlex.split(command):
            if word.startswith(("examples/", "configs/")):
                assert (REPO / word).exists(), f"{word} in the README does not exist"


@pytest.mark.parametrize("command", [pytest.param(c, marks=marks(c), id=c[:70]) for c in COMMANDS])
def test_readme_command_runs_as_written(workdir, command):
    if "--engine ray" in command:
        pytest.importorskip("ray")
    done = subprocess.run(
        argv_of(command, workdir),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"


@pytest.mark.slow
def test_readme_python_block_runs(workdir):
    (block,) = readme_blocks("python")
    done = subprocess.run(
        [sys.executable, "-c", block],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
