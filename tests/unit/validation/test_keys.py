"""The audit's price-key facts: by position in the store's order, by group-by in any other, with
the same answers; and the audit's findings never depend on the order of the price rows."""

from __future__ import annotations

import datetime as dt

import hypothesis.strategies as st
import polars as pl
from hypothesis import given, settings

from qpipe.config import ThreadSafeConfig
from qpipe.validation._keys import PriceKeys
from qpipe.validation.audit import audit_allocation, price_keys
from qpipe.validation.notes import price_jumps

CFG = ThreadSafeConfig.from_mapping(
    {"allocation": {"top_n": 5, "max_weight": 0.5, "gross_leverage": 1.0}}
)
D0 = dt.date(2020, 1, 1)


@st.composite
def keys_frames(draw, nulls: bool = True) -> pl.DataFrame:
    n = draw(st.integers(0, 30))
    symbols = ["A", "B", "BB", "C", None] if nulls else ["A", "B", "BB", "C"]
    days = st.one_of(st.none(), st.integers(0, 9)) if nulls else st.integers(0, 9)
    rows = [
        (None if d is None else D0 + dt.timedelta(days=d), s)
        for d, s in draw(
            st.lists(st.tuples(days, st.sampled_from(symbols)), min_size=n, max_size=n)
        )
    ]
    return pl.DataFrame(rows, schema={"date": pl.Date, "symbol": pl.String}, orient="row")


def _reference(keys: pl.DataFrame) -> dict[str, dt.date]:
    firsts = keys.drop_nulls().group_by("symbol").agg(pl.col("date").min()).iter_rows()
    return dict(firsts)


@settings(deadline=None, max_examples=300)
@given(keys=keys_frames(), sort=st.booleans(), dedupe=st.booleans())
def test_facts_equal_a_group_by_in_any_order(keys, sort, dedupe):
    if dedupe:
        keys = keys.unique(maintain_order=True)
    if sort:
        keys = keys.sort("symbol", "date")
    facts = PriceKeys.of(keys)
    assert dict(facts.firsts.select("symbol", "_first").iter_rows()) == _reference(keys)
    assert facts.dates.to_list() == keys["date"].drop_nulls().unique().sort().to_list()
    store_order = (
        keys.null_count().sum_horizontal().item() == 0
        and keys.equals(keys.sort("symbol", "date"))
        and keys.n_unique() == keys.height
    )
    assert facts.ordered is bool(store_order)
    if facts.ordered:  # each symbol's run of rows, by position
        for symbol, _first, start, end in facts.firsts.iter_rows():
            run = keys.slice(start, end - start)
            assert run["symbol"].unique().to_list() == [symbol] and run["date"][0] == _first
        assert facts.firsts["_end"].sum() - facts.firsts["_start"].sum() == keys.height


@st.composite
def audit_cases(draw) -> tuple[pl.DataFrame, pl.DataFrame]:
    keys = draw(keys_frames(nulls=False)).unique(maintain_order=True)
    prices = keys.with_columns(pl.lit(1.0).alias("close"))
    n = draw(st.integers(1, 12))
    rows = draw(
        st.lists(
            st.tuples(
                st.integers(0, 10),
                st.sampled_from(["A", "B", "BB", "C", "Z"]),
                st.sampled_from([0.0, 0.1, 0.3, -0.2, 0.6, float("nan")]),
            ),
            min_size=n,
            max_size=n,
        )
    )
    w = pl.DataFrame(
        [(D0 + dt.timedelta(days=d), s, v) for d, s, v in rows],
        schema={"date": pl.Date, "symbol": pl.String, "weight": pl.Float64},
        orient="row",
    )
    return w, prices


@settings(deadline=None, max_examples=200)
@given(case=audit_cases(), seed=st.integers(0, 1000))
def test_the_audit_finds_the_same_in_the_store_order_and_shuffled(case, seed):
    w, prices = case
    ordered = prices.sort("symbol", "date")
    shuffled = prices.sample(fraction=1.0, shuffle=True, seed=seed)
    a = audit_allocation(w, ordered, CFG, raise_on_violation=False)
    b = audit_allocation(w, shuffled, CFG, raise_on_violation=False)
    assert price_keys(w, ordered).ordered or ordered.height == 0
    assert [v[:3] for v in a.violations] == [v[:3] for v in b.violations]
    assert {v[2] for v in a.violations} <= set(a.checks)


def test_price_jumps_trusts_an_order_the_audit_checked():
    prices = pl.DataFrame(
        {
            "date": [D0, D0 + dt.timedelta(days=1), D0, D0 + dt.timedelta(days=1)],
            "symbol": ["A", "A", "B", "B"],
            "close": [1.0, 10.0, 5.0, 5.0],
        }
    )
    facts = PriceKeys.of(prices.select("date", "symbol"))
    assert facts.ordered
    jumps = price_jumps(prices, 0.5, ordered=facts.ordered)
    assert jumps.rows() == [(D0 + dt.timedelta(days=1), "A", 9.0)]
    assert jumps.equals(price_jumps(prices.reverse(), 0.5))  # unordered input is sorted first
