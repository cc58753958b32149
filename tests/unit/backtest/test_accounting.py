"""Backtest accounting: worked examples, parity with an independent reference, properties."""

from __future__ import annotations

import importlib.util
import math
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from qpipe.backtest import BacktestResult, simulate
from qpipe.errors import BacktestError

_REF_PATH = Path(__file__).resolve().parents[2] / "reference_backtest.py"
_spec = importlib.util.spec_from_file_location("reference_backtest", _REF_PATH)
assert _spec is not None and _spec.loader is not None
ref = importlib.util.module_from_spec(_spec)
sys.modules["reference_backtest"] = ref
_spec.loader.exec_module(ref)

D0 = date(2024, 1, 1)
PRICE_SCHEMA = {"date": pl.Date, "symbol": pl.String, "close": pl.Float64, "open": pl.Float64}
WEIGHT_SCHEMA = {"date": pl.Date, "symbol": pl.String, "weight": pl.Float64}


def day(i: int) -> date:
    return D0 + timedelta(days=i)


def prices_frame(rows: list[tuple[int, str, float]] | list[tuple]) -> pl.DataFrame:
    """Rows (day, symbol, close[, open]) -> a prices frame."""
    recs = [
        {"date": day(r[0]), "symbol": r[1], "close": r[2], "open": r[3] if len(r) > 3 else r[2]}
        for r in rows
    ]
    return pl.DataFrame(recs, schema=PRICE_SCHEMA)


def weights_frame(rows: list[tuple[int, str, float]]) -> pl.DataFrame:
    recs = [{"date": day(d), "symbol": s, "weight": w} for d, s, w in rows]
    return pl.DataFrame(recs, schema=WEIGHT_SCHEMA)


def run_both(prices: pl.DataFrame, weights: pl.DataFrame, **kw) -> tuple[BacktestResult, object]:
    got = simulate(prices, weights, **kw)
    want = ref.reference_backtest(prices.to_dicts(), weights.to_dicts(), **kw)
    return got, want


def _close(a: float | None, b: float | None, scale: float, rtol: float = 1e-12) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= rtol * max(abs(a), abs(b), scale)


def assert_agree(got: BacktestResult, want, rtol: float = 1e-12) -> None:
    """Equity, cash and trades agree to ``rtol`` relative (to the column's magnitude)."""
    eq = got.equity
    assert eq.columns == [
        "date", "equity", "return", "turnover", "cost",
        "cash", "unfilled", "gross_exposure", "net_exposure", "ruined",
    ]
    assert eq["date"].to_list() == [d.date for d in want.days]
    money = max([abs(d.equity) + d.gross + abs(d.cash) for d in want.days] + [1e-300])
    for col, attr, scale in [
        ("equity", "equity", money),
        ("cash", "cash", money),
        ("cost", "cost", money),
        ("unfilled", "unfilled", money),
        ("turnover", "turnover", 1.0),
        ("return", "ret", 1.0),
    ]:
        for i, (a, b) in enumerate(zip(eq[col].to_list(), [getattr(d, attr) for d in want.days],
                                       strict=True)):
            assert _close(a, b, scale, rtol), f"{col} day {i}: {a} != {b}"
    assert eq["ruined"].to_list() == [d.ruined for d in want.days]
    assert got.ruined_on == want.ruined_on
    assert got.n_rebalances == want.n_rebalances
    tr = got.trades
    assert tr.height == len(want.trades)
    if tr.height:
        assert tr["date"].to_list() == [t[0] for t in want.trades]
        assert tr["symbol"].to_list() == [t[1] for t in want.trades]
        for k, col in enumerate(["shares", "price", "notional", "cost"], start=2):
            vals = [t[k] for t in want.trades]
            scale = max(abs(v) for v in vals)
            for a, b in zip(tr[col].to_list(), vals, strict=True):
                assert _close(a, b, scale, rtol), f"trades {col}: {a} != {b}"


# ---------------------------------------------------------------- hand-worked examples


def test_worked_example_partial_fill_drift_and_rebalance():
    # K=1000, c=10bps. Day 0: A=10, B=20, targets 50%/50% of V=1000. Equal keys (500) -> A first.
    # Buy 50 A: 500 + 0.5 fee, cash 499.5. B wants 25 sh = 500.5 with fee > cash: partial,
    # q = 499.5 / (1.001 * 20) = 24.950049950049950; unfilled (25 - q) * 20; cash 0.
    # Day 1: no rebalance, drift: E = 50 * 11 + q * 18.
    # Day 2: V = 50 * 12 + q * 18 = 1049.1008991008991; targets A 25%, B 50%: sell A first.
    p = prices_frame([(0, "A", 10.0), (0, "B", 20.0), (1, "A", 11.0), (1, "B", 18.0),
                      (2, "A", 12.0), (2, "B", 18.0)])
    w = weights_frame([(0, "A", 0.5), (0, "B", 0.5), (2, "A", 0.25), (2, "B", 0.5)])
    res = simulate(p, w, initial_capital=1000.0, cost_bps=10.0)
    q_b = 499.5 / 20.02
    e = res.equity
    assert e["equity"].to_list() == pytest.approx(
        [999.000999000999, 999.1008991008991, 1048.6877247752248], rel=1e-12)
    assert e["cost"].to_list() == pytest.approx([0.999000999000999, 0.0, 0.4131743256743257],
                                                rel=1e-12)
    assert e["unfilled"][0] == pytest.approx((25 - q_b) * 20, rel=1e-9)
    assert e["cash"].to_list()[:2] == [0.0, 0.0]
    assert e["cash"][2] == pytest.approx(1049.1008991008991 * 0.25 - 0.4131743256743257, rel=1e-12)
    assert e["turnover"][2] == pytest.approx(413.1743256743257 / 1049.1008991008991, rel=1e-12)
    assert e["return"][0] == pytest.approx(999.000999000999 / 1000 - 1, rel=1e-12)
    tr = res.trades
    assert tr["symbol"].to_list() == ["A", "B", "A", "B"]  # tie -> A first; day 2 sell A first
    assert tr["shares"].to_list() == pytest.approx(
        [50.0, q_b, 1049.1008991008991 * 0.25 / 12 - 50, 1049.1008991008991 * 0.5 / 18 - q_b],
        rel=1e-12)
    assert tr["notional"][2] < 0 < tr["notional"][3]
    assert res.n_rebalances == 2 and res.ruined_on is None


def test_sells_run_before_buys_so_the_buy_is_funded():
    # Fully invested in A; switch to B. If the buy ran first it would find no cash.
    p = prices_frame([(0, "A", 10.0), (0, "B", 5.0), (1, "A", 10.0), (1, "B", 5.0)])
    w = weights_frame([(0, "A", 1.0), (1, "B", 1.0)])
    res = simulate(p, w, initial_capital=100.0)
    assert res.trades["symbol"].to_list() == ["A", "A", "B"]
    assert res.trades["shares"].to_list() == [10.0, -10.0, 20.0]
    assert res.equity["unfilled"].to_list() == [0.0, 0.0]
    assert res.equity["cash"].to_list() == [0.0, 0.0]  # within 1e-9 of cash -> filled, cash 0


def test_purchase_within_1e9_of_cash_fills_in_full_and_leaves_cash_zero():
    p = prices_frame([(0, "A", 3.0), (0, "B", 1.7), (0, "C", 9.1)])
    # 3 x 1/3 leaves 1.1e-16 of cash in floating point; the tolerance zeroes it
    res = simulate(p, weights_frame([(0, s, 1 / 3) for s in "ABC"]))
    assert res.equity["cash"][0] == 0.0 and res.equity["unfilled"][0] == 0.0
    assert res.trades["shares"].to_list() == [(1 / 3) / 3.0, (1 / 3) / 1.7, (1 / 3) / 9.1]
    # a last buy 4e-10 (relative) above the cash left (0.5) is still filled in full
    over = simulate(p, weights_frame([(0, "A", 0.5), (0, "B", 0.5 + 2e-10)]))
    assert over.trades["shares"][1] == (0.5 + 2e-10) / 1.7
    assert over.equity["cash"][0] == 0.0 and over.equity["unfilled"][0] == 0.0
    # 4e-9 above is a partial fill with exactly the cash left
    part = simulate(p, weights_frame([(0, "A", 0.5), (0, "B", 0.5 + 2e-9)]))
    assert part.trades["shares"][1] == 0.5 / 1.7
    assert part.equity["unfilled"][0] == pytest.approx(2e-9, rel=1e-6)


def test_unpriced_symbol_keeps_holding_and_counts_in_v_at_last_close():
    # Day 1: B has no price. V = 50 + 5 * 12 (A) + 10 * 5 (B at its day-0 close) = 160.
    # Rebalance to 50/50: A target 80 -> buy 20/12 sh; B not traded (keeps 10 sh).
    p = prices_frame([(0, "A", 10.0), (0, "B", 5.0), (1, "A", 12.0), (2, "A", 12.0),
                      (2, "B", 6.0)])
    # day 0 (K=150): buy 5 A (50) and 10 B (50), 50 stays in cash
    w = weights_frame([(0, "A", 50 / 150), (0, "B", 50 / 150), (1, "A", 0.5), (1, "B", 0.5)])
    res = simulate(p, w, initial_capital=150.0)
    tr = res.trades.filter(pl.col("date") == day(1))
    assert tr["symbol"].to_list() == ["A"]
    assert tr["notional"][0] == pytest.approx(80.0 - 60.0, rel=1e-12)
    # day 1: cash 30 + A 80 + B 50 (last close); day 2: B priced at 6 -> 30 + 80 + 60
    assert res.equity["equity"].to_list() == pytest.approx([150.0, 160.0, 170.0], rel=1e-12)


def test_delisted_holding_is_sold_at_last_close_with_costs_on_next_price_date():
    # B's prices end on day 1 while A goes on: on day 2 its 10 shares are sold at 6 with 1% fee.
    p = prices_frame([(0, "A", 10.0), (0, "B", 5.0), (1, "A", 10.0), (1, "B", 6.0),
                      (2, "A", 10.0), (3, "A", 10.0)])
    w = weights_frame([(0, "B", 0.5)])
    res = simulate(p, w, initial_capital=100.0, cost_bps=100.0)
    assert res.trades.filter(pl.col("date") == day(2)).rows() == [
        (day(2), "B", -10.0, 6.0, -60.0, 0.6)]
    # cash after day 0: 100 - 50.5 = 49.5; day 2: + 60 * 0.99
    assert res.equity["cash"][2] == pytest.approx(49.5 + 59.4, rel=1e-12)
    assert res.equity["equity"].to_list() == pytest.approx([99.5, 109.5, 108.9, 108.9], rel=1e-12)
    assert res.equity["turnover"][2] == pytest.approx(60.0 / 109.5, rel=1e-12)


def test_a_gap_is_not_a_delisting():
    # B misses day 1 but is priced again on day 2: it is held (valued at its last close) throughout.
    p = prices_frame([(0, "A", 10.0), (0, "B", 5.0), (1, "A", 10.0), (2, "A", 10.0),
                      (2, "B", 7.0)])
    res = simulate(p, weights_frame([(0, "B", 1.0)]), initial_capital=100.0)
    assert res.trades.height == 1
    assert res.equity["equity"].to_list() == pytest.approx([100.0, 100.0, 140.0], rel=1e-12)


def test_short_blowup_ruins_and_stops_trading():
    # 100% short A at 10 with K=100: cash 200. A goes to 25: V = 200 - 250 = -50 -> ruined.
    p = prices_frame([(0, "A", 10.0), (1, "A", 25.0), (2, "A", 30.0)])
    w = weights_frame([(0, "A", -1.0), (1, "A", 0.0), (2, "A", 0.0)])
    res = simulate(p, w, initial_capital=100.0)
    assert res.ruined_on == day(1)
    assert res.equity["ruined"].to_list() == [False, True, True]
    assert res.trades.height == 1  # no trade on or after the ruin
    assert res.equity["equity"].to_list() == pytest.approx([100.0, -50.0, -100.0])
    assert res.equity["return"].to_list()[:2] == pytest.approx([0.0, -1.5])
    assert res.equity["return"][2] is None  # previous equity <= 0
    assert res.equity["gross_exposure"][1] is None
    assert res.n_rebalances == 1


def test_next_open_trades_at_the_next_dates_open():
    # Weights of day 0 trade at day 1's open (11); equity is at closes.
    p = prices_frame([(0, "A", 10.0, 9.0), (1, "A", 12.0, 11.0), (2, "A", 13.0, 12.5)])
    w = weights_frame([(0, "A", 1.0), (2, "A", 0.0)])
    res = simulate(p, w, initial_capital=110.0, execution="next_open")
    assert res.trades.rows() == [(day(1), "A", 10.0, 11.0, 110.0, 0.0)]
    assert res.equity["equity"].to_list() == pytest.approx([110.0, 120.0, 130.0])
    assert res.n_rebalances == 2  # day 2's decision counts though it has no next date to trade on


def test_slippage_borrow_and_cash_interest():
    # Slippage 100 bps: buy A at 10.1. Borrow 252 bps/yr on a short of B: 1 bp of its value a day.
    p = prices_frame([(0, "A", 10.0), (0, "B", 10.0), (1, "A", 10.0), (1, "B", 10.0)])
    w = weights_frame([(0, "A", 0.5), (0, "B", -0.5)])
    res = simulate(p, w, initial_capital=100.0, slippage_bps=100.0, borrow_bps=252.0,
                   cash_rate=0.252)
    # day 0: sell 5 B at 9.9 -> cash 149.5; buy 5 A at 10.1 -> cash 99.0
    assert res.trades.rows() == [(day(0), "B", -5.0, 9.9, -49.5, 0.0),
                                 (day(0), "A", 5.0, 10.1, 50.5, 0.0)]
    # day 1: interest 99 * 0.001; borrow 50 * 0.0001
    assert res.equity["cash"][1] == pytest.approx(99.0 * 1.001 - 50 * 1e-4, rel=1e-12)


def test_empty_weights_leave_capital_in_cash_and_single_row_prices():
    p = prices_frame([(0, "A", 10.0), (1, "A", 12.0)])
    res = simulate(p, weights_frame([]), initial_capital=5.0, cost_bps=10.0)
    assert res.equity["equity"].to_list() == [5.0, 5.0]
    assert res.trades.height == 0 and res.n_rebalances == 0
    one = simulate(prices_frame([(0, "A", 10.0)]), weights_frame([(0, "A", 1.0)]))
    assert one.equity.height == 1 and one.trades.height == 1


def test_start_and_end_bound_the_window():
    p = prices_frame([(i, "A", 10.0 + i) for i in range(5)])
    w = weights_frame([(0, "A", 1.0), (2, "A", 1.0)])
    res = simulate(p, w, start=day(1), end=day(3))
    assert res.equity["date"].to_list() == [day(1), day(2), day(3)]
    assert res.trades["date"].to_list() == [day(2)]
    assert res.equity["equity"].to_list() == pytest.approx([1.0, 1.0, 13.0 / 12.0])


@pytest.mark.parametrize(
    ("prices", "weights", "kw", "match"),
    [
        (pl.DataFrame({"date": [D0], "symbol": ["A"]}), None, {}, "missing column.*`close`"),
        (None, pl.DataFrame({"date": [D0], "symbol": ["A"]}), {}, "missing column.*`weight`"),
        (prices_frame([]), None, {}, "empty"),
        (prices_frame([(0, "A", 1.0)]).drop("open"), None, {"execution": "next_open"}, "`open`"),
        (prices_frame([(0, "A", 1.0), (0, "A", 2.0)]), None, {}, "duplicate"),
        (prices_frame([(0, "A", -1.0)]), None, {}, "`close`"),
        (prices_frame([(0, "A", 1.0)]).with_columns(symbol=pl.lit(None, pl.String)), None, {},
         "must not be null"),
        (None, weights_frame([(0, "A", float("nan"))]), {}, "`weight`"),
        (None, weights_frame([(0, "A", 0.5), (0, "A", 0.5)]), {}, "duplicate"),
        (None, None, {"execution": "vwap"}, "`execution`"),
        (None, None, {"initial_capital": 0.0}, "`initial_capital`"),
        (None, None, {"start": day(5)}, "no price dates"),
    ],
)
def test_inputs_the_accounting_cannot_run_on_raise_backtest_error(prices, weights, kw, match):
    prices = prices_frame([(0, "A", 1.0)]) if prices is None else prices
    weights = weights_frame([]) if weights is None else weights
    with pytest.raises(BacktestError, match=match):
        simulate(prices, weights, **kw)


# ---------------------------------------------------------------- generated cases

SYMBOLS = ["AA", "B", "a", "é"]  # byte-wise order differs from case-insensitive order


@st.composite
def cases(draw, *, long_only: bool = False, all_priced: bool = False, daily: bool = False):
    n_days = draw(st.integers(1, 9))
    syms = draw(st.lists(st.sampled_from(SYMBOLS), min_size=1, max_size=4, unique=True))
    price_rows = []
    for sym in syms:
        first = 0 if all_priced else draw(st.integers(0, n_days - 1))
        last = n_days - 1 if all_priced else draw(st.integers(first, n_days - 1))
        px = draw(st.sampled_from([1.0, 10.0, 50.0]))
        for i in range(first, last + 1):
            px *= draw(st.sampled_from([1.0, 0.5, 0.9, 1.1, 1.5, 4.0]))
            if all_priced or i in (first, last) or draw(st.booleans()) or draw(st.booleans()):
                opx = px * draw(st.sampled_from([1.0, 0.97, 1.02]))
                price_rows.append((i, sym, px, opx))
    prices = prices_frame(price_rows)
    priced = {(r[0], r[1]) for r in price_rows}
    reb = list(range(n_days)) if daily else draw(
        st.lists(st.integers(0, n_days - 1), min_size=1, max_size=n_days, unique=True))
    wrows = []
    wvals = st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0]) if long_only else st.sampled_from(
        [0.0, 0.3, 0.5, 1.0, 1.7, -0.5, -1.0, -2.0])
    for i in sorted(reb):
        total = 0.0
        for sym in syms:
            if (i, sym) in priced and (daily or draw(st.integers(0, 3)) > 0):
                wt = draw(wvals)
                if long_only:
                    wt = min(wt, 1.0 - total)
                    total += wt
                wrows.append((i, sym, wt))
            elif (i, sym) not in priced and not daily and draw(st.integers(0, 5)) == 0:
                wrows.append((i, sym, 0.5))  # unpriced: must not trade (a Tier 2 error upstream)
    weights = weights_frame(wrows)
    kw = {
        "initial_capital": draw(st.sampled_from([1.0, 1000.0])),
        "cost_bps": draw(st.sampled_from([0.0, 10.0, 250.0])),
    }
    return prices, weights, kw


OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "slippage_bps": st.sampled_from([0.0, 5.0, 100.0]),
        "borrow_bps": st.sampled_from([0.0, 50.0, 2000.0]),
        "cash_rate": st.sampled_from([0.0, 0.03]),
        "execution": st.sampled_from(["close", "next_open"]),
        "start": st.sampled_from([None, day(1)]),
        "end": st.sampled_from([None, day(5)]),
    },
)

_SETTINGS = settings(max_examples=100, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])


@settings(_SETTINGS, max_examples=300)
@given(case=cases(), options=OPTIONS)
@example(case=(prices_frame([(0, "A", 10.0)]), weights_frame([]), {}), options={})
@example(case=(prices_frame([(0, "A", 10.0)]), weights_frame([(0, "A", 1.0)]),
               {"cost_bps": 10.0}), options={})
@example(case=(prices_frame([(0, "A", 10.0), (1, "A", 30.0), (2, "A", 40.0)]),
               weights_frame([(0, "A", -2.0), (2, "A", 1.0)]), {}), options={})
def test_simulate_agrees_with_the_reference_implementation(case, options):
    prices, weights, kw = case
    kw = {**kw, **options}
    if kw.get("start") and kw.get("end") and kw["start"] > kw["end"]:
        return
    try:
        got, want = run_both(prices, weights, **kw)
    except BacktestError as exc:
        assert "no price dates" in str(exc)
        return
    assert_agree(got, want)


@_SETTINGS
@given(case=cases())
def test_cash_is_never_negative(case):
    prices, weights, kw = case
    res = simulate(prices, weights, **kw)
    assert (res.equity["cash"] >= 0).all()
    assert (res.equity["unfilled"] >= 0).all()


@_SETTINGS
@given(case=cases(long_only=True, all_priced=True, daily=True))
def test_zero_cost_daily_rebalancing_compounds_weighted_returns(case):
    prices, weights, kw = case
    res = simulate(prices, weights, initial_capital=kw["initial_capital"])
    close = prices.pivot(on="symbol", index="date", values="close").sort("date").drop("date")
    w = (weights.pivot(on="symbol", index="date", values="weight") if weights.height else None)
    closes = close.to_numpy()
    wmat = np.zeros_like(closes)
    if w is not None:
        days = {d: i for i, d in enumerate(sorted(prices["date"].unique().to_list()))}
        for row in weights.iter_rows(named=True):
            wmat[days[row["date"]], close.columns.index(row["symbol"])] = row["weight"]
    growth = 1.0 + ((closes[1:] / closes[:-1] - 1.0) * wmat[:-1]).sum(axis=1)
    expected = kw["initial_capital"] * np.concatenate(([1.0], np.cumprod(growth)))
    np.testing.assert_allclose(res.equity["equity"].to_numpy(), expected, rtol=1e-9)


@_SETTINGS
@given(case=cases(long_only=True), cost=st.sampled_from([1.0, 10.0, 500.0]))
def test_costs_never_increase_equity(case, cost):
    prices, weights, kw = case
    free = simulate(prices, weights, initial_capital=kw["initial_capital"])
    paid = simulate(prices, weights, initial_capital=kw["initial_capital"], cost_bps=cost)
    slack = 1e-12 * kw["initial_capital"]
    assert (paid.equity["equity"] <= free.equity["equity"] + slack).all()


@_SETTINGS
@given(case=cases())
def test_shares_are_constant_between_trades_so_weights_drift(case):
    prices, weights, kw = case
    res = simulate(prices, weights, **kw)
    dates = res.equity["date"].to_list()
    last: dict[str, float] = {}
    closes = {(d, s): c for d, s, c in prices.select("date", "symbol", "close").iter_rows()}
    held: dict[str, float] = {}
    trades = res.trades.rows()
    k = 0
    for i, d in enumerate(dates):
        for sym in {s for (dd, s) in closes if dd == d}:
            last[sym] = closes[(d, sym)]
        while k < len(trades) and trades[k][0] == d:
            held[trades[k][1]] = held.get(trades[k][1], 0.0) + trades[k][2]
            k += 1
        value = res.equity["cash"][i] + sum(h * last[s] for s, h in held.items())
        assert math.isclose(value, res.equity["equity"][i], rel_tol=1e-9,
                            abs_tol=1e-9 * kw["initial_capital"])
    # days without a rebalance (and so without trades, unless a delisting) keep shares
    reb = set(weights["date"].to_list())
    for d in set(res.trades["date"].to_list()) - reb:
        symbols = res.trades.filter(pl.col("date") == d)["symbol"].to_list()
        for sym in symbols:
            assert not prices.filter((pl.col("symbol") == sym) & (pl.col("date") >= d)).height


@_SETTINGS
@given(case=cases())
def test_cost_is_c_times_traded_notional_and_turnover_is_notional_over_v(case):
    prices, weights, kw = case
    res = simulate(prices, weights, **kw)
    c = kw["cost_bps"] / 1e4
    per_day = res.trades.group_by("date").agg(pl.col("notional").abs().sum().alias("traded"),
                                              pl.col("cost").sum().alias("fees"))
    joined = res.equity.join(per_day, on="date", how="left").fill_null(0.0)
    for row in joined.iter_rows(named=True):
        assert math.isclose(row["cost"], c * row["traded"], rel_tol=1e-12, abs_tol=1e-15)
        assert math.isclose(row["cost"], row["fees"], rel_tol=1e-12, abs_tol=1e-15)
        # trades at the close: E_t = V_t - fees_t
        v = row["equity"] + row["cost"]
        if not row["ruined"]:
            assert math.isclose(row["turnover"] * v, row["traded"], rel_tol=1e-9,
                                abs_tol=1e-12 * kw["initial_capital"])


def test_turnover_and_exposure_of_a_drifting_portfolio():
    p = prices_frame([(0, "A", 10.0), (0, "B", 10.0), (1, "A", 20.0), (1, "B", 10.0)])
    res = simulate(p, weights_frame([(0, "A", 0.5), (0, "B", -0.25)]), initial_capital=100.0)
    # day 1: A 5 sh * 20 = 100, B -2.5 * 10 = -25, cash 75 -> E = 150
    assert res.equity["gross_exposure"].to_list() == pytest.approx([0.75, 125 / 150])
    assert res.equity["net_exposure"].to_list() == pytest.approx([0.25, 75 / 150])


def test_row_order_of_the_inputs_does_not_change_the_outputs():
    rng = np.random.default_rng(11)
    rows = [(i, s, float(10 + rng.random())) for i in range(8) for s in ["b", "A", "a", "C"]
            if rng.random() < 0.8]
    p = prices_frame(rows)
    priced = [(r[0], r[1]) for r in rows]
    w = weights_frame([(d, s, float(rng.normal(0.3, 0.5))) for d, s in priced if d % 3 == 0])
    base = simulate(p, w, cost_bps=10.0)
    shuffled = simulate(p.sample(fraction=1.0, shuffle=True, seed=2),
                        w.sample(fraction=1.0, shuffle=True, seed=3), cost_bps=10.0)
    assert base.equity.equals(shuffled.equity)
    assert base.trades.equals(shuffled.trades)
