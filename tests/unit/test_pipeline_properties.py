"""Property tests: the allocation audit and the accounting, alone and chained after ingestion,
either succeed with their invariants intact or raise a ``QpipeError`` -- never another exception
type -- on generated prices and weights (empty, single row, single symbol, gaps, 1e-300/1e300,
NaN/inf, duplicates)."""

from __future__ import annotations

import datetime as dt
import math
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from qpipe.backtest.accounting import simulate
from qpipe.config import ThreadSafeConfig
from qpipe.errors import BacktestError, QpipeError
from qpipe.ingest import ingest_frame
from qpipe.store import ArrowStore
from qpipe.validation.audit import audit_allocation

# How many examples of each property got past the early `return` to its invariant: a property
# whose every example raised would pass vacuously (see the last test).
REACHED: Counter[str] = Counter()


def _reached(name: str) -> None:
    REACHED[name] += 1
    event("invariant checked")


def _stopped(name: str) -> None:
    REACHED[f"{name}:stopped"] += 1
    event("stopped by a QpipeError")


SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CFG = ThreadSafeConfig.default().replace(allocation={"max_weight": 1.0, "long_only": False})
D0 = dt.date(2020, 1, 1)

symbols = st.sampled_from(["A", "B", "C", "../x"])
days = st.integers(0, 12).map(lambda k: D0 + dt.timedelta(days=k))
closes = st.floats(min_value=0.5, max_value=200.0)
# Extreme levels (1e-300, 1e300) as a per-frame scale: extreme prices, but price *ratios* that
# keep equity representable; an overflowing ratio is a BacktestError (tested at the end).
scales = st.sampled_from([1.0, 1e-300, 1e300])
bad_closes = st.one_of(closes, st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -1.0]))
weights_values = st.one_of(
    st.floats(min_value=-1.0, max_value=1.0),
    st.sampled_from([0.0, 1e-300, 1e300, -1e300, math.nan, math.inf, -math.inf]),
)


@st.composite
def price_frames(draw: st.DrawFn, bad: bool = False, min_rows: int = 0) -> pl.DataFrame:
    """0-30 rows over 4 symbols and 13 days: gaps, single rows, single symbols; unique keys
    unless ``bad`` (which also allows non-positive and non-finite closes)."""
    # with ``bad``, a third of the frames are corrupted (so the rest reach the invariants)
    corrupt = bad and draw(st.sampled_from([False, False, True]))
    keys = draw(
        st.lists(st.tuples(days, symbols), min_size=min_rows, max_size=30, unique=not corrupt)
    )
    scale = draw(scales)
    values = draw(
        st.lists(bad_closes if corrupt else closes, min_size=len(keys), max_size=len(keys))
    )
    values = [v * scale for v in values]
    return pl.DataFrame(
        {"date": [k[0] for k in keys], "symbol": [k[1] for k in keys], "close": values},
        schema={"date": pl.Date, "symbol": pl.String, "close": pl.Float64},
    )


# what the audit lets through to the accounting in a run: |w| bounded by the limits
sane_weights = st.one_of(
    st.floats(min_value=-2.0, max_value=2.0),
    st.sampled_from([0.0, 1e-300, math.nan, math.inf, -math.inf]),
)


@st.composite
def weight_frames(
    draw: st.DrawFn, values: st.SearchStrategy[float] = weights_values, unique: bool = False
) -> pl.DataFrame:
    keys = draw(st.lists(st.tuples(days, symbols), max_size=15, unique=unique))
    values = draw(st.lists(values, min_size=len(keys), max_size=len(keys)))
    return pl.DataFrame(
        {"date": [k[0] for k in keys], "symbol": [k[1] for k in keys], "weight": values},
        schema={"date": pl.Date, "symbol": pl.String, "weight": pl.Float64},
    )


EMPTY_PRICES = pl.DataFrame(schema={"date": pl.Date, "symbol": pl.String, "close": pl.Float64})
EMPTY_WEIGHTS = pl.DataFrame(schema={"date": pl.Date, "symbol": pl.String, "weight": pl.Float64})
ONE_PRICE = pl.DataFrame({"date": [D0], "symbol": ["A"], "close": [1e-300]})
ONE_WEIGHT = pl.DataFrame({"date": [D0], "symbol": ["A"], "weight": [1.0]})


@SETTINGS
@given(prices=price_frames(), weights=weight_frames())
@example(prices=EMPTY_PRICES, weights=EMPTY_WEIGHTS)
@example(prices=ONE_PRICE, weights=ONE_WEIGHT)
def test_audit_reports_or_raises_a_qpipe_error(prices, weights):
    try:
        report = audit_allocation(weights, prices, CFG, raise_on_violation=False)
    except QpipeError:
        _stopped("audit")
        return
    _reached("audit")
    assert report.passed == (not report.violations)
    bad = weights.filter(~pl.col("weight").is_finite())
    assert (bad.height > 0) <= any(v[2] == "finite" for v in report.violations)
    dup = weights.select("date", "symbol").is_duplicated().any()
    assert dup <= any(v[2] == "duplicate" for v in report.violations)


def _check_equity(prices: pl.DataFrame, result) -> None:
    eq = result.equity
    assert eq["date"].is_sorted() and eq["date"].n_unique() == eq.height
    assert eq.height == prices["date"].n_unique()
    if "cash" in eq.columns:
        cash = eq["cash"].to_numpy()
        assert np.all(np.isnan(cash) | (cash >= -1e-9 * np.maximum(1.0, np.abs(cash))))
    if result.ruined_on is None:
        assert not eq["ruined"].any()
        assert np.all(np.isfinite(eq["equity"].to_numpy()))
    assert np.all(eq["cost"].fill_nan(0.0).to_numpy() >= 0)


@SETTINGS
@given(
    prices=price_frames(),
    weights=weight_frames(sane_weights),
    cost=st.sampled_from([0.0, 10.0, 1e4]),
)
@example(prices=EMPTY_PRICES, weights=EMPTY_WEIGHTS, cost=0.0)
@example(prices=ONE_PRICE, weights=ONE_WEIGHT, cost=10.0)
def test_accounting_keeps_invariants_or_raises_a_qpipe_error(prices, weights, cost):
    try:
        result = simulate(prices, weights, cost_bps=cost)
    except QpipeError:
        _stopped("accounting")
        return
    _reached("accounting")
    _check_equity(prices, result)


@st.composite
def chain_inputs(draw: st.DrawFn) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Prices (a third corrupted) and weights: two thirds of them legal for those prices (on
    priced (date, symbol) keys, |w| <= 0.25 so four symbols stay within the gross limit), the
    rest anything."""
    prices = draw(price_frames(bad=True, min_rows=1))  # the empty frame is an explicit example
    if prices.height == 0 or draw(st.sampled_from([False, False, True])):
        return prices, draw(weight_frames())
    keys = (
        prices.filter(pl.col("close").is_finite() & (pl.col("close") > 0))
        .select("date", "symbol")
        .unique(maintain_order=True)
    )
    picked = draw(st.lists(st.integers(0, max(keys.height - 1, 0)), max_size=8, unique=True))
    chosen = keys[picked] if keys.height else keys
    values = draw(st.lists(st.floats(-0.25, 0.25), min_size=chosen.height, max_size=chosen.height))
    return prices, chosen.with_columns(pl.Series("weight", values, dtype=pl.Float64))


@SETTINGS
@given(inputs=chain_inputs())
@example(inputs=(EMPTY_PRICES, EMPTY_WEIGHTS))
def test_ingest_audit_backtest_chain_never_escapes_a_non_qpipe_error(inputs):
    """The run's order: Tier 1, then Tier 2, then the accounting; each stage either passes
    its output on or stops the chain with a ``QpipeError``."""
    prices, weights = inputs
    with tempfile.TemporaryDirectory() as tmp:
        store = ArrowStore(Path(tmp) / "store")
        try:
            stored = store.open(ingest_frame(prices, store, name="generated").ref)
            audit_allocation(weights, stored, CFG)
            result = simulate(stored, weights, cost_bps=10.0)
        except QpipeError:
            _stopped("chain")
            return
        _reached("chain")
        _check_equity(stored, result)


@pytest.mark.parametrize(
    ("closes", "weight"),
    [([1.0, 5e-324, 5e-324], 1.0), ([2e-308, 2e-308, 4.0], 1.0), ([1.0, 1.0, 2.0], 1e300)],
    ids=["subnormal-close", "ratio-beyond-float", "weight-1e300"],
)
def test_float_overflow_is_a_clear_backtest_error_not_nan_equity(closes, weight):
    """Closes that pass Tier 1 (finite, > 0) can still overflow shares or equity."""
    days = [D0 + dt.timedelta(days=i) for i in range(3)]
    prices = pl.DataFrame({"date": days, "symbol": ["B"] * 3, "close": closes})
    weights = pl.DataFrame({"date": [days[1]], "symbol": ["B"], "weight": [weight]})
    try:
        result = simulate(prices, weights, cost_bps=10.0)
    except BacktestError as exc:
        assert "overflowed on 2020-01-0" in str(exc) and "`close`" in str(exc)
        return
    _check_equity(prices, result)  # or it stays finite


PROPERTIES = {
    "audit": test_audit_reports_or_raises_a_qpipe_error,
    "accounting": test_accounting_keeps_invariants_or_raises_a_qpipe_error,
    "chain": test_ingest_audit_backtest_chain_never_escapes_a_non_qpipe_error,
}


@pytest.mark.parametrize("name", sorted(PROPERTIES))
def test_each_property_reached_its_invariant_often_enough(name):
    """Not vacuous: at least a quarter of the examples (and 8) got past the early return."""
    if REACHED[name] + REACHED[f"{name}:stopped"] == 0:  # run alone (-k): run the property now
        PROPERTIES[name]()
    reached, stopped = REACHED[name], REACHED[f"{name}:stopped"]
    assert reached >= 8 and reached >= (reached + stopped) / 4, (reached, stopped)
