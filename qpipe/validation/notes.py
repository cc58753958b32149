"""Warnings about legal but probably unintended inputs to a run (never errors).

:func:`allocation_notes` looks at the target weights (all-cash rebalances, cash drag);
:func:`price_notes` at the prices (a close moving beyond ``validation.max_daily_return`` in a
day, almost always a bad tick). The run records them in the ``allocation_audit`` record's
``warnings`` and prints each as ``warning: ...``.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from qpipe.config import ThreadSafeConfig

__all__ = ["allocation_notes", "price_jumps", "price_notes"]

SHOW = 5  # moves quoted in a warning


def allocation_notes(weights: pl.DataFrame, cfg: ThreadSafeConfig) -> list[str]:
    """Observations about legal but probably unintended weights (warnings, never errors).

    - Many rebalance dates hold no position (the strategy's warm-up ate most of the data).
    - Dates with positions allocate far less than the gross limit (e.g. ``top_n × max_weight``
      below 1 leaves the rest in cash).
    """
    if weights.height == 0:
        return []
    gross = (
        weights.group_by("date")
        .agg(pl.col("weight").abs().sum().alias("gross"))
        .get_column("gross")
        .to_numpy()
    )
    notes: list[str] = []
    empty = int((gross <= 1e-12).sum())
    if empty > 0.25 * gross.size:
        notes.append(
            f"{empty} of {gross.size} rebalance dates hold no position (warm-up of the "
            f"strategy's windows, or no signal); metrics include those all-cash days"
        )
    held = gross[gross > 1e-12]
    limit = cfg.allocation.gross_leverage
    if held.size and float(held.mean()) < 0.75 * limit:
        why = ""
        a = cfg.allocation
        if a.scheme in ("top_n", "inverse_vol") and a.top_n * a.max_weight < limit:
            why = (
                f"; `allocation.top_n` × `allocation.max_weight` = {a.top_n * a.max_weight:g} "
                "caps it, the rest stays in cash"
            )
        notes.append(
            f"dates with positions allocate {float(held.mean()):.0%} of capital on average "
            f"(gross limit {limit:.0%}){why}"
        )
    return notes


def _ordered(keys: pl.DataFrame) -> bool:
    """Whether rows are in (symbol, date) order, the store's order (one pass, no sort)."""
    sym, date = pl.col("symbol"), pl.col("date")
    prev = sym.shift()
    ok = prev.is_null() | (sym > prev) | ((sym == prev) & (date > date.shift()))
    return bool(keys.select(ok.all()).item())


def price_jumps(prices: pl.DataFrame, bound: float, *, ordered: bool = False) -> pl.DataFrame:
    """Day-to-day moves of a symbol's close beyond ``bound`` either way.

    A move is from a symbol's previous price row to the next: up by more than ``bound`` (a
    return above ``bound``) or down by as much in log terms (``close_t / close_prev`` below
    ``1 / (1 + bound)``). Returns `date`, `symbol`, `return`, sorted by (symbol, date).
    ``ordered=True`` says the rows are already in (symbol, date) order (the audit checked it,
    :class:`~qpipe.validation._keys.PriceKeys`), so it is not checked again.
    """
    keys = prices.select("date", "symbol", pl.col("close").cast(pl.Float64))
    if keys.height and not ordered and not _ordered(keys):
        keys = keys.sort("symbol", "date")
    close = keys["close"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = close[1:] / close[:-1]
    wild = np.flatnonzero((ratio > 1.0 + bound) | (ratio < 1.0 / (1.0 + bound))) + 1
    if wild.size == 0:
        return pl.DataFrame(schema={"date": pl.Date, "symbol": pl.String, "return": pl.Float64})
    here = keys[wild]
    before = keys[wild - 1]
    same = (here["symbol"] == before["symbol"]).fill_null(False)
    moves = here.with_columns(pl.Series("return", ratio[wild - 1] - 1.0)).filter(same)
    return moves.select("date", "symbol", "return")


def price_notes(prices: pl.DataFrame, cfg: ThreadSafeConfig, *, ordered: bool = False) -> list[str]:
    """A warning when some close moves more than ``validation.max_daily_return`` in a day.

    Such a move is almost always a bad tick (a close of 1e200, a missing decimal point); the
    backtest trades through it and every metric after it is suspect. ``ordered``: see
    :func:`price_jumps`.
    """
    bound = float(cfg.validation.max_daily_return)
    jumps = price_jumps(prices, bound, ordered=ordered)
    if jumps.height == 0:
        return []
    shown = ", ".join(
        f"`{s}` on {d.isoformat()} (return {r:+.3g})" for d, s, r in jumps.head(SHOW).iter_rows()
    )
    more = f" and {jumps.height - SHOW} more" if jumps.height > SHOW else ""
    return [
        f"{jumps.height} daily price move{'s' if jumps.height > 1 else ''} beyond "
        f"`validation.max_daily_return` = {bound:g} (+{bound:.0%} or the reverse): {shown}{more}; "
        "check the data, metrics over such a move mean little"
    ]
