"""Trade statistics, the cost breakdown and the long/short split, from ``trades.arrow`` & co.

Money is in the units of the run's capital (``backtest.initial_capital``; 1.0 by default, so
amounts read as fractions of the starting capital). Definitions are in docs/report.md.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl

from qpipe.conventions import PERIODS_PER_YEAR


@dataclass(frozen=True)
class TradeStats:
    """Fills and position round trips (open from flat -> back to flat, or a sign flip)."""

    fills: int
    symbols: int
    traded_notional: float  # sum |notional|
    round_trips: int  # closed round trips
    open_positions: int  # positions still open on the last day
    avg_holding_days: float | None  # calendar days, closed round trips
    win_rate: float | None  # share of closed round trips with P&L > 0
    profit_factor: float | None  # gross profit / gross loss of closed round trips
    avg_win: float | None
    avg_loss: float | None


def trade_stats(trades: pl.DataFrame) -> TradeStats:
    """Round-trip statistics from the fills (execution order kept within each symbol).

    A round trip's P&L is the sum of its fills' cash flows ``-notional - cost``; a fill that
    flips the sign of a position closes the old trip with the fraction that brings it to zero
    and opens a new one with the rest.
    """
    if trades.height == 0:
        return TradeStats(0, 0, 0.0, 0, 0, None, None, None, None, None)
    # Fills are in execution order within a date; sort by date first so the input order of
    # dates does not matter, then walk each symbol in that order.
    t = trades.sort("date", maintain_order=True).with_row_index("_i").sort(["symbol", "_i"])
    sym = t.get_column("symbol").to_list()
    q = t.get_column("shares").cast(pl.Float64).to_numpy()
    cash = -(t.get_column("notional").cast(pl.Float64).to_numpy())
    cash = cash - t.get_column("cost").cast(pl.Float64).fill_null(0.0).to_numpy()
    days = t.get_column("date").to_list()
    scale = t.group_by("symbol").agg(pl.col("shares").abs().max().alias("m"))
    eps = {s: 1e-9 * (m or 0.0) for s, m in scale.iter_rows()}
    closed: list[tuple[float, int]] = []  # (pnl, holding days)
    open_n = _walk_fills(sym, q.tolist(), cash.tolist(), days, eps, closed)  # lists: 5x faster
    pnl = np.array([p for p, _ in closed])
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    loss_sum = float(-losses.sum())
    return TradeStats(
        fills=trades.height,
        symbols=len(eps),
        traded_notional=float(np.abs(trades.get_column("notional").cast(pl.Float64)).sum()),
        round_trips=len(closed),
        open_positions=open_n,
        avg_holding_days=float(np.mean([h for _, h in closed])) if closed else None,
        win_rate=float(wins.size / pnl.size) if pnl.size else None,
        profit_factor=float(wins.sum() / loss_sum) if loss_sum > 0 else None,
        avg_win=float(wins.mean()) if wins.size else None,
        avg_loss=float(losses.mean()) if losses.size else None,
    )


def _walk_fills(
    sym: list[str],
    q: list[float],
    cash: list[float],
    days: list[dt.date],
    eps: Mapping[str, float],
    closed: list[tuple[float, int]],
) -> int:
    """One pass over the fills sorted by symbol; appends closed trips, returns open positions."""
    open_n, current = 0, None
    pos = acc = 0.0
    start = days[0] if days else dt.date(1970, 1, 1)
    for i in range(len(sym)):
        if sym[i] != current:
            open_n += pos != 0.0
            current, pos, acc = sym[i], 0.0, 0.0
        before, after = pos, pos + q[i]
        if abs(after) <= eps[sym[i]]:
            after = 0.0
        if before == 0.0:
            start, acc = days[i], 0.0
        if before != 0.0 and after != 0.0 and (before > 0) != (after > 0):
            frac = abs(before) / abs(q[i])  # the part of the fill that closes the old trip
            closed.append((acc + frac * cash[i], (days[i] - start).days))
            start, acc = days[i], (1.0 - frac) * cash[i]
        elif after == 0.0 and before != 0.0:
            closed.append((acc + cash[i], (days[i] - start).days))
            acc = 0.0
        else:
            acc += cash[i]
        pos = after
    return open_n + (pos != 0.0)


@dataclass(frozen=True)
class Costs:
    """What trading cost, in units of the capital; ``borrow`` is estimated from exposures."""

    fees: float
    slippage: float
    borrow: float
    traded_notional: float
    capital: float

    @property
    def total(self) -> float:
        return self.fees + self.slippage + self.borrow


def cost_breakdown(
    equity: pl.DataFrame, trades: pl.DataFrame, params: Mapping[str, float], capital: float
) -> Costs:
    """Fees, slippage and borrow paid over the run.

    * fees: the fills' ``cost`` column (``cost_bps`` of traded notional);
    * slippage: fills are at ``p(1 + s)`` (buys) / ``p(1 - s)`` (sells), so each fill paid
      ``|notional| * s / (1 + s)`` or ``|notional| * s / (1 - s)`` against the reference price;
    * borrow: ``borrow_bps / 1e4 / 252`` times the previous day's short market value, the short
      side being ``(gross - net) / 2 * equity`` from the daily exposure columns.
    """
    s = float(params.get("slippage_bps", 0.0) or 0.0) / 1e4
    notional = trades.get_column("notional").cast(pl.Float64).to_numpy() if trades.height else None
    fees = float(trades.get_column("cost").cast(pl.Float64).sum() or 0.0) if trades.height else 0.0
    slippage = 0.0
    traded = 0.0
    if notional is not None:
        traded = float(np.abs(notional).sum())
        if s > 0:
            buys = notional > 0
            slippage = float(
                (notional[buys] * s / (1 + s)).sum() - (notional[~buys] * s / (1 - s)).sum()
            )
    borrow = 0.0
    rate = float(params.get("borrow_bps", 0.0) or 0.0) / 1e4 / PERIODS_PER_YEAR
    if rate > 0 and {"gross_exposure", "net_exposure"} <= set(equity.columns):
        short = equity.select(
            ((pl.col("gross_exposure") - pl.col("net_exposure")) / 2 * pl.col("equity"))
            .shift(1)
            .fill_null(0.0)
            .alias("s")
        )
        borrow = float(np.nansum(short.get_column("s").to_numpy()) * rate)
    return Costs(fees, slippage, borrow, traded, capital)


def has_shorts(weights: pl.DataFrame, equity: pl.DataFrame) -> bool:
    """Whether the book ever targets or holds a short position."""
    if weights.height and bool((weights.get_column("weight") < 0).any()):
        return True
    if {"gross_exposure", "net_exposure"} <= set(equity.columns):
        gap = equity.select((pl.col("gross_exposure") - pl.col("net_exposure")).max()).item()
        return gap is not None and math.isfinite(gap) and gap > 1e-12
    return False


def long_short_pnl(trades: pl.DataFrame, prices: pl.DataFrame) -> pl.DataFrame:
    """Daily close-to-close P&L of the long and the short positions: ``date, long, short``.

    Positions are the cumulative fills per symbol at each day's close; the P&L of day t is the
    position held at t-1 times the close change (fills at the close, as the default execution).
    """
    pos = (
        trades.group_by("symbol", "date")
        .agg(pl.col("shares").cast(pl.Float64).sum())
        .sort("symbol", "date")
        .with_columns(pl.col("shares").cum_sum().over("symbol").alias("pos"))
        .select("symbol", "date", "pos")
        .sort("date")
    )
    px = (
        prices.select("date", "symbol", pl.col("close").cast(pl.Float64))
        .join(pos.select("symbol").unique(), on="symbol", how="semi")
        .sort("date")
    )
    # Both sides are sorted by date (checked per group would need sorted groups; skip it).
    held = (
        px.join_asof(pos, on="date", by="symbol", strategy="backward", check_sortedness=False).sort(
            "symbol", "date"
        )
    ).with_columns(
        pl.col("pos").fill_null(0.0).shift(1).over("symbol").alias("prev"),
        pl.col("close").diff().over("symbol").alias("dc"),
    )
    pnl = pl.col("prev") * pl.col("dc")
    return (
        held.group_by("date")
        .agg(
            pnl.filter(pl.col("prev") > 0).sum().alias("long"),
            pnl.filter(pl.col("prev") < 0).sum().alias("short"),
        )
        .sort("date")
        .with_columns(pl.col("long", "short").fill_null(0.0))
    )
