"""Signals: cross-sectional rank and z-score per date, MA crossover; nulls where not computable."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from qpipe.errors import StageError
from qpipe.stages.signals import cross_sectional, ma_crossover

D1, D2 = dt.date(2024, 1, 2), dt.date(2024, 1, 3)


def frame(rows: list[tuple[dt.date, str, float | None]], col: str = "x") -> pl.LazyFrame:
    return pl.LazyFrame(
        {"date": [r[0] for r in rows], "symbol": [r[1] for r in rows], col: [r[2] for r in rows]},
        schema={"date": pl.Date, "symbol": pl.String, col: pl.Float64},
    )


def test_rank_is_a_per_date_percentile_with_nulls_kept() -> None:
    rows = [(D1, "A", 3.0), (D1, "B", 1.0), (D1, "C", 2.0), (D1, "D", None), (D2, "A", 5.0)]
    out = cross_sectional.fn(frame(rows), column="x", method="rank").collect()
    got = {(d, s): v for d, s, v in out.iter_rows()}
    assert got[(D1, "A")] == 1.0
    assert got[(D1, "B")] == 0.0
    assert got[(D1, "C")] == 0.5
    assert got[(D1, "D")] is None
    assert got[(D2, "A")] == 0.5  # a lone name sits in the middle


def test_rank_gives_ties_the_average_and_sign_flips_the_order() -> None:
    rows = [(D1, "A", 1.0), (D1, "B", 1.0), (D1, "C", 2.0)]
    up = cross_sectional.fn(frame(rows), column="x", method="rank").collect()
    assert up["signal"].to_list() == [0.25, 0.25, 1.0]
    down = cross_sectional.fn(frame(rows), column="x", method="rank", sign=-1.0).collect()
    assert down["signal"].to_list() == [0.75, 0.75, 0.0]


def test_zscore_has_zero_mean_unit_std_and_is_null_when_flat() -> None:
    rows = [(D1, "A", 1.0), (D1, "B", 2.0), (D1, "C", 6.0), (D2, "A", 4.0), (D2, "B", 4.0)]
    out = cross_sectional.fn(frame(rows), column="x", method="zscore").collect()
    d1 = out.filter(pl.col("date") == D1)["signal"].to_numpy()
    assert abs(d1.mean()) < 1e-15
    assert abs(d1.std(ddof=1) - 1.0) < 1e-15
    assert out.filter(pl.col("date") == D2)["signal"].null_count() == 2


def test_non_finite_feature_values_give_a_null_signal() -> None:
    rows = [(D1, "A", float("nan")), (D1, "B", float("inf")), (D1, "C", 1.0), (D1, "D", 2.0)]
    for method in ("rank", "zscore", "raw"):
        out = cross_sectional.fn(frame(rows), column="x", method=method).collect()
        assert out["signal"][:2].null_count() == 2, method
    ranked = cross_sectional.fn(frame(rows), column="x", method="rank").collect()
    assert ranked["signal"][2:].to_list() == [0.0, 1.0]


@settings(max_examples=30, deadline=None)
@given(values=st.lists(st.floats(-1e6, 1e6) | st.none(), min_size=0, max_size=12))
@example(values=[])
def test_rank_stays_in_unit_interval_and_keeps_order(values: list[float | None]) -> None:
    rows = [(D1, f"S{i:02d}", v) for i, v in enumerate(values)]
    out = cross_sectional.fn(frame(rows), column="x", method="rank").collect()
    assert out.height == len(values)
    sig = out["signal"].to_list()
    for v, s in zip(values, sig, strict=True):
        assert (v is None) == (s is None)
        if s is not None:
            assert 0.0 <= s <= 1.0
    pairs = [(v, s) for v, s in zip(values, sig, strict=True) if v is not None]
    for v1, s1 in pairs:
        for v2, s2 in pairs:
            if v1 < v2:
                assert s1 < s2


def test_cross_sectional_output_is_sorted_and_order_independent() -> None:
    rng = np.random.default_rng(0)
    n = 60
    lf = pl.LazyFrame(
        {
            "date": [D1 + dt.timedelta(days=i % 3) for i in range(n)],
            "symbol": [f"S{i // 3:02d}" for i in range(n)],
            "x": rng.normal(size=n),
        }
    )
    a = cross_sectional.fn(lf, column="x", method="zscore").collect()
    b = cross_sectional.fn(lf.reverse(), column="x", method="zscore").collect()
    assert a.equals(b)
    assert a.columns == ["date", "symbol", "signal"]
    assert a.equals(a.sort("date", "symbol"))


def test_ma_crossover_is_one_above_zero_or_minus_one_below_null_in_warmup() -> None:
    lf = pl.LazyFrame(
        {
            "date": [D1, D1, D1],
            "symbol": ["A", "B", "C"],
            "ma_fast": [2.0, 1.0, None],
            "ma_slow": [1.0, 2.0, 1.0],
        }
    )
    assert ma_crossover.fn(lf).collect()["signal"].to_list() == [1.0, 0.0, None]
    assert ma_crossover.fn(lf, short=True).collect()["signal"].to_list() == [1.0, -1.0, None]


def test_unknown_signal_method_is_rejected() -> None:
    with pytest.raises(StageError, match="`median`"):
        cross_sectional.fn(frame([(D1, "A", 1.0)]), column="x", method="median")


def test_signal_stages_shard_by_date() -> None:
    assert cross_sectional.shard == "date"
    assert ma_crossover.shard == "date"
    assert cross_sectional.outputs == ("signals",)
