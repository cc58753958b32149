"""What the Tier 2 audit needs to know about the price keys, computed once per audit.

The store keeps prices in ``(symbol, date)`` order with unique keys (ingestion sorts and checks
them), so each symbol is one run of rows with its dates ascending: its first price date is the
first row of its run, found by position instead of a group-by of every key by its symbol string.
:class:`PriceKeys` checks that order in one pass (a symbol compared with the row before, dates
compared as integers, and the run starts compared with each other) and falls back to the
group-by when the frame is in any other order, so the answer never depends on the order.

The structural checks (first price per symbol, the price-date set), the price-move warning
(:func:`~qpipe.validation.notes.price_jumps` needs the same order) and the point-in-time plan
(the sampled symbols' rows by position) share it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

__all__ = ["PriceKeys", "distinct_dates"]


@dataclass(frozen=True)
class PriceKeys:
    """The price keys and the facts the audit reads from them.

    Attributes
    ----------
    keys
        ``date`` (Date) and ``symbol`` (String), in the frame's order.
    ordered
        True when the rows are strictly sorted by ``(symbol, date)`` without a null key (the
        store's order): every symbol is one run, dates strictly ascending within it.
    firsts
        One row per priced symbol: ``symbol``, ``_first`` (its first price date), and, when
        ``ordered``, ``_start`` and ``_end`` (its run of rows, end exclusive).
    dates
        The distinct price dates (no null).
    """

    keys: pl.DataFrame
    ordered: bool
    firsts: pl.DataFrame
    dates: pl.Series

    @classmethod
    def of(cls, keys: pl.DataFrame) -> PriceKeys:
        """Facts of ``keys`` (``date`` Date, ``symbol`` String)."""
        dates = distinct_dates(keys.get_column("date"))
        runs = _runs(keys)
        if runs is not None:
            return cls(keys, True, runs, dates)
        firsts = (
            keys.filter(pl.col("symbol").is_not_null() & pl.col("date").is_not_null())
            .group_by("symbol")
            .agg(pl.col("date").min().alias("_first"))
        )
        return cls(keys, False, firsts, dates)

    def has_price(self, asked: pl.DataFrame) -> pl.Series | None:
        """For each row of ``asked`` (``date``, ``symbol``): is there a price row with that key?

        A binary search for the date in its symbol's run of rows (dates ascending there), a
        dozen vectorised steps over the asked rows instead of a join over every price key.
        ``None`` when the keys are not :attr:`ordered` (the caller joins instead).
        """
        if not self.ordered:
            return None
        runs = self.firsts.select("symbol", "_start", "_end")
        spans = asked.select("symbol").join(runs, on="symbol", how="left", maintain_order="left")
        lo = spans.get_column("_start").fill_null(0).to_numpy().copy()
        end = spans.get_column("_end").fill_null(0).to_numpy()
        hi = end.copy()
        target = asked.get_column("date").cast(pl.Int32).fill_null(-(2**31)).to_numpy()
        date = self.keys.get_column("date")
        last = max(self.keys.height - 1, 0)

        def day(rows: np.ndarray) -> np.ndarray:
            picked = date.gather(pl.Series(np.minimum(rows, last), dtype=pl.Int64))
            return picked.cast(pl.Int32).to_numpy()

        while (open_ := lo < hi).any():  # lower bound of `target` in [lo, hi)
            mid = (lo + hi) // 2
            right = open_ & (day(mid) < target)
            lo = np.where(right, mid + 1, lo)
            hi = np.where(open_ & ~right, mid, hi)
        if self.keys.height == 0:
            return pl.Series("has_price", np.zeros(asked.height, dtype=bool))
        return pl.Series("has_price", (lo < end) & (day(lo) == target))


def distinct_dates(date: pl.Series) -> pl.Series:
    """The distinct dates, by counting day numbers (a few thousand bins) instead of hashing."""
    days = date.drop_nulls()
    if days.len() == 0:
        return pl.Series("date", [], dtype=pl.Date)
    ints = days.cast(pl.Int32).to_numpy()
    low = int(ints.min())
    if int(ints.max()) - low > 1 << 22:  # dates spread over millennia: hash them instead
        return days.unique().sort()
    present = np.flatnonzero(np.bincount(ints - low)) + low
    return pl.Series("date", present.astype(np.int32)).cast(pl.Date)


def _runs(keys: pl.DataFrame) -> pl.DataFrame | None:
    """Each symbol's run of rows, when ``keys`` are in the store's order; else None."""
    if keys.height == 0:
        return pl.DataFrame(
            schema={"symbol": pl.String, "_first": pl.Date, "_start": pl.Int64, "_end": pl.Int64}
        )
    if keys.get_column("symbol").null_count() or keys.get_column("date").null_count():
        return None
    sym, date = pl.col("symbol"), pl.col("date")
    new = sym.ne_missing(sym.shift())
    flags = keys.select(new.alias("new"), (date > date.shift()).fill_null(True).alias("up"))
    new_run, up = flags.get_column("new"), flags.get_column("up")
    if not (new_run | up).all():  # a date not after the previous row of its symbol
        return None
    start = new_run.arg_true().cast(pl.Int64).alias("_start")
    starts = keys[start].select("symbol", pl.col("date").alias("_first")).with_columns(start)
    symbol = starts.get_column("symbol")
    if not (symbol.slice(1) > symbol.slice(0, symbol.len() - 1)).all():
        return None  # a symbol's rows are not one run, or runs are not in symbol order
    end = starts.get_column("_start").shift(-1, fill_value=keys.height).alias("_end")
    return starts.with_columns(end)
