"""``python -m qpipe stats SWEEP_ID``: the honest N from real sweeps in the ledger."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from qpipe.cli import main, runner_main
from qpipe.research.sweep_stats import sweep_stats
from tests.conftest import sets

DATA = sets(
    "data.symbols=20",
    'data.start="2019-01-01"',
    'data.end="2020-12-31"',
    "strategy.skip=2",
)


def records(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "audit.jsonl").read_text().splitlines()]


def sweep(out: Path, *flags: str) -> str:
    assert runner_main([*DATA, *flags, "--out", str(out), "--quiet"]) in (0, 1)
    return [r for r in records(out) if r["kind"] == "sweep_started"][-1]["run_id"]


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    out = tmp_path_factory.mktemp("stats")
    a = sweep(out, "--sweep", "strategy.lookback=20,40", "--sweep", "allocation.top_n=3,6")
    # same data and keys: counts; top_n = 50 > 20 symbols fails, and still counts
    b = sweep(out, "--sweep", "strategy.lookback=60", "--sweep", "allocation.top_n=3,50")
    # other grid keys: another family
    c = sweep(out, "--set", "allocation.top_n=3", "--sweep", "strategy.lookback=30,50")
    return out, a, b, c


def summary(out: Path, sweep_id: str) -> pl.DataFrame:
    return pl.read_ipc(out / "sweeps" / sweep_id / "summary.arrow")


def test_ledger_n_counts_every_trial_of_the_family_failed_ones_included(ledger):
    out, a, b, _ = ledger
    stats = sweep_stats(a, out=out)
    assert [s.sweep_id for s in stats.count.sweeps] == [a, b]
    assert stats.values["n_trials"] == 4 + 2
    assert [s.n_ok for s in stats.count.sweeps] == [4, 1]
    # V: the per-period Sharpe ratios of the five finished trials of both sweeps
    both = pl.concat([summary(out, a), summary(out, b)], how="diagonal_relaxed")
    ok = both.filter(pl.col("status") == "ok")["sharpe"].to_numpy() / math.sqrt(252)
    assert stats.values["sr_variance"] == pytest.approx(np.var(ok, ddof=1), rel=1e-12)
    # SR: the re-run best trial equals its summary row
    best = summary(out, a).sort("sharpe", descending=True).row(0, named=True)
    assert stats.trial == best["trial"]
    assert stats.values["sr"] == pytest.approx(best["sharpe"] / math.sqrt(252), rel=1e-12)
    rec = [r for r in records(out) if r["kind"] == "trial_stats"][-1]["data"]
    assert rec["sweeps_counted"] == [s.to_dict() for s in stats.count.sweeps]
    assert rec["n_trials"] == 6 and rec["trials_from"] == "ledger"
    assert stats.page is not None and "Deflated Sharpe ratio" in stats.page.read_text()


def test_trials_from_sweep_and_a_number(ledger):
    out, a, _, c = ledger
    assert sweep_stats(a, out=out, trials_from="sweep").values["n_trials"] == 4
    given = sweep_stats(a, out=out, trials_from=500)
    assert given.values["n_trials"] == 500 and given.count.trials_from == "500"
    assert [s.sweep_id for s in sweep_stats(c, out=out).count.sweeps] == [c]


def test_stats_command_prints_the_verdict(ledger, capsys):
    out, a, _, _ = ledger
    assert main(["stats", a, "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("DSR ") and "with N = 6 trials: " in line and "at 95%" in line
    assert main(["stats", a, "--out", str(out), "--trials-from", "one"]) == 1
    assert "`--trials-from` must be" in capsys.readouterr().err
    assert main(["stats", "nope", "--out", str(out)]) == 1
    assert "sweep `nope` is not in the ledger" in capsys.readouterr().err


def test_bad_input_is_one_line_and_recorded_in_the_ledger(ledger, capsys):
    """N < 2 for the DSR (`--trials-from 1`), and a sweep that is not there: one error line
    naming the parameter and its limit, and a `trial_stats_failed` record with that line."""
    from qpipe.ledger import iter_records

    out, a, _, _ = ledger
    cases = [(["--trials-from", "1"], a, "`--trials-from` must be >= 2 trials"),
             ([], "nope", "sweep `nope` is not in the ledger")]  # fmt: skip
    for flags, sweep, words in cases:
        assert main(["stats", sweep, "--out", str(out), *flags]) == 1
        errors = [x for x in capsys.readouterr().err.splitlines() if x.startswith("qpipe: error")]
        assert len(errors) == 1 and words in errors[0]
        last = [r for r in iter_records(out / "audit.jsonl") if r["kind"] == "trial_stats_failed"]
        assert last[-1]["data"]["sweep_id"] == sweep and words in last[-1]["data"]["message"]
