"""Tests for qpipe.views.analytics against plain-Python and scipy calculations."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from scipy import stats

from qpipe.views import analytics as an
from tests.unit.views._pages import business_days, make_equity


def _drawdowns_by_loop(
    equity: list[float], capital: float
) -> list[tuple[int, int, int | None, float]]:
    """(peak row, trough row, recovery row, depth) of every drawdown, by walking the days."""
    out, peak, peak_row, cur = [], capital, 0, None
    for i, e in enumerate(equity):
        if e >= peak:
            if cur is not None:
                out.append((cur[0], cur[1], i, cur[2]))
                cur = None
            peak, peak_row = e, i
        else:
            depth = e / peak - 1
            if cur is None:
                cur = [max(peak_row, 0) if i > 0 else 0, i, depth]
            elif depth < cur[2]:
                cur[1], cur[2] = i, depth
    if cur is not None:
        out.append((cur[0], cur[1], None, cur[2]))
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-0.2, 0.2), min_size=1, max_size=120))
def test_worst_drawdowns_match_a_day_by_day_walk(rets: list[float]) -> None:
    equity = list(np.cumprod(1 + np.array(rets)))
    dates = business_days(len(equity))
    dd = an.drawdown(np.array(equity), 1.0)
    got = an.worst_drawdowns(dates, dd, top=len(equity))
    want = _drawdowns_by_loop(equity, 1.0)
    event(f"drawdowns: {min(len(want), 3)}+")
    assert len(got) == len(want)
    d = dates.to_list()
    by_start = {p.trough: p for p in got}
    for peak, trough, rec, depth in want:
        p = by_start[d[trough]]
        assert p.depth == pytest.approx(depth)
        assert p.start == d[peak]
        assert p.recovery == (d[rec] if rec is not None else None)
    assert [p.depth for p in got] == sorted(p.depth for p in got)


def test_distribution_matches_scipy_and_numpy() -> None:
    eq = make_equity(500, seed=7)
    r = eq.get_column("return").to_numpy()
    d = an.distribution(eq.get_column("date"), eq.get_column("return"))
    assert d.skew == pytest.approx(stats.skew(r))
    assert d.kurtosis == pytest.approx(stats.kurtosis(r))  # excess (Fisher)
    var = np.quantile(r, 0.05)
    assert d.var95 == pytest.approx(var)
    assert d.cvar95 == pytest.approx(r[r <= var].mean())
    assert d.best_day[1] == r.max() and d.worst_day[1] == r.min()
    months: dict[str, float] = {}
    for day, x in zip(eq.get_column("date").to_list(), r, strict=True):
        key = f"{day.year}-{day.month:02d}"
        months[key] = (1 + months.get(key, 0.0)) * (1 + x) - 1
    best = max(months, key=months.__getitem__)
    assert d.best_month[0] == best and d.best_month[1] == pytest.approx(months[best])


def test_rolling_beta_and_vol_match_numpy_windows() -> None:
    rng = np.random.default_rng(3)
    b = rng.normal(0, 0.01, 300)
    r = 1.3 * b + rng.normal(0, 0.005, 300)
    beta = an.rolling_beta(pl.Series(r), pl.Series(b), 50)
    vol = an.rolling_vol(pl.Series(r), 50)
    assert np.isnan(beta[:49]).all() and np.isnan(vol[:49]).all()
    for t in (49, 120, 299):
        rr, bb = r[t - 49 : t + 1], b[t - 49 : t + 1]
        assert beta[t] == pytest.approx(np.cov(rr, bb, ddof=1)[0, 1] / np.var(bb, ddof=1))
        assert vol[t] == pytest.approx(np.std(rr, ddof=1) * math.sqrt(252))


def test_first_invested_day_is_the_first_day_with_exposure() -> None:
    assert an.first_invested_index(make_equity(100, warmup=30)) == 30
    assert an.first_invested_index(make_equity(100, warmup=30, exposure=False)) == 30
    assert an.first_invested_index(make_equity(100, warmup=100)) == 0  # never invested
