"""Defect 5 (issue 15): a ratio whose spread is not finite is null, never 0.0 or 1e199."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import polars as pl
from hypothesis import event, given, settings
from hypothesis import strategies as st

from qpipe.backtest import compute_metrics, equal_weight_benchmark, simulate

D0 = date(2024, 1, 1)
RATIOS = ("sharpe", "sortino", "information_ratio", "beta", "alpha_ann")


def _prices_with_one_absurd_close() -> pl.DataFrame:
    days = [D0 + timedelta(days=i) for i in range(40)]
    a = [100.0 + i for i in range(40)]
    a[20] = 1e200  # one bad tick, the rest ordinary
    b = [50.0 + 0.5 * i for i in range(40)]
    return pl.DataFrame(
        {"date": days * 2, "symbol": ["A"] * 40 + ["B"] * 40, "close": a + b},
        schema_overrides={"date": pl.Date},
    )


def test_one_close_of_1e200_gives_null_ratios_not_zero():
    prices = _prices_with_one_absurd_close()
    weights = pl.DataFrame(
        {"date": [D0] * 2, "symbol": ["A", "B"], "weight": [0.5, 0.5]},
        schema_overrides={"date": pl.Date},
    )
    eq = simulate(prices, weights).equity
    m = compute_metrics(
        eq,
        initial_capital=1.0,
        n_rebalances=1,
        benchmark_returns=equal_weight_benchmark(prices),
    )
    assert m["ann_vol"] is None  # the variance overflowed
    for name in ("sharpe", "sortino", "information_ratio", "tracking_error", "beta"):
        assert m[name] is None, (name, m[name])
    for name, value in m.items():
        assert value is None or math.isfinite(value), name


def _equity(rets: list[float]) -> pl.DataFrame:
    r = np.asarray(rets)
    with np.errstate(over="ignore"):  # extreme returns may overflow to inf on purpose
        e = np.cumprod(1.0 + r)
    n = r.size
    return pl.DataFrame(
        {
            "date": [D0 + timedelta(days=i) for i in range(n)],
            "equity": e,
            "return": r,
            "turnover": np.zeros(n),
            "cost": np.zeros(n),
        },
        schema_overrides={"date": pl.Date},
    )


@settings(max_examples=80, deadline=None)
@given(
    rets=st.lists(
        st.one_of(st.floats(-0.5, 0.5), st.sampled_from([1e150, 1e160, 1e170])),
        min_size=3,
        max_size=40,
    ),
)
def test_a_ratio_is_null_exactly_when_its_spread_is_not_finite(rets):
    """Returns big enough that their squares overflow: sharpe and sortino are null, not 0."""
    eq = _equity(rets)
    with np.errstate(all="ignore"):
        r = eq["return"].to_numpy()
        sd = float(np.std(r, ddof=1))
    m = compute_metrics(eq, initial_capital=1.0, n_rebalances=0)
    if not math.isfinite(sd):
        event("spread not finite")
        assert m["sharpe"] is None and m["sortino"] is None and m["ann_vol"] is None
    else:
        event("spread finite")
    for name in ("sharpe", "sortino", "ann_vol"):
        assert m[name] is None or math.isfinite(m[name])
