"""CPCV over a returns matrix: split Sharpes, choices and paths against loops written here."""

from __future__ import annotations

import datetime as dt
import itertools
import math

import numpy as np
import pytest

from qpipe.errors import ResearchError
from qpipe.research import combinatorial_purged, walk_forward
from qpipe.research.cpcv import annualised_sharpe, evaluate_cpcv


def days(n):
    out, d = [], dt.date(2021, 1, 4)
    while len(out) < n:
        if d.weekday() < 5:
            out.append(d)
        d += dt.timedelta(days=1)
    return out


def sharpe(x):
    x = list(x)
    m = sum(x) / len(x)
    sd = math.sqrt(sum((v - m) ** 2 for v in x) / (len(x) - 1))
    return m / sd * math.sqrt(252)


@pytest.mark.parametrize(("n_groups", "k", "purge", "embargo"), [(6, 2, 5, 2), (5, 3, 0, 0)])
def test_cpcv_matches_loops(n_groups, k, purge, embargo):
    rng = np.random.default_rng(n_groups * 10 + k)
    n, n_sets = 240, 5
    r = rng.normal(0.0004, 0.01, (n, n_sets))
    dates = days(n)
    sets = [{"allocation.top_n": 5 + j} for j in range(n_sets)]
    s = combinatorial_purged(dates, n_groups, k, purge, embargo)
    res = evaluate_cpcv(r, dates, s, sets)
    pos = {d: i for i, d in enumerate(dates)}

    def rows(ranges):
        return [i for rg in ranges for i in range(pos[rg.start], pos[rg.end] + 1)]

    chosen = {}
    for fold in s.folds:
        tr, te = rows(fold.train), rows(fold.test)
        is_sr = [sharpe(r[tr, j]) for j in range(n_sets)]
        oos_sr = [sharpe(r[te, j]) for j in range(n_sets)]
        got = res.splits.filter(split=fold.index).sort("set")
        np.testing.assert_allclose(got["is_sharpe"].to_numpy(), is_sr, rtol=1e-10)
        np.testing.assert_allclose(got["oos_sharpe"].to_numpy(), oos_sr, rtol=1e-10)
        chosen[fold.index] = max(range(n_sets), key=lambda j: (is_sr[j], -j))
        assert got.filter("chosen")["set"].to_list() == [chosen[fold.index]]
    # paths: group by group, the test returns of the set its split chose
    assert res.paths.height == math.comb(n_groups - 1, k - 1)
    for p, path in enumerate(s.paths):
        series = []
        for g, split in enumerate(path):
            series += [r[i, chosen[split]] for i in rows([s.groups[g]])]
        assert res.paths["sharpe"][p] == pytest.approx(sharpe(series), rel=1e-10)
        np.testing.assert_array_equal(res.path_returns[:, p], series)
    # per set: the distribution over splits
    for j in range(n_sets):
        oos = res.splits.filter(set=j)["oos_sharpe"].to_numpy()
        row = res.sets.filter(set=j).row(0, named=True)
        assert row["oos_mean"] == pytest.approx(oos.mean())
        assert row["oos_std"] == pytest.approx(oos.std(ddof=1))
        assert row["times_chosen"] == sum(1 for c in chosen.values() if c == j)
        assert row["full_sharpe"] == pytest.approx(sharpe(r[:, j]))
        assert row["allocation.top_n"] == 5 + j
    assert res.splits.height == math.comb(n_groups, k) * n_sets


def test_every_group_is_out_of_sample_once_per_path():
    s = combinatorial_purged(days(120), 6, 2)
    for path in s.paths:
        for g, split in enumerate(path):
            assert g in s.folds[split].test_groups
    assert sorted(itertools.chain.from_iterable(s.paths)) == sorted(
        f.index for f in s.folds for _ in f.test_groups
    )


def test_annualised_sharpe_of_a_flat_column_is_nan():
    out = annualised_sharpe(np.array([[0.01, 0.0], [0.02, 0.0], [0.0, 0.0]]))
    assert np.isnan(out[1]) and out[0] == pytest.approx(sharpe([0.01, 0.02, 0.0]))


def test_bad_cpcv_input():
    dates = days(60)
    s = combinatorial_purged(dates, 4, 1)
    with pytest.raises(ResearchError, match="dates x sets = 60 x 2"):
        evaluate_cpcv(np.zeros((50, 2)), dates, s, [{}, {}])
    with pytest.raises(ResearchError, match="combinatorial purged"):
        evaluate_cpcv(np.zeros((60, 2)), dates, walk_forward(dates, 20, 10), [{}, {}])
