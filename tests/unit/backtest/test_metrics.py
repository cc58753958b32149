"""Metrics against independent numpy calculations, their null rules, the benchmark and stages."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from qpipe.backtest import METRIC_NAMES, compute_metrics, equal_weight_benchmark, simulate
from qpipe.errors import BacktestError, StageError
from qpipe.stages.backtest import backtest, metrics
from qpipe.stages.base import Pipeline

D0 = date(2024, 1, 1)


def equity_frame(values: list[float], k: float = 1.0, turnover=None, cost=None, gross=None):
    n = len(values)
    e = np.asarray(values, dtype=float)
    prev = np.concatenate(([k], e[:-1]))
    return pl.DataFrame(
        {
            "date": [D0 + timedelta(days=i) for i in range(n)],
            "equity": e,
            "return": e / prev - 1.0,
            "turnover": np.zeros(n) if turnover is None else np.asarray(turnover, float),
            "cost": np.zeros(n) if cost is None else np.asarray(cost, float),
            "gross_exposure": np.ones(n) if gross is None else np.asarray(gross, float),
        },
        schema_overrides={"date": pl.Date},
    )


def _approx(a, b):
    return a == pytest.approx(b, rel=1e-10, abs=1e-14)


@settings(max_examples=60, deadline=None)
@given(
    rets=st.lists(st.floats(-0.2, 0.2, allow_nan=False), min_size=3, max_size=60),
    bench=st.lists(st.floats(-0.1, 0.1, allow_nan=False), min_size=60, max_size=60),
    k=st.sampled_from([1.0, 250.0]),
)
@example(rets=[0.0, 0.125, -2.220446049250313e-16], bench=[0.0, 0.0, 0.0625] + [0.0] * 57, k=1.0)
def test_metrics_match_independent_numpy_calculations(rets, bench, k):
    r = np.asarray(rets)
    if np.std(r, ddof=1) < 1e-12 or np.std(np.asarray(bench[: r.size]), ddof=1) < 1e-12:
        return
    e = k * np.cumprod(1 + r)
    turnover = np.linspace(0, 1, r.size)
    cost = np.full(r.size, 0.001)
    gross = np.linspace(0.5, 1.5, r.size)
    eq = equity_frame(list(e), k, turnover, cost, gross)
    b = np.asarray(bench[: r.size])
    bf = pl.DataFrame({"date": eq["date"], "return": b})
    m = compute_metrics(eq, initial_capital=k, n_rebalances=7, benchmark_returns=bf)
    rr = eq["return"].to_numpy()  # from the equity ratios, as the accounting reports them
    n = r.size
    assert list(m) == list(METRIC_NAMES)
    assert _approx(m["total_return"], e[-1] / k - 1)
    assert _approx(m["cagr"], (e[-1] / k) ** (252 / n) - 1)
    assert _approx(m["ann_vol"], np.std(rr, ddof=1) * np.sqrt(252))
    assert _approx(m["sharpe"], np.mean(rr) / np.std(rr, ddof=1) * np.sqrt(252))
    downside = np.sqrt(np.mean(np.minimum(rr, 0) ** 2))
    if downside > 1e-14:  # documented: a deviation of 1e-14 or less counts as zero
        assert _approx(m["sortino"], np.mean(rr) * 252 / (downside * np.sqrt(252)))
    else:
        assert m["sortino"] is None
    running = np.maximum.accumulate(np.concatenate(([k], e)))[1:]
    mdd = np.min(e / running - 1)
    assert _approx(m["max_drawdown"], mdd)
    assert m["calmar"] is None if mdd == 0 else _approx(m["calmar"], m["cagr"] / abs(mdd))
    assert _approx(m["turnover_ann"], np.mean(turnover) * 252)
    assert _approx(m["total_cost"], 0.001 * n)
    assert m["n_rebalances"] == 7
    nz = rr[rr != 0]
    assert m["hit_rate"] is None if nz.size == 0 else _approx(m["hit_rate"], np.mean(nz > 0))
    assert _approx(m["exposure"], np.mean(gross))
    beta = np.cov(rr, b)[0, 1] / np.var(b, ddof=1)
    assert _approx(m["beta"], beta)
    assert _approx(m["alpha_ann"], (np.mean(rr) - beta * np.mean(b)) * 252)
    te = np.std(rr - b, ddof=1) * np.sqrt(252)
    assert _approx(m["tracking_error"], te)
    assert _approx(m["information_ratio"], np.mean(rr - b) * 252 / te)


def test_constant_equity_has_null_ratios():
    m = compute_metrics(equity_frame([1.0] * 5), initial_capital=1.0, n_rebalances=0)
    assert m["ann_vol"] == 0.0 and m["total_return"] == 0.0 and m["cagr"] == 0.0
    assert m["max_drawdown"] == 0.0
    for name in ("sharpe", "sortino", "calmar", "hit_rate", "beta", "alpha_ann",
                 "tracking_error", "information_ratio"):
        assert m[name] is None, name


def test_no_drawdown_means_null_calmar_and_no_losses_null_sortino():
    m = compute_metrics(equity_frame([1.01, 1.02, 1.05]), initial_capital=1.0, n_rebalances=1)
    assert m["max_drawdown"] == 0.0 and m["calmar"] is None and m["sortino"] is None
    assert m["hit_rate"] == 1.0 and m["sharpe"] is not None


def test_drawdown_running_max_starts_at_initial_capital():
    # never above K=100: the first day's fall from K is a drawdown
    m = compute_metrics(equity_frame([90.0, 95.0, 80.0], k=100.0), initial_capital=100.0,
                        n_rebalances=1)
    assert m["max_drawdown"] == pytest.approx(-0.2)
    assert m["calmar"] == pytest.approx(m["cagr"] / 0.2)


def test_hit_rate_ignores_flat_days_and_total_loss_gives_cagr_minus_one():
    m = compute_metrics(equity_frame([1.1, 1.1, 1.0, 1.2]), initial_capital=1.0, n_rebalances=0)
    assert m["hit_rate"] == pytest.approx(2 / 3)
    ruined = compute_metrics(equity_frame([0.5, -0.1]), initial_capital=1.0, n_rebalances=0)
    assert ruined["cagr"] == -1.0 and ruined["total_return"] == pytest.approx(-1.1)


def test_empty_equity_gives_nulls():
    m = compute_metrics(equity_frame([]), initial_capital=1.0, n_rebalances=0)
    assert m["total_return"] is None and m["total_cost"] == 0.0 and m["n_rebalances"] == 0


def test_equal_weight_benchmark_uses_symbols_priced_on_both_days():
    d = [D0 + timedelta(days=i) for i in range(4)]
    prices = pl.DataFrame(
        {
            "date": [d[0], d[0], d[1], d[1], d[2], d[3], d[3]],
            "symbol": ["A", "B", "A", "B", "A", "A", "B"],
            "close": [10.0, 20.0, 11.0, 18.0, 11.0, 12.1, 30.0],
        }
    )
    bench = equal_weight_benchmark(prices.reverse())  # row order must not matter
    assert bench["date"].to_list() == d
    # day1: (0.1 - 0.1)/2; day2: A only 0; day3: A only (B missing on day 2) 0.1
    assert bench["return"].to_list() == pytest.approx([0.0, 0.0, 0.0, 0.1])


def test_equal_weight_benchmark_equals_a_daily_rebalanced_equal_weight_backtest():
    rng = np.random.default_rng(3)
    rows = []
    for s in ["A", "B", "C"]:
        px = 10.0
        for i in range(20):
            px *= 1 + rng.normal(0, 0.02)
            rows.append((D0 + timedelta(days=i), s, px))
    prices = pl.DataFrame(rows, schema=["date", "symbol", "close"], orient="row")
    weights = prices.select("date", "symbol", pl.lit(1 / 3).alias("weight"))
    eq = simulate(prices, weights).equity
    bench = equal_weight_benchmark(prices)
    np.testing.assert_allclose(eq["return"].to_numpy(), bench["return"].to_numpy(), atol=1e-12)


def _universe():
    rows = []
    for i in range(6):
        rows.append((D0 + timedelta(days=i), "A", 10.0 + i))
        rows.append((D0 + timedelta(days=i), "B", 20.0 - i))
    prices = pl.DataFrame(rows, schema=["date", "symbol", "close"], orient="row")
    weights = pl.DataFrame({"date": [D0, D0, D0 + timedelta(days=3)], "symbol": ["A", "B", "A"],
                            "weight": [0.5, 0.5, 1.0]})
    return prices, weights


def test_stages_run_as_a_pipeline_and_give_a_one_row_float_metrics_frame():
    prices, weights = _universe()
    pipe = Pipeline((
        backtest.bind({"cost_bps": 10.0, "initial_capital": 100.0, "start": "", "end": ""}),
        metrics.bind({"initial_capital": 100.0}, inputs=("equity", "weights", "prices")),
    ))
    env = pipe.apply_lazy({"prices": prices.lazy(), "weights": weights.lazy()})
    direct = simulate(prices, weights, cost_bps=10.0, initial_capital=100.0)
    assert env["equity"].collect().equals(direct.equity)
    assert env["trades"].collect().equals(direct.trades)
    m = env["metrics"].collect()
    assert m.height == 1 and m.columns == list(METRIC_NAMES)
    assert all(dt == pl.Float64 for dt in m.dtypes)
    want = compute_metrics(direct.equity, initial_capital=100.0, n_rebalances=direct.n_rebalances,
                           benchmark_returns=equal_weight_benchmark(prices))
    assert m.row(0, named=True) == want
    assert m["n_rebalances"][0] == 2.0


def test_metrics_stage_with_empty_benchmark_leaves_benchmark_metrics_null():
    prices, weights = _universe()
    eq = simulate(prices, weights).equity
    out = metrics.fn(eq.lazy(), weights.lazy(), prices.clear().lazy(), initial_capital=1.0)
    row = out.collect().row(0, named=True)
    assert all(row[k] is None for k in ("beta", "alpha_ann", "tracking_error",
                                        "information_ratio"))
    assert not math.isnan(row["sharpe"])


def test_backtest_stage_parses_iso_window_and_rejects_bad_dates():
    prices, weights = _universe()
    eq, _ = backtest.fn(prices.lazy(), weights.lazy(), start="2024-01-02", end="2024-01-05")
    assert eq.collect()["date"].to_list() == [D0 + timedelta(days=i) for i in range(1, 5)]
    with pytest.raises(BacktestError, match=r"backtest\.start"):
        backtest.fn(prices.lazy(), weights.lazy(), start="01/02/2024")
    with pytest.raises(StageError, match="backtest"):
        backtest.bind({"start": "nope"}).call(prices.lazy(), weights.lazy())
