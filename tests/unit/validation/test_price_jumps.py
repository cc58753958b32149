"""Defect 5 (issue 15): a close that moves beyond a plausible bound in a day is warned about."""

from __future__ import annotations

import datetime as dt
import itertools

import polars as pl
from hypothesis import event, given, settings
from hypothesis import strategies as st

from qpipe.config import ThreadSafeConfig
from qpipe.data.universe import builtin_universe
from qpipe.validation.audit import price_jumps, price_notes

CFG = ThreadSafeConfig.default()


def test_one_close_of_1e200_is_warned_about_both_ways():
    prices = builtin_universe(symbols=20, start="2020-01-01", end="2020-12-31")
    day = prices["date"].unique().sort()[100]
    bad = prices.with_columns(
        pl.when((pl.col("symbol") == prices["symbol"][0]) & (pl.col("date") == day))
        .then(1e200)
        .otherwise(pl.col("close"))
        .alias("close")
    )
    (note,) = price_notes(bad, CFG)
    assert note.startswith("2 daily price moves beyond `validation.max_daily_return` = 10")
    assert day.isoformat() in note and "(return +1.86e+198)" in note
    assert price_notes(prices, CFG) == []
    # a tighter bound flags ordinary days too; the key is configurable
    assert price_notes(prices, CFG.replace(validation={"max_daily_return": 0.01}))


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 30),
            st.sampled_from(["A", "B", "CC"]),
            st.sampled_from([1.0, 2.0, 5.0, 30.0, 100.0, 1e200]),
        ),
        min_size=1,
        max_size=60,
        unique_by=lambda r: (r[0], r[1]),
    ),
    shuffle=st.booleans(),
)
def test_price_jumps_match_a_plain_reference(rows, shuffle):
    """Every move beyond the bound, in any row order, against plain Python."""
    base = dt.date(2020, 1, 1)
    frame = pl.DataFrame(
        {
            "date": [base + dt.timedelta(days=d) for d, _, _ in rows],
            "symbol": [s for _, s, _ in rows],
            "close": [c for _, _, c in rows],
        }
    )
    frame = frame.sample(fraction=1.0, shuffle=True, seed=2) if shuffle else frame
    expected = set()
    for sym in {s for _, s, _ in rows}:
        series = sorted((d, c) for d, s, c in rows if s == sym)
        for (_, c0), (d1, c1) in itertools.pairwise(series):
            if c1 / c0 > 11.0 or c1 / c0 < 1 / 11.0:
                expected.add((base + dt.timedelta(days=d1), sym))
    event("has jumps" if expected else "no jumps")
    got = price_jumps(frame, 10.0)
    assert set(zip(got["date"], got["symbol"], strict=True)) == expected
