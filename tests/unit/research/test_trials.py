"""The honest N: which sweeps' trials count, and the statistics and verdict built on it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qpipe.errors import ResearchError
from qpipe.research.trials import count_trials, parse_trials_from, trial_statistics, verdict
from qpipe.stats import deflated_sharpe, expected_max_sharpe, sharpe_moments


def started(sweep, data="d1", keys=("strategy.lookback", "allocation.top_n"), grid="g", cfg="c"):
    grid_axes = [[k, [1, 2]] for k in keys]
    return {
        "run_id": sweep,
        "kind": "sweep_started",
        "data": {"data_digest": data, "grid": grid_axes, "grid_digest": grid, "config_digest": cfg},
    }


def chunk(sweep, index, n, ok, path=None):
    data = {"chunk": index, "n_trials": n, "n_ok": ok, "path": path or f"/{sweep}/{index}.arrow"}
    return {"run_id": sweep, "kind": "sweep_chunk", "data": data}


LEDGER = [
    started("A"),
    chunk("A", 0, 40, 38),
    chunk("A", 1, 20, 20),
    started("B", grid="g2"),  # same data and keys, another grid: counts
    chunk("B", 0, 30, 25),
    started("C", data="d2"),  # other data: not counted
    chunk("C", 0, 99, 99),
    started("D", keys=("strategy.lookback",), grid="g3"),  # other family: not counted
    chunk("D", 0, 77, 77),
    started("E"),  # a repeat of A (same grid, config, data): the same trials, counted once
    chunk("E", 0, 60, 60),
    started("F", grid="g4"),  # resumed: chunk 0 recorded twice counts once
    chunk("F", 0, 10, 9),
    chunk("F", 0, 10, 9),
    chunk("F", 1, 5, 0),  # failed trials count
    started("G", grid="g5"),  # started but no chunk yet: nothing to count
]


def test_ledger_counts_the_family_across_sweeps():
    count = count_trials(LEDGER, "A")
    assert [s.sweep_id for s in count.sweeps] == ["A", "B", "F"]
    assert [s.n_trials for s in count.sweeps] == [60, 30, 15]
    assert count.n_trials == 105
    assert count.sweeps[2].n_ok == 9
    assert count.sweeps[0].chunk_paths == ("/A/0.arrow", "/A/1.arrow")
    assert [s.to_dict()["sweep_id"] for s in count.sweeps] == ["A", "B", "F"]


def test_sweep_and_given_counts():
    assert count_trials(LEDGER, "B", "sweep").n_trials == 30
    given = count_trials(LEDGER, "B", 500)
    assert given.n_trials == 500 and given.trials_from == "500"
    assert [s.sweep_id for s in given.sweeps] == ["B"]  # V still from the sweep's own trials
    with pytest.raises(ResearchError, match="sweep `Z` is not in the ledger"):
        count_trials(LEDGER, "Z")


@pytest.mark.parametrize(
    ("raw", "want"), [("ledger", "ledger"), ("sweep", "sweep"), ("240", 240), (12, 12)]
)
def test_parse_trials_from(raw, want):
    assert parse_trials_from(raw) == want


@pytest.mark.parametrize("raw", ["all", "1", "-3", 1, True, ""])
def test_parse_trials_from_refuses(raw):
    with pytest.raises(ResearchError, match="`--trials-from`"):
        parse_trials_from(raw)


def test_trial_statistics_against_the_formulas():
    rng = np.random.default_rng(5)
    best = rng.standard_t(5, 1260) * 0.01 + 0.0008
    sharpes = rng.normal(0.02, 0.03, 240)
    got = trial_statistics(best, sharpes, 240)
    sr, g3, g4, t = sharpe_moments(best)
    v = np.var(sharpes, ddof=1)
    assert got["sr"] == sr and got["n_obs"] == t == 1260
    assert got["sr_variance"] == pytest.approx(v)
    assert got["sr0"] == pytest.approx(expected_max_sharpe(240, v))
    assert got["dsr"] == pytest.approx(deflated_sharpe(sr, 240, v, t, g3, g4))
    assert got["dsr"] <= got["psr0"]
    # at T = MinTRL the PSR against SR0 reaches 95 %
    term = 1 - g3 * sr + (g4 - 1) / 4 * sr**2
    z = (sr - got["sr0"]) * math.sqrt(got["min_trl"] - 1) / math.sqrt(term)
    assert 0.5 * math.erfc(-z / math.sqrt(2)) == pytest.approx(0.95, abs=1e-9)


def test_verdict_line():
    assert verdict({"dsr": 0.41, "n_trials": 240, "min_trl": math.inf, "n_obs": 1000}) == (
        "DSR 0.41 with N = 240 trials: not significant at 95%"
    )
    line = verdict({"dsr": 0.7, "n_trials": 10, "min_trl": 1500.2, "n_obs": 1000})
    need = "(needs ~1501 observations, has 1000)"
    assert line == f"DSR 0.70 with N = 10 trials: not significant at 95% {need}"
    assert verdict({"dsr": 0.97, "n_trials": 10, "min_trl": 800.0, "n_obs": 1000}).endswith(
        "significant at 95%"
    )


def test_trial_statistics_needs_two_finished_trials():
    with pytest.raises(ResearchError, match=">= 2 finished trials"):
        trial_statistics(np.ones(10) * 0.01 + np.arange(10) * 1e-4, [0.1, np.nan], 5)


def study(sid, method="walk_forward", data="d1", grid=None, cfg="c", full="f"):
    grid = grid if grid is not None else {"allocation.top_n": [1, 2], "strategy.lookback": [1, 2]}
    data_ = {"method": method, "data_digest": data, "grid": grid, "config_digest": full,
             "results_config_digest": cfg}  # fmt: skip
    return {"run_id": sid, "kind": "research_started", "data": data_}


def finished(sid):
    return {"run_id": sid, "kind": "research_finished", "data": {}}


def test_a_study_counts_the_family_and_itself_once_per_grid_and_config():
    from qpipe.research.trials import count_study_trials, grid_key

    # sweep A's grid, whatever the key order, on config c: the study's sets are A's trials
    assert grid_key([["strategy.lookback", [1, 2]], ["allocation.top_n", [1, 2]]]) == grid_key(
        {"allocation.top_n": [1, 2], "strategy.lookback": [1, 2]}
    )
    ledger = [*LEDGER, study("W1"), finished("W1"), study("W2")]
    count = count_study_trials(ledger, "W2", n_ok=3)
    assert [s.sweep_id for s in count.sweeps] == ["A", "B", "F"]  # W1 and W2 are A's trials
    assert count.n_trials == 105
    other = {"allocation.top_n": [1, 2, 3], "strategy.lookback": [5]}
    ledger = [*LEDGER, study("W1", grid=other), finished("W1"), study("X", grid=other, cfg="c2"),
              study("W2", method="cpcv", grid=other)]  # fmt: skip
    count = count_study_trials(ledger, "W2", n_ok=2)
    # the current study first (3 sets, 2 finished); W1 is the same grid and config: once;
    # X never finished: it tried nothing that counts
    assert [(s.sweep_id, s.kind, s.n_trials, s.n_ok) for s in count.sweeps[3:]] == [
        ("W2", "cpcv", 3, 2)
    ]
    assert count.n_trials == 105 + 3
    assert count.sweeps[3].to_dict() == {"sweep_id": "W2", "n_trials": 3, "n_ok": 2,
                                         "kind": "cpcv"}  # fmt: skip
    lone = count_study_trials([study("S", data="d9")], "S")
    assert [(s.sweep_id, s.n_trials) for s in lone.sweeps] == [("S", 4)]
    with pytest.raises(ResearchError, match="study `Z` is not in the ledger"):
        count_study_trials(ledger, "Z")
