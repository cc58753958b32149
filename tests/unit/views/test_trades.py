"""Tests for qpipe.views.trades: round trips, costs and long/short P&L against the real backtest."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from qpipe.backtest.accounting import simulate
from qpipe.views.trades import cost_breakdown, has_shorts, long_short_pnl, trade_stats
from tests.unit.views._pages import business_days


def fills(rows: list[tuple[int, str, float, float]]) -> pl.DataFrame:
    d0 = dt.date(2024, 1, 1)
    frame = pl.DataFrame(
        [(d0 + dt.timedelta(days=day), s, q, p) for day, s, q, p in rows],
        schema={"date": pl.Date, "symbol": pl.String, "shares": pl.Float64, "price": pl.Float64},
        orient="row",
    )
    return frame.with_columns((pl.col("shares") * pl.col("price")).alias("notional"),
                              pl.lit(0.0).alias("cost"))  # fmt: skip


def test_round_trips_by_hand() -> None:
    t = trade_stats(
        fills([
            (0, "A", 10, 10.0), (5, "A", -10, 12.0),  # +20 in 5 days
            (0, "B", -5, 20.0), (10, "B", 5, 22.0),  # short: -10 in 10 days
            (2, "C", 4, 5.0), (4, "C", -6, 6.0),  # +4 closes at day 4, then a 2-share short
            (8, "C", 2, 3.0),  # the short closes: +6 in 4 days
            (1, "D", 1, 1.0),  # still open
        ])
    )  # fmt: skip
    assert (t.fills, t.symbols, t.round_trips, t.open_positions) == (8, 4, 4, 1)
    assert t.win_rate == pytest.approx(3 / 4)
    assert t.profit_factor == pytest.approx((20 + 4 + 6) / 10)
    assert t.avg_holding_days == pytest.approx((5 + 10 + 2 + 4) / 4)


def _book(slip_bps: float, borrow_bps: float, cost_bps: float):
    dates = business_days(120)
    rng = np.random.default_rng(5)
    prices = pl.concat(
        pl.DataFrame({"date": dates, "symbol": s,
                      "close": 50 * np.cumprod(1 + rng.normal(0, 0.02, 120))})
        for s in ("A", "B", "C")
    )  # fmt: skip
    reb = dates.gather_every(20).to_list()
    w = pl.DataFrame(
        [(d, s, x) for i, d in enumerate(reb) for s, x in
         (("A", 0.6), ("B", -0.4 if i % 2 else 0.3), ("C", -0.3))],
        schema={"date": pl.Date, "symbol": pl.String, "weight": pl.Float64}, orient="row",
    )  # fmt: skip
    res = simulate(prices, w, initial_capital=1000.0, cost_bps=cost_bps,
                   slippage_bps=slip_bps, borrow_bps=borrow_bps)  # fmt: skip
    return prices, w, res


def test_cost_breakdown_matches_the_simulation() -> None:
    prices, _, res = _book(slip_bps=25.0, borrow_bps=0.0, cost_bps=10.0)
    c = cost_breakdown(res.equity, res.trades, {"slippage_bps": 25.0}, 1000.0)
    tr = res.trades.join(prices, on=["date", "symbol"])
    slip = float((tr["shares"].abs() * (tr["price"] - tr["close"]).abs()).sum())
    assert c.slippage == pytest.approx(slip, rel=1e-9)
    assert c.fees == pytest.approx(float(res.trades["cost"].sum()))
    assert c.fees == pytest.approx(float(res.equity["cost"].sum()))


def test_borrow_estimate_is_the_equity_lost_to_borrow() -> None:
    _, _, free = _book(slip_bps=0.0, borrow_bps=0.0, cost_bps=0.0)
    _, _, paid = _book(slip_bps=0.0, borrow_bps=300.0, cost_bps=0.0)
    c = cost_breakdown(paid.equity, paid.trades, {"borrow_bps": 300.0}, 1000.0)
    lost = float(free.equity["equity"][-1] - paid.equity["equity"][-1])
    assert c.borrow > 0
    assert c.borrow == pytest.approx(lost, rel=0.05)  # borrow also shrinks later positions


def test_long_plus_short_pnl_is_the_equity_change_without_costs() -> None:
    prices, w, res = _book(slip_bps=0.0, borrow_bps=0.0, cost_bps=0.0)
    assert has_shorts(w, res.equity)
    pnl = long_short_pnl(res.trades, prices)
    eq = res.equity.join(pnl, on="date", how="left").fill_null(0.0)
    change = np.diff(eq["equity"].to_numpy())
    both = (eq["long"] + eq["short"]).to_numpy()[1:]
    np.testing.assert_allclose(both, change, atol=1e-7)
    assert (eq["short"] != 0).any() and (eq["long"] != 0).any()
