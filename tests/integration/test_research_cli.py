"""runner.py --walk-forward / --cpcv and the [research] section: output, folders, errors."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from qpipe.cli import runner_main
from tests.conftest import sets

DATA = sets(
    "data.symbols=20",
    'data.start="2019-01-01"',
    'data.end="2020-12-31"',
    "strategy.lookback=20",
    "strategy.skip=2",
    "allocation.top_n=3",
)
SMALL = [*DATA, "--sweep", "strategy.lookback=20,40", "--sweep", "allocation.top_n=3,6"]


def records(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "audit.jsonl").read_text().splitlines()]


def test_walk_forward_flag_prints_the_folds_and_writes_the_run(tmp_path, capsys):
    code = runner_main([*SMALL, "--walk-forward", "train=126,test=42", "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "walk-forward" in out and "OOS sharpe" in out and "out-of-sample" in out
    finished = [r for r in records(tmp_path) if r["kind"] == "research_finished"]
    assert len(finished) == 1
    run_dir = Path(finished[0]["data"]["out_dir"])
    folds = pl.read_ipc(run_dir / "folds.arrow")
    assert folds.height == len(finished[0]["data"]["splits"]["folds"]) >= 5
    assert (run_dir / "research.html").exists() and (run_dir / "equity.arrow").exists()
    (verdict,) = [x for x in out.splitlines() if x.startswith("DSR ")]
    assert " with N = 4 trials: " in verdict  # the grid's 4 sets, no sweep in this ledger
    assert finished[0]["data"]["result"]["stats"]["verdict"] == verdict
    report = (run_dir / "report.html").read_text(encoding="utf-8")
    assert verdict in report and '<section id="folds">' in report


def test_cpcv_prints_the_verdict_and_counts_the_sweep_before_it(tmp_path, capsys):
    """A sweep of another grid of the same family, then a CPCV: N counts both."""
    sweep = ["--sweep", "strategy.lookback=20,30,50"]
    assert runner_main([*DATA, *sweep, "--out", str(tmp_path)]) == 0
    sweep_out = capsys.readouterr().out
    assert any(x.startswith("DSR ") and "N = 3 trials" in x for x in sweep_out.splitlines())
    code = runner_main([*DATA, "--sweep", "strategy.lookback=20,40", "--cpcv", "groups=4,test=2",
                        "--out", str(tmp_path)])  # fmt: skip
    assert code == 0
    (verdict,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("DSR ")]
    assert " with N = 5 trials: " in verdict
    for chunk in (tmp_path / "sweeps").glob("*/chunks/*"):
        chunk.unlink()  # the counted sweep's trials can no longer be read: no V, no DSR
    code = runner_main([*DATA, "--sweep", "strategy.lookback=20,60", "--cpcv", "groups=4,test=2",
                        "--out", str(tmp_path)])  # fmt: skip
    assert code == 0  # the study itself is fine
    lines = capsys.readouterr().out.splitlines()
    assert [x for x in lines if x.startswith("DSR not computed: sweep chunk file")]


def test_cpcv_from_the_research_section(tmp_path, capsys):
    argv = [*SMALL, *sets('research.method="cpcv"', "research.groups=4"), "--quiet"]
    code = runner_main([*argv, "--out", str(tmp_path)])
    assert code == 0
    folder = Path(capsys.readouterr().out.strip())
    assert (folder / "paths.arrow").exists()
    assert pl.read_ipc(folder / "paths.arrow").height == 3  # C(3, 1) paths for 4 groups, k = 2
    started = next(r for r in records(tmp_path) if r["kind"] == "research_started")
    assert started["data"]["params"] == {"groups": 4, "test_groups": 2, "purge": None, "embargo": 0}


@pytest.mark.parametrize(
    ("flags", "words", "recorded"),
    [
        (["--walk-forward", "train=126"], "needs `test=`", False),
        (["--walk-forward", "train=126,test=4.5"], "`test` must be int", False),
        (["--walk-forward", "train=126,tset=4"], "`tset=4` is not `key=value` with a key among",
         False),
        (["--cpcv", "groups=6,test=2", "--walk-forward", "train=1,test=1"], "not both", False),
        (["--walk-forward", "train=900,test=126"], "longer than the data", True),
        (["--walk-forward", "train=126,test=10"], "shorter than one rebalance period", True),
        (["--walk-forward", "train=126,test=42,purge=126"],
         "`purge` (126 trading days) must be < `train` (126)", True),
        (["--cpcv", "groups=6,test=6"], "`n_test_groups` (6) must be < `n_groups` (6)", True),
    ],
)  # fmt: skip
def test_bad_research_flags_are_one_line_errors(tmp_path, capsys, flags, words, recorded):
    """One error line naming the parameter and its limit; the issue's bad inputs (windows,
    test window, purge, groups) reach the study and are recorded as `research_failed` with the
    same line; a malformed flag never starts one."""
    assert runner_main([*SMALL, *flags, "--out", str(tmp_path)]) == 1
    errors = [x for x in capsys.readouterr().err.splitlines() if x.startswith("qpipe: error: ")]
    assert len(errors) == 1 and words in errors[0]
    kept = records(tmp_path) if (tmp_path / "audit.jsonl").exists() else []
    failed = [r for r in kept if r["kind"] == "research_failed"]
    assert len(failed) == int(recorded)
    if recorded:
        assert words in failed[0]["data"]["message"]
