"""Cash-constrained close-to-close accounting (DESIGN.md, "Backtest convention").

How :func:`simulate` works, step by step:

1. Check the columns and options; keep the price dates in ``[start, end]`` (the *window*).
2. Pivot once to dense numpy matrices (window dates x symbols, NaN = no price) for ``close``
   (and ``open`` for next-open execution) and the target weights (one row per rebalance,
   unlisted symbols 0). Symbols are sorted byte-wise, so column order is the tie-break order.
3. For every symbol find the first window date after its last price in the *whole* prices
   frame, if its prices end before the data does: from then on it is delisted.
4. Run the sequential per-date accounting in a compiled kernel (:mod:`._kernel`): accruals,
   marks, pre-trade value V, ruin check, the sorted order book, fills, end-of-day equity.
5. Wrap the kernel's arrays as the equity and trades frames of a :class:`BacktestResult`.

Each day's order book holds, for a rebalance day, every tradable symbol whose target value
``w * V`` differs from its current value ``shares * mark``, and on every day the non-zero
holdings of delisted symbols (target 0, at their last close). Orders run in ascending
``w * V - shares * mark`` (sells first), ties in byte-wise symbol order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Literal

import numpy as np
import polars as pl

from qpipe.backtest._frames import (
    _check_rate,
    _day_number,
    _day_numbers,
    _dense,
    _universe,
)
from qpipe.backtest._kernel import run_kernel
from qpipe.conventions import PERIODS_PER_YEAR
from qpipe.errors import BacktestError

__all__ = ["EQUITY_COLUMNS", "TRADE_COLUMNS", "BacktestResult", "Execution", "simulate"]

Execution = Literal["close", "next_open"]

EQUITY_COLUMNS = (
    "date",
    "equity",
    "return",
    "turnover",
    "cost",
    "cash",
    "unfilled",
    "gross_exposure",
    "net_exposure",
    "ruined",
)
TRADE_COLUMNS = ("date", "symbol", "shares", "price", "notional", "cost")


@dataclass(frozen=True)
class BacktestResult:
    """What :func:`simulate` returns.

    Attributes
    ----------
    equity
        One row per window price date: ``date``, ``equity``, ``return``, ``turnover``, ``cost``,
        ``cash``, ``unfilled``, ``gross_exposure``, ``net_exposure`` (Float64; ``return`` and
        the exposures are null where their denominator is <= 0) and ``ruined`` (Boolean).
    trades
        One row per fill: ``date``, ``symbol``, ``shares`` (signed), ``price`` (fill price),
        ``notional`` (``shares * price``, signed), ``cost`` (fee, >= 0); in execution order.
    n_rebalances
        Weight dates in the window on which the portfolio was not ruined.
    ruined_on
        The first date on which the pre-trade value was <= 0, or ``None``.
    """

    equity: pl.DataFrame
    trades: pl.DataFrame
    n_rebalances: int
    ruined_on: date | None


def _require(frame: pl.DataFrame, what: str, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        names = ", ".join(f"`{c}`" for c in missing)
        msg = f"{what} frame is missing column(s) {names}"
        raise BacktestError(msg)
    if frame.height and frame.schema["date"] != pl.Date:
        msg = f"column `date` of the {what} frame must be Date, got {frame.schema['date']}"
        raise BacktestError(msg)


def simulate(
    prices: pl.DataFrame,
    weights: pl.DataFrame,
    *,
    initial_capital: float = 1.0,
    cost_bps: float = 0.0,
    slippage_bps: float = 0.0,
    execution: Execution | str = "close",
    borrow_bps: float = 0.0,
    cash_rate: float = 0.0,
    start: date | None = None,
    end: date | None = None,
) -> BacktestResult:
    """Backtest target weights on prices with exact, cash-constrained accounting.

    Parameters
    ----------
    prices
        Long prices: ``date`` (Date), ``symbol`` (String), ``close`` (Float64, > 0), and
        ``open`` when ``execution="next_open"``. One row per (date, symbol).
    weights
        Long target weights: ``date``, ``symbol``, ``weight``. Its dates are the rebalance
        dates; an unlisted symbol has target 0. Rows outside the window, on dates that are not
        price dates, or for symbols never priced are ignored.
    initial_capital
        Starting cash ``K`` (> 0).
    cost_bps
        Fee on traded notional, in basis points (``c = cost_bps / 1e4``), paid from cash.
    slippage_bps
        Fill price ``p * (1 + s)`` for buys and ``p * (1 - s)`` for sells, ``s = slippage_bps
        / 1e4``; order sizes still come from ``p``.
    execution
        ``"close"`` trades a rebalance at that date's close; ``"next_open"`` trades the weights
        of date t at the ``open`` of the next window price date (V and fills at that open).
    borrow_bps
        Annual borrow fee on short market value: on every price date after the first, cash
        pays ``borrow_bps / 1e4 / 252`` times the previous close's short market value.
    cash_rate
        Annual interest on positive cash: on every price date after the first, positive cash
        grows by ``cash_rate / 252``.
    start, end
        Inclusive window of price dates to simulate (``None`` = from the first / to the last).

    Returns
    -------
    BacktestResult
        Equity frame, trades frame, rebalance count and ruin date.

    Raises
    ------
    BacktestError
        Missing columns, a non-Date ``date``, ``open`` missing for next-open execution,
        duplicate rows, non-finite or non-positive closes, no price date in the window, or an
        option out of range.

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import date
    >>> p = pl.DataFrame({"date": [date(2024, 1, 2), date(2024, 1, 3)], "symbol": ["A", "A"],
    ...                   "close": [10.0, 11.0]})
    >>> w = pl.DataFrame({"date": [date(2024, 1, 2)], "symbol": ["A"], "weight": [1.0]})
    >>> simulate(p, w).equity["equity"].to_list()
    [1.0, 1.1]
    """
    _require(prices, "prices", ("date", "symbol", "close"))
    _require(weights, "weights", ("date", "symbol", "weight"))
    rates = _Rates.checked(execution, initial_capital, cost_bps, slippage_bps, borrow_bps,
                           cash_rate)
    grid = _price_grid(prices, start, end, rates.use_open)
    plan = _weight_plan(weights, grid, rates.use_open)
    out = run_kernel(
        grid.close, grid.open_, rates.use_open, plan.wmat, plan.exec_row, grid.dead_from,
        rates.capital, rates.cost, rates.slip, rates.borrow_d, rates.cash_d,
    )
    return _result(out, grid, plan, rates.capital)


@dataclass(frozen=True)
class _Rates:
    """The options as the kernel takes them: fractions per trade and per day."""

    use_open: bool
    capital: float
    cost: float
    slip: float
    borrow_d: float
    cash_d: float

    @classmethod
    def checked(
        cls, execution: str, initial_capital: float, cost_bps: float, slippage_bps: float,
        borrow_bps: float, cash_rate: float,
    ) -> _Rates:
        if execution not in ("close", "next_open"):
            msg = f"`execution` must be 'close' or 'next_open', got {execution!r}"
            raise BacktestError(msg)
        capital = float(initial_capital)
        if not (math.isfinite(capital) and capital > 0):
            msg = f"`initial_capital` must be a finite number > 0, got {initial_capital}"
            raise BacktestError(msg)
        return cls(
            use_open=execution == "next_open",
            capital=capital,
            cost=_check_rate("cost_bps", cost_bps, 0.0, 10_000.0) / 1e4,
            slip=_check_rate("slippage_bps", slippage_bps, 0.0, 10_000.0) / 1e4,
            borrow_d=_check_rate("borrow_bps", borrow_bps, 0.0, 10_000.0) / 1e4 / PERIODS_PER_YEAR,
            cash_d=_check_rate("cash_rate", cash_rate, -1.0, 100.0) / PERIODS_PER_YEAR,
        )


@dataclass(frozen=True)
class _PriceGrid:
    """The window's price dates, the symbols in byte-wise order, dense closes (and opens) and
    the first window row on which each symbol counts as delisted."""

    win: np.ndarray
    symbols: pl.Series
    close: np.ndarray
    open_: np.ndarray
    dead_from: np.ndarray


def _checked_closes(prices: pl.DataFrame, use_open: bool) -> pl.Series:
    if use_open and "open" not in prices.columns:
        msg = "execution `next_open` needs an `open` column in the prices frame"
        raise BacktestError(msg)
    if prices.height == 0:
        msg = "prices frame is empty; nothing to backtest"
        raise BacktestError(msg)
    if prices["symbol"].null_count() or prices["date"].null_count():
        msg = "columns `date` and `symbol` of the prices frame must not be null"
        raise BacktestError(msg)
    closes = prices["close"].cast(pl.Float64)
    if closes.null_count() or not bool((closes.is_finite() & (closes > 0)).all()):
        msg = "column `close` of the prices frame must be finite and > 0 on every row"
        raise BacktestError(msg)
    return closes


def _price_grid(
    prices: pl.DataFrame, start: date | None, end: date | None, use_open: bool
) -> _PriceGrid:
    closes = _checked_closes(prices, use_open)
    # dates: all price dates (for delisting) and the window
    days = _day_numbers(prices)
    all_days = prices["date"].unique().sort().cast(pl.Int32).to_numpy().astype(np.int64)
    lo = all_days[0] if start is None else max(all_days[0], _day_number(start))
    hi = all_days[-1] if end is None else min(all_days[-1], _day_number(end))
    win = all_days[(all_days >= lo) & (all_days <= hi)]
    if win.size == 0:
        msg = f"no price dates between `start` {start} and `end` {end}"
        raise BacktestError(msg)
    symbols, codes = _universe(prices["symbol"])  # byte-wise order = tie-break order
    n_days, n_sym = win.size, symbols.len()

    # delisting: first window date after a symbol's last price, if its prices end early
    last_day = np.full(n_sym, np.iinfo(np.int64).min)
    np.maximum.at(last_day, codes, days)
    dead_from = np.searchsorted(win, last_day, side="right").astype(np.int64)
    dead_from[last_day >= all_days[-1]] = n_days

    in_win = (days >= lo) & (days <= hi)
    row_of_day = np.full(int(hi - lo) + 1, -1, np.int64)  # day number -> window row
    row_of_day[win - lo] = np.arange(n_days)
    d_idx = row_of_day[days[in_win] - lo]
    s_idx = codes[in_win]
    close = _dense(d_idx, s_idx, closes.to_numpy()[in_win], (n_days, n_sym), "prices")
    if use_open:
        open_ = np.full((n_days, n_sym), np.nan)
        opens = prices["open"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        open_[d_idx, s_idx] = opens[in_win]
    else:
        open_ = np.empty((0, 0))
    return _PriceGrid(win, symbols, close, open_, dead_from)


@dataclass(frozen=True)
class _WeightPlan:
    """One dense weight row per rebalance date, and which row each window date executes."""

    wmat: np.ndarray
    exec_row: np.ndarray
    reb_days: np.ndarray


def _weight_plan(weights: pl.DataFrame, grid: _PriceGrid, use_open: bool) -> _WeightPlan:
    """Rows on window price dates for known symbols; one dense row per rebalance date."""
    win, n_days, n_sym = grid.win, grid.win.size, grid.symbols.len()
    w_days = _day_numbers(weights)
    w_pos = np.searchsorted(win, w_days)
    w_ok = (w_pos < n_days) & (win[np.minimum(w_pos, n_days - 1)] == w_days)
    reb_days = np.flatnonzero(np.bincount(w_pos[w_ok], minlength=n_days))
    row_of = np.full(n_days, -1, np.int64)
    row_of[reb_days] = np.arange(reb_days.size)
    # one hash pass: unknown (or null) symbols become null codes and are dropped
    w_codes = weights["symbol"].cast(pl.Enum(grid.symbols), strict=False).to_physical()
    keep = w_ok & w_codes.is_not_null().to_numpy()
    weight_vals = weights["weight"].cast(pl.Float64).to_numpy()[keep]
    if not np.isfinite(weight_vals).all():
        msg = "column `weight` of the weights frame must be finite"
        raise BacktestError(msg)
    wmat = _dense(row_of[w_pos[keep]], w_codes.to_numpy()[keep].astype(np.int64), weight_vals,
                  (reb_days.size, n_sym), "weights")
    np.nan_to_num(wmat, copy=False, nan=0.0)  # unlisted symbols: target 0
    exec_row = np.full(n_days, -1, np.int64)
    if use_open:
        exec_row[1:] = row_of[:-1]  # weights of date t trade at the open of the next date
    else:
        exec_row[:] = row_of
    return _WeightPlan(wmat, exec_row, reb_days)


def _result(out: tuple, grid: _PriceGrid, plan: _WeightPlan, capital: float) -> BacktestResult:
    """The kernel's arrays as the equity and trades frames."""
    (equity, cash, turnover, cost, unfilled, gross, net, ruined,
     t_day, t_sym, t_shares, t_price, t_notional, t_cost) = out
    _check_finite(equity, cash, t_day, t_sym, t_shares, grid.win, grid.symbols)
    prev = np.concatenate(([capital], equity[:-1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        ret = np.where(prev > 0, equity / prev - 1.0, np.nan)
        gross_x = np.where(equity > 0, gross / equity, np.nan)
        net_x = np.where(equity > 0, net / equity, np.nan)
    dates = pl.Series("date", grid.win.astype(np.int32)).cast(pl.Date)
    eq = pl.DataFrame(
        {
            "date": dates,
            "equity": equity,
            "return": ret,
            "turnover": turnover,
            "cost": cost,
            "cash": cash,
            "unfilled": unfilled,
            "gross_exposure": gross_x,
            "net_exposure": net_x,
            "ruined": ruined,
        }
    ).with_columns(pl.col("return", "gross_exposure", "net_exposure").fill_nan(None))
    trades = pl.DataFrame(
        {
            "date": dates.gather(t_day),
            "symbol": grid.symbols.gather(t_sym),
            "shares": t_shares,
            "price": t_price,
            "notional": t_notional,
            "cost": t_cost,
        },
        schema={"date": pl.Date, "symbol": pl.String, "shares": pl.Float64,
                "price": pl.Float64, "notional": pl.Float64, "cost": pl.Float64},
    )
    n_rebalances = int((~ruined[plan.reb_days]).sum())
    ruined_on = dates[int(np.argmax(ruined))] if ruined.any() else None
    return BacktestResult(eq, trades, n_rebalances, ruined_on)


def _check_finite(
    equity: np.ndarray,
    cash: np.ndarray,
    t_day: np.ndarray,
    t_sym: np.ndarray,
    t_shares: np.ndarray,
    days: np.ndarray,
    symbols: pl.Series,
) -> None:
    """Raise :class:`BacktestError` if the arithmetic left the float range.

    Prices that pass Tier 1 (finite, > 0) can still be extreme enough (a subnormal close, a
    ratio beyond 1e308) that shares or equity overflow; say where instead of reporting NaN.
    """
    bad_days = np.flatnonzero(~np.isfinite(equity) | ~np.isfinite(cash))
    bad_trades = np.flatnonzero(~np.isfinite(t_shares))
    if bad_days.size == 0 and bad_trades.size == 0:
        return
    day = int(bad_days[0]) if bad_days.size else len(days)
    where = ""
    if bad_trades.size and int(t_day[bad_trades[0]]) <= day:
        day = int(t_day[bad_trades[0]])
        where = f" trading `{symbols[int(t_sym[bad_trades[0]])]}`"
    when = date.fromordinal(date(1970, 1, 1).toordinal() + int(days[day]))
    msg = (
        f"backtest overflowed on {when.isoformat()}{where}: shares or equity are not finite "
        f"(prices or weights too extreme for float64, e.g. a close near 1e-308); check `close`"
    )
    raise BacktestError(msg)

