"""The point-in-time universe stage against a plain-Python reference (hypothesis)."""

from __future__ import annotations

import datetime as dt

import polars as pl
from hypothesis import example, given, settings, target
from hypothesis import strategies as st

from qpipe.stages.universe import MEMBER_COLUMN, mark_members, members_only

DAY0 = dt.date(2020, 1, 1)
SYMBOLS = ("A", "B", "C")


def day(i: int) -> dt.date:
    return DAY0 + dt.timedelta(days=i)


def reference_member(symbol: str, date: dt.date, intervals: list[tuple]) -> bool:
    """Plain Python: a member iff some interval of the symbol covers the date."""
    return any(
        s == symbol and start <= date and (end is None or date <= end)
        for s, start, end in intervals
    )


intervals_st = st.lists(
    st.tuples(
        st.sampled_from(SYMBOLS),
        st.integers(0, 30),
        st.one_of(st.none(), st.integers(0, 30)),
    ).map(lambda t: (t[0], day(t[1]), None if t[2] is None else day(max(t[1], t[2])))),
    max_size=8,
)
rows_st = st.lists(
    st.tuples(st.sampled_from(SYMBOLS), st.integers(0, 35)), max_size=40, unique=True
)


def membership_frame(intervals: list[tuple]) -> pl.LazyFrame:
    return pl.LazyFrame(
        {
            "symbol": [i[0] for i in intervals],
            "from": [i[1] for i in intervals],
            "to": [i[2] for i in intervals],
        },
        schema={"symbol": pl.String, "from": pl.Date, "to": pl.Date},
    )


@settings(deadline=None, max_examples=80)
@given(intervals=intervals_st, rows=rows_st)
@example(intervals=[], rows=[("A", 1)])
@example(intervals=[("A", day(0), day(5)), ("A", day(3), day(10))], rows=[("A", 8), ("A", 11)])
@example(intervals=[("A", day(0), day(2)), ("A", day(6), None)], rows=[("A", 4), ("A", 9)])
def test_mark_members_matches_the_reference(intervals, rows):
    prices = pl.LazyFrame(
        {"date": [day(d) for _, d in rows], "symbol": [s for s, _ in rows]},
        schema={"date": pl.Date, "symbol": pl.String},
    ).with_columns(pl.lit(1.0).alias("close"))
    marked = mark_members(prices.collect(), membership_frame(intervals).collect())
    assert marked.drop(MEMBER_COLUMN).equals(prices.collect())  # order and columns kept
    in_order = prices.sort("symbol", "date").collect()  # the stored order: the fast path
    fast = mark_members(in_order, membership_frame(intervals).collect())
    assert fast.equals(marked.sort("symbol", "date"))
    want = [reference_member(s, day(d), intervals) for s, d in rows]
    assert marked.get_column(MEMBER_COLUMN).to_list() == want
    target(float(sum(want)), label="members found")
    target(float(len(want) - sum(want)), label="non-members found")


def test_members_only_nulls_only_non_member_signals():
    prices = pl.LazyFrame(
        {
            "date": [day(0), day(1), day(0), day(1)],
            "symbol": ["A", "A", "B", "B"],
            MEMBER_COLUMN: [True, False, False, True],
        }
    )
    signals = pl.LazyFrame(
        {
            "date": [day(1), day(0), day(1), day(0)],
            "symbol": ["B", "B", "A", "A"],
            "signal": [1.0, 2.0, 3.0, 4.0],
        }
    )
    out = members_only(signals, prices).collect()
    assert out.columns == ["date", "symbol", "signal"]
    assert out.rows() == [
        (day(1), "B", 1.0),
        (day(0), "B", None),
        (day(1), "A", None),
        (day(0), "A", 4.0),
    ]
