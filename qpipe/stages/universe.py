"""A point-in-time universe: only the symbols that were members on a date can be chosen then.

An index's membership changes: names join and leave. Ranking today's members over the whole
history picks, in 2015, names that were only added later because they did well (survivorship
bias). A membership table (``symbol``, ``from``, ``to``; ``to`` null = still a member) says who
was in the universe when.

- :func:`mark_members` adds a boolean ``in_universe`` column to the prices (done once, eagerly,
  when the run ingests them), so every stage and the point-in-time audit, which re-runs the
  strategy on truncated prices, see the same membership.
- :func:`members_only` nulls the signal of every non-member on every date; the allocation only
  ranks names with a non-null signal, so a non-member gets weight 0.

Membership on date ``d`` is ``exists i: from_i <= d <= to_i`` over the symbol's intervals,
computed in one as-of join: the largest ``to`` among the intervals that started by ``d`` (``to``
null counts as forever) must be ``>= d``. Overlapping or adjacent intervals simply union.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from qpipe.stages.base import stage

__all__ = ["MEMBER_COLUMN", "mark_members", "members_only"]

MEMBER_COLUMN = "in_universe"
_FOREVER = dt.date(9999, 12, 31)


def _spans(membership: pl.LazyFrame) -> pl.LazyFrame:
    """Per symbol and interval start, the last day covered by any interval started by then."""
    return (
        membership.select("symbol", "from", pl.col("to").fill_null(_FOREVER))
        .sort("symbol", "from")
        .with_columns(pl.col("to").cum_max().over("symbol").alias("_covered_to"))
        .select("symbol", pl.col("from").alias("_from"), "_covered_to")
    )


def _sorted_by_symbol_then_date(prices: pl.DataFrame) -> bool:
    if prices.height < 2:
        return True
    sym, day = pl.col("symbol"), pl.col("date")
    ordered = (sym > sym.shift(1)) | ((sym == sym.shift(1)) & (day >= day.shift(1)))
    first = pl.int_range(pl.len()) == 0
    return bool(prices.select((ordered | first).fill_null(False).all()).item())


def mark_members(
    prices: pl.DataFrame | pl.LazyFrame, membership: pl.DataFrame | pl.LazyFrame
) -> pl.DataFrame | pl.LazyFrame:
    """``prices`` with ``in_universe``: whether the symbol was a member on that date.

    Row order and every other column are kept. Prices sorted by (symbol, date), as every
    ingested dataset is, are joined as they are (0.14-0.25 s for 1.24M rows); other orders are
    sorted by date first and put back (about 1.7 s). The work is eager (the order is checked
    on the data); a LazyFrame in gives a LazyFrame out.
    """
    if isinstance(prices, pl.LazyFrame):
        return _mark(prices.collect(), membership.lazy()).lazy()
    return _mark(prices, membership.lazy())


def _mark(prices: pl.DataFrame, membership: pl.LazyFrame) -> pl.DataFrame:
    spans = _spans(membership)
    asof = {
        "left_on": "date",
        "right_on": "_from",
        "by": "symbol",
        "strategy": "backward",
        "check_sortedness": False,  # both sides are sorted by the key within each symbol
    }
    member = (pl.col("_covered_to") >= pl.col("date")).fill_null(False).alias(MEMBER_COLUMN)
    if _sorted_by_symbol_then_date(prices):
        joined = prices.lazy().join_asof(spans, **asof)  # type: ignore[arg-type]
        return joined.with_columns(member).drop("_from", "_covered_to").collect()
    joined = (
        prices.lazy().with_row_index("_order").sort("date").join_asof(spans.sort("_from"), **asof)  # type: ignore[arg-type]
    )
    return (
        joined.with_columns(member).sort("_order").drop("_order", "_from", "_covered_to").collect()
    )


@stage(output="signals")
def members_only(signals: pl.LazyFrame, prices: pl.LazyFrame) -> pl.LazyFrame:
    """Null the `signal` of each symbol on each date it is not a member of the universe.

    ``prices`` carries ``in_universe`` (:func:`mark_members`). Every row of ``signals`` is kept
    (the returns of past non-members still feed volatility targeting); only the signal goes, so
    a non-member is never ranked and gets weight 0.
    """
    flags = prices.select("date", "symbol", MEMBER_COLUMN)
    marked = signals.join(flags, on=["date", "symbol"], how="left", maintain_order="left")
    keep = pl.col(MEMBER_COLUMN).fill_null(False)
    signal = pl.when(keep).then(pl.col("signal")).otherwise(None)
    return marked.with_columns(signal.alias("signal")).drop(MEMBER_COLUMN)
