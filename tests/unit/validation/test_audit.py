"""Tier 2 allocation audit: every check fails on its own bad input; the point-in-time check catches
look-ahead and passes honest strategies."""

from __future__ import annotations

import datetime as dt
import json
import pickle

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qpipe.config import FrozenTable, ThreadSafeConfig
from qpipe.errors import AllocationAuditError
from qpipe.stages.base import Pipeline, stage
from qpipe.strategy import build_strategy
from qpipe.validation.audit import CHECKS, audit_allocation
from tests.unit.stages.test_features import make_universe

CFG = ThreadSafeConfig.from_mapping(
    {
        "strategy": {"kind": "momentum", "lookback": 60, "skip": 5},
        "allocation": {"top_n": 5, "max_weight": 0.25, "rebalance": "month_end"},
    }
)


@pytest.fixture(scope="module")
def prices() -> pl.DataFrame:
    return make_universe()


@pytest.fixture(scope="module")
def honest(prices) -> tuple[Pipeline, pl.DataFrame]:
    pipe = build_strategy(CFG)
    return pipe, pipe.apply_lazy({"prices": prices.lazy()})["weights"].collect()


def price_row(prices: pl.DataFrame, symbol: str, n: int) -> dt.date:
    return prices.filter(pl.col("symbol") == symbol)["date"].sort()[n]


def weights(rows: list[tuple[dt.date, str, float | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows, schema={"date": pl.Date, "symbol": pl.String, "weight": pl.Float64}, orient="row"
    )


def found(w: pl.DataFrame, prices: pl.DataFrame, cfg: ThreadSafeConfig = CFG) -> set[str]:
    with pytest.raises(AllocationAuditError) as info:
        audit_allocation(w, prices, cfg)
    return {v[2] for v in info.value.violations}


def test_honest_weights_pass_every_check(prices, honest) -> None:
    pipe, w = honest
    report = audit_allocation(w, prices, CFG, strategy=pipe)
    assert report.passed and report.violations == ()
    assert report.checks == CHECKS
    assert len(report.pit_cuts) == 3
    assert report.pit_cuts[-1] == w["date"].max()
    json.dumps(report.to_json(), allow_nan=False)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), None])
def test_non_finite_weight_is_caught(prices, bad) -> None:
    d = price_row(prices, "S00", 10)
    assert found(weights([(d, "S00", bad), (d, "S05", 0.1)]), prices) == {"finite"}


def test_duplicate_date_symbol_is_caught(prices) -> None:
    d = price_row(prices, "S00", 10)
    assert found(weights([(d, "S00", 0.1), (d, "S00", 0.1)]), prices) == {"duplicate"}


def test_weight_on_a_non_price_date_is_caught(prices) -> None:
    saturday = dt.date(2020, 1, 4)
    assert saturday not in set(prices["date"])
    assert found(weights([(saturday, "S00", 0.0)]), prices) == {"price_date"}


def test_weight_before_first_price_or_for_an_unknown_symbol_is_caught(prices) -> None:
    late_first = price_row(prices, "S01", 0)  # S01 lists a quarter of the way in
    early = prices.filter(pl.col("date") < late_first)["date"].max()
    w = weights([(early, "S01", 0.1), (early, "ZZZ", 0.1), (early, "S00", 0.1)])
    with pytest.raises(AllocationAuditError) as info:
        audit_allocation(w, prices, CFG)
    assert {(v[1], v[2]) for v in info.value.violations} == {
        ("S01", "before_first_price"),
        ("ZZZ", "unknown_symbol"),
    }
    # a zero weight there is harmless (wide-to-long files list every symbol)
    audit_allocation(weights([(early, "S01", 0.0)]), prices, CFG)


def test_weight_for_a_symbol_without_a_price_that_day_is_caught(prices) -> None:
    s03 = prices.filter(pl.col("symbol") == "S03")["date"]
    gap = prices.filter(~pl.col("date").is_in(s03.implode()), pl.col("date") > s03.min())
    d = gap["date"].min()
    assert found(weights([(d, "S03", 0.1), (d, "S00", 0.1)]), prices) == {"unpriced"}


def test_per_name_cap_is_enforced(prices) -> None:
    d = price_row(prices, "S00", 10)
    w = weights([(d, "S00", 0.25 + 1e-13), (d, "S05", -0.2500001)])
    cfg = CFG.replace(allocation={"long_only": False})
    with pytest.raises(AllocationAuditError) as info:
        audit_allocation(w, prices, cfg)
    assert [(v[1], v[2]) for v in info.value.violations] == [("S05", "max_weight")]


def test_gross_leverage_is_enforced(prices) -> None:
    d = price_row(prices, "S00", 10)
    rows = [(d, f"S{i:02d}", 0.2) for i in (0, 2, 5, 7, 10, 12)]  # gross 1.2
    with pytest.raises(AllocationAuditError) as info:
        audit_allocation(weights(rows), prices, CFG)
    assert info.value.violations == ((d, None, "gross_leverage", pytest.approx(1.2)),)


def test_short_weight_is_caught_only_when_long_only(prices) -> None:
    d = price_row(prices, "S00", 10)
    w = weights([(d, "S00", -0.1)])
    assert found(w, prices) == {"long_only"}
    audit_allocation(w, prices, CFG.replace(allocation={"long_only": False}))


def test_every_violation_is_listed_and_the_message_is_one_line(prices) -> None:
    d = price_row(prices, "S00", 10)
    rows = [(d, f"S{i:02d}", 0.3) for i in (0, 2, 5, 7, 10, 12, 15)]
    with pytest.raises(AllocationAuditError) as info:
        audit_allocation(weights(rows), prices, CFG)
    err = info.value
    assert len(err.violations) == 8  # 7 over the cap + 1 gross
    assert "\n" not in str(err)
    assert str(err).startswith(
        "allocation audit found 8 violations (max_weight 7, gross_leverage 1)"
    )
    assert "and 3 more" in str(err)
    again = pickle.loads(pickle.dumps(err))
    assert again.violations == err.violations and str(again) == str(err)


def test_report_without_raising_and_missing_columns(prices) -> None:
    d = price_row(prices, "S00", 10)
    report = audit_allocation(weights([(d, "S00", 0.9)]), prices, CFG, raise_on_violation=False)
    assert not report.passed and report.violations[0][2] == "max_weight"
    with pytest.raises(AllocationAuditError, match="`weight`"):
        audit_allocation(pl.DataFrame({"date": [d], "symbol": ["S00"]}), prices, CFG)


# point in time --------------------------------------------------------------------------------
@stage(output="signals", shard="date")
def tomorrow(features: pl.LazyFrame) -> pl.LazyFrame:
    """A look-ahead signal: tomorrow's return."""
    nxt = pl.col("close").shift(-1).over("symbol") / pl.col("close") - 1
    return features.sort("symbol", "date").select("date", "symbol", nxt.alias("signal"))


@stage(output="signals", shard="date")
def full_sample(features: pl.LazyFrame) -> pl.LazyFrame:
    """A subtler look-ahead: price relative to the symbol's whole-sample mean."""
    rel = pl.col("close") / pl.col("close").mean().over("symbol")
    return features.select("date", "symbol", rel.alias("signal"))


@pytest.mark.parametrize("cheat", [tomorrow, full_sample], ids=["shift(-1)", "full-sample-mean"])
def test_look_ahead_stage_is_caught_by_the_point_in_time_check(prices, cheat) -> None:
    good = build_strategy(CFG)
    bad = Pipeline((good.steps[0], cheat.bind(), good.steps[2]), meta=good.meta)
    w = bad.apply_lazy({"prices": prices.lazy()})["weights"].collect()
    assert audit_allocation(w, prices, CFG).passed  # structurally fine
    with pytest.raises(AllocationAuditError, match="point_in_time") as info:
        audit_allocation(w, prices, CFG, strategy=bad)
    assert {v[2] for v in info.value.violations} == {"point_in_time"}


def test_point_in_time_check_skipped_for_external_weights_or_zero_cuts(prices, honest) -> None:
    pipe, w = honest
    external = audit_allocation(w, prices, CFG)
    assert "point_in_time" not in external.checks and external.pit_cuts == ()
    assert "max_weight" in external.checks and "gross_leverage" in external.checks
    off = CFG.replace(validation={"pit_cuts": 0})
    assert "point_in_time" not in audit_allocation(w, prices, off, strategy=pipe).checks


def test_truncation_keeps_the_warmup_the_strategy_needs(prices, honest) -> None:
    pipe, w = honest
    # Lie about the warm-up: the truncated re-run then lacks history and disagrees.
    short = Pipeline(pipe.steps, pipe.name, FrozenTable({"warmup_days": 0}))
    with pytest.raises(AllocationAuditError, match="point_in_time"):
        audit_allocation(w, prices, CFG, strategy=short)


@pytest.mark.parametrize("rebalance", ["daily", "weekly", "month_start", "every_k"])
def test_honest_strategy_passes_point_in_time_on_every_schedule(prices, rebalance) -> None:
    cfg = CFG.replace(
        allocation={"rebalance": rebalance, "every_k": 7, "target_vol": 0.1, "vol_window": 20}
    )
    pipe = build_strategy(cfg)
    w = pipe.apply_lazy({"prices": prices.lazy()})["weights"].collect()
    report = audit_allocation(w, prices, cfg, strategy=pipe)
    assert report.passed and len(report.pit_cuts) == 3


@given(
    rows=st.lists(
        st.tuples(st.integers(0, 40), st.sampled_from(["A", "B", "C", "DD", "E"])),
        min_size=1,
        max_size=80,
        unique=True,
    ),
    lo=st.integers(0, 40),
    span=st.integers(0, 20),
    warm=st.integers(0, 6),
    shuffle=st.booleans(),
)
@settings(max_examples=80, deadline=None)
def test_pit_window_start_matches_a_plain_reference(rows, lo, span, warm, shuffle):
    """The point-in-time window start (numpy fast path, sorted or not) against plain Python."""
    from qpipe.validation.audit import _History

    base = dt.date(2020, 1, 1)
    frame = pl.DataFrame(
        {"date": [base + dt.timedelta(days=d) for d, _ in rows], "symbol": [s for _, s in rows]}
    )
    frame = (
        frame.sample(fraction=1.0, shuffle=True, seed=1)
        if shuffle
        else frame.sort("symbol", "date")
    )
    lo_d, cut_d = base + dt.timedelta(days=lo), base + dt.timedelta(days=lo + span)
    by_symbol: dict[str, list[dt.date]] = {}
    for d, s in zip(frame["date"], frame["symbol"], strict=True):
        by_symbol.setdefault(s, []).append(d)
    starts = []
    for days in by_symbol.values():
        days.sort()
        inside = [i for i, d in enumerate(days) if lo_d <= d <= cut_d]
        if inside:
            starts.append(days[max(inside[0] - warm, 0)])
    expected = min(starts) if starts else None
    assert _History(frame).back(lo_d, cut_d, warm) == expected


def test_allocation_notes_flag_cash_drag_and_long_warm_up_but_not_a_normal_book():
    from qpipe.validation.audit import allocation_notes

    d = [dt.date(2020, 1, 31), dt.date(2020, 2, 28), dt.date(2020, 3, 31), dt.date(2020, 4, 30)]
    full = pl.DataFrame({"date": d, "symbol": ["A"] * 4, "weight": [0.1] * 4})
    cfg = ThreadSafeConfig({"allocation": {"top_n": 5, "max_weight": 0.1}})
    (note,) = allocation_notes(full.with_columns(pl.lit(0.5).alias("weight")), cfg)
    assert "allocate 50% of capital" in note and "= 0.5 caps it" in note
    warm = full.with_columns(pl.Series("weight", [0.0, 0.0, 1.0, 1.0]))
    (note,) = allocation_notes(warm, ThreadSafeConfig({"allocation": {"max_weight": 1.0}}))
    assert note.startswith("2 of 4 rebalance dates hold no position")
    assert allocation_notes(full.with_columns(pl.lit(1.0).alias("weight")), cfg) == []
