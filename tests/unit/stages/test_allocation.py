"""Allocation: schedules, schemes, caps and leverage, vol targeting, all-cash dates, no peeking."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qpipe.errors import StageError
from qpipe.stages.allocation import allocate, rebalance_dates, vol_target_scale
from qpipe.stages.features import features
from qpipe.stages.signals import cross_sectional
from tests.unit.stages.test_features import make_universe

D = dt.date(2024, 1, 2)


@pytest.fixture(scope="module")
def universe() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    prices = make_universe()
    feats = features.fn(
        prices.lazy(), columns=("ret", "mom", "risk_vol"), lookback=40, skip=5, risk_window=20
    ).collect()
    sigs = cross_sectional.fn(feats.lazy(), column="mom", method="zscore").collect()
    return prices, feats, sigs


def one_date(signal: dict[str, float | None], vol: dict[str, float] | None = None):
    syms = sorted(signal)
    sig = pl.LazyFrame(
        {"date": [D] * len(syms), "symbol": syms, "signal": [signal[s] for s in syms]},
        schema={"date": pl.Date, "symbol": pl.String, "signal": pl.Float64},
    )
    vols = vol or dict.fromkeys(syms, 0.2)
    feat = pl.LazyFrame(
        {"date": [D] * len(syms), "symbol": syms, "risk_vol": [vols[s] for s in syms]},
        schema={"date": pl.Date, "symbol": pl.String, "risk_vol": pl.Float64},
    )
    return sig, feat


def weights_of(frame: pl.DataFrame) -> dict[str, float]:
    return {s: w for s, w in frame.select("symbol", "weight").iter_rows() if w != 0.0}


def run(signal, vol=None, **params) -> pl.DataFrame:
    sig, feat = one_date(signal, vol)
    base = {"rebalance": "daily", "max_weight": 1.0}
    return allocate.fn(sig, feat, **(base | params)).collect()


# schedules ------------------------------------------------------------------------------------
def _dates() -> pl.DataFrame:
    d = pl.date_range(dt.date(2023, 12, 20), dt.date(2024, 3, 10), "1d", eager=True)
    d = d.filter(d.dt.weekday() <= 5)
    # a holiday-like hole on the last business day of January and on a Monday
    return pl.DataFrame({"date": d.filter(~d.is_in([dt.date(2024, 1, 31), dt.date(2024, 2, 5)]))})


@pytest.mark.parametrize("rule", ["daily", "weekly", "month_end", "month_start", "every_k"])
def test_rebalance_dates_follow_the_rule_on_price_dates(rule: str) -> None:
    dates = _dates()["date"].to_list()
    got = rebalance_dates(_dates().lazy(), rule, every_k=7).collect()["date"].to_list()
    if rule == "daily":
        want = dates
    elif rule == "every_k":
        want = dates[::7]
    else:
        keyf = {
            "weekly": lambda d: d.isocalendar()[:2],
            "month_end": lambda d: (d.year, d.month),
            "month_start": lambda d: (d.year, d.month),
        }[rule]
        groups: dict[tuple[int, int], list[dt.date]] = {}
        for d in dates:
            groups.setdefault(keyf(d), []).append(d)
        pick = min if rule == "month_start" else max
        want = sorted(pick(g) for g in groups.values())
    assert got == want
    if rule == "month_end":
        assert dt.date(2024, 1, 30) in got  # the last *price* date of January


def test_unknown_rebalance_rule_is_rejected() -> None:
    with pytest.raises(StageError, match="`yearly`"):
        rebalance_dates(_dates().lazy(), "yearly")  # type: ignore[arg-type]


# schemes --------------------------------------------------------------------------------------
def test_top_n_equal_weights_the_highest_signals_ties_by_symbol() -> None:
    out = run({"A": 1.0, "B": 3.0, "C": 2.0, "D": 2.0, "E": None}, scheme="top_n", top_n=3)
    assert weights_of(out) == {"B": 1 / 3, "C": 1 / 3, "D": 1 / 3}
    out = run({"A": 1.0, "B": 3.0, "C": 2.0, "D": 2.0}, scheme="top_n", top_n=2)
    assert weights_of(out) == {"B": 0.5, "C": 0.5}  # C beats D on the tie


def test_long_short_takes_floor_quantile_names_per_leg() -> None:
    sig = {f"S{i}": float(i) for i in range(10)}
    out = run(sig, scheme="long_short", quantile=0.29, long_only=False)
    w = weights_of(out)
    assert w == pytest.approx({"S9": 0.25, "S8": 0.25, "S0": -0.25, "S1": -0.25})
    out = run(sig, scheme="long_short", quantile=0.3, long_only=False)
    assert len(weights_of(out)) == 6
    assert sum(weights_of(out).values()) == pytest.approx(0.0, abs=1e-15)
    long = weights_of(run(sig, scheme="long_short", quantile=0.2, long_only=True))
    assert long == pytest.approx({"S9": 0.5, "S8": 0.5})


def test_inverse_vol_weights_the_top_n_by_inverse_volatility() -> None:
    sig = {"A": 3.0, "B": 2.0, "C": 1.0}
    vol = {"A": 0.1, "B": 0.4, "C": 0.2}
    w = weights_of(run(sig, vol, scheme="inverse_vol", top_n=2))
    assert w == pytest.approx({"A": 0.8, "B": 0.2}, rel=1e-15)
    # a name without a usable vol is skipped, not given inf weight
    w = weights_of(run(sig, {"A": 0.0, "B": 0.4, "C": 0.2}, scheme="inverse_vol", top_n=2))
    assert w == pytest.approx({"B": 1 / 3, "C": 2 / 3})


def test_proportional_scales_signals_to_unit_gross_and_clips_shorts_when_long_only() -> None:
    sig = {"A": 2.0, "B": -1.0, "C": 1.0}
    assert weights_of(run(sig, scheme="proportional", long_only=False)) == pytest.approx(
        {"A": 0.5, "B": -0.25, "C": 0.25}
    )
    assert weights_of(run(sig, scheme="proportional", long_only=True)) == pytest.approx(
        {"A": 2 / 3, "C": 1 / 3}
    )


def test_unknown_scheme_is_rejected() -> None:
    sig, feat = one_date({"A": 1.0})
    with pytest.raises(StageError, match="`best`"):
        allocate.fn(sig, feat, scheme="best")  # type: ignore[arg-type]


# limits ---------------------------------------------------------------------------------------
def test_cap_clips_names_and_leaves_the_rest_in_cash() -> None:
    w = weights_of(run({"A": 2.0, "B": 1.0}, scheme="proportional", max_weight=0.4))
    assert w == {"A": 0.4, "B": 1 / 3}  # not re-normalised above the cap
    assert sum(w.values()) < 1.0


def test_gross_limit_scales_weights_down_never_up() -> None:
    sig = {"A": 1.0, "B": 2.0}
    assert sum(weights_of(run(sig, scheme="top_n", gross_leverage=0.5)).values()) == 0.5
    assert sum(weights_of(run(sig, scheme="top_n", gross_leverage=3.0)).values()) == 1.0


def test_all_cash_rebalance_date_keeps_one_zero_row() -> None:
    out = run({"B": None, "A": None}, scheme="top_n")
    assert out.rows() == [(D, "A", 0.0)]
    assert out.schema == pl.Schema({"date": pl.Date, "symbol": pl.String, "weight": pl.Float64})


def test_weights_only_go_to_symbols_priced_that_day(universe) -> None:
    prices, feats, sigs = universe
    out = allocate.fn(sigs.lazy(), feats.lazy(), top_n=5, rebalance="weekly").collect()
    live = out.filter(pl.col("weight") != 0.0)
    assert live.join(prices, on=["date", "symbol"], how="anti").is_empty()
    reb = rebalance_dates(prices.lazy(), "weekly").collect()["date"]
    assert out["date"].unique().sort().equals(reb)
    assert out.equals(out.sort("date", "symbol"))


# vol targeting --------------------------------------------------------------------------------
def test_vol_estimate_matches_a_numpy_trailing_portfolio_std(universe) -> None:
    prices, feats, sigs = universe
    w = allocate.fn(sigs.lazy(), feats.lazy(), top_n=5, rebalance="month_end").collect()
    window = 20
    sig = vol_target_scale(
        w.lazy(), feats.lazy().select("date", "symbol", "ret"), prices.lazy(), window=window
    ).collect()
    dates = prices["date"].unique().sort().to_list()
    rets = {(d, s): r for d, s, r in feats.select("date", "symbol", "ret").iter_rows()}
    checked = 0
    for d, sigma in sig.iter_rows():
        i = dates.index(d)
        held = w.filter((pl.col("date") == d) & (pl.col("weight") != 0))
        if i + 1 < window:
            assert sigma is None
            continue
        port = [
            sum(
                wt * (rets.get((s, sym)) or 0.0)
                for sym, wt in held.select("symbol", "weight").rows()
            )
            for s in dates[i - window + 1 : i + 1]
        ]
        assert sigma == pytest.approx(np.std(port, ddof=1) * math.sqrt(252), rel=1e-10)
        checked += 1
    assert checked >= 5


def test_vol_targeting_hits_the_target_within_the_limits(universe) -> None:
    prices, feats, sigs = universe
    common = {"top_n": 5, "rebalance": "month_end", "vol_window": 20, "max_weight": 0.2}
    base = allocate.fn(sigs.lazy(), feats.lazy(), **common).collect()
    sig = vol_target_scale(
        base.lazy(), feats.lazy().select("date", "symbol", "ret"), prices.lazy(), window=20
    ).collect()
    low = allocate.fn(sigs.lazy(), feats.lazy(), target_vol=0.02, **common).collect()
    high = allocate.fn(
        sigs.lazy(), feats.lazy(), target_vol=5.0, gross_leverage=1.5, **common
    ).collect()
    ratio = low.join(base, on=["date", "symbol"], suffix="_base").join(sig, on="date")
    ratio = ratio.filter(pl.col("weight_base") != 0, pl.col("sigma").is_not_null())
    assert ratio.height > 0
    k = ratio["weight"] / ratio["weight_base"]
    assert np.allclose(k.to_numpy(), (0.02 / ratio["sigma"]).to_numpy(), rtol=1e-12)
    g = high.group_by("date").agg(
        pl.col("weight").abs().sum().alias("g"), pl.col("weight").abs().max()
    )
    assert (g["g"] <= 1.5 + 1e-12).all()
    assert (g["weight"] <= 0.2 + 1e-12).all()
    assert (g["weight"] > 0.2 - 1e-9).any()  # the cap is what stops a 5.0 target


# properties -----------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(
    scheme=st.sampled_from(["top_n", "long_short", "inverse_vol", "proportional"]),
    rebalance=st.sampled_from(["daily", "weekly", "month_end", "month_start", "every_k"]),
    top_n=st.integers(1, 25),
    quantile=st.sampled_from([0.1, 0.2, 0.5]),
    max_weight=st.sampled_from([0.05, 0.3, 1.0]),
    gross=st.sampled_from([0.5, 1.0, 2.0]),
    long_only=st.booleans(),
    target_vol=st.sampled_from([0.0, 0.1]),
)
def test_weights_respect_limits_and_cover_every_rebalance_date(
    universe, scheme, rebalance, top_n, quantile, max_weight, gross, long_only, target_vol
) -> None:
    prices, feats, sigs = universe
    out = allocate.fn(
        sigs.lazy(),
        feats.lazy(),
        scheme=scheme,
        rebalance=rebalance,
        every_k=5,
        top_n=top_n,
        quantile=quantile,
        max_weight=max_weight,
        gross_leverage=gross,
        long_only=long_only,
        target_vol=target_vol,
        vol_window=20,
    ).collect()
    w = out["weight"]
    assert w.is_finite().all()
    assert (w.abs() <= max_weight + 1e-12).all()
    if long_only:
        assert (w >= 0).all()
    g = out.group_by("date").agg(pl.col("weight").abs().sum())["weight"]
    assert (g <= gross + 1e-9).all()
    reb = rebalance_dates(prices.lazy(), rebalance, every_k=5).collect()["date"]
    assert out["date"].unique().sort().equals(reb)
    assert out.select("date", "symbol").is_unique().all()


@settings(max_examples=10, deadline=None)
@given(cut=st.integers(100, 299), target_vol=st.sampled_from([0.0, 0.15]))
def test_daily_weights_ignore_later_prices(universe, cut: int, target_vol: float) -> None:
    prices, _, _ = universe
    c = prices["date"].unique().sort()[cut]

    def weights(p: pl.DataFrame) -> pl.DataFrame:
        f = features.fn(p.lazy(), columns=("ret", "mom"), lookback=40, skip=5)
        s = cross_sectional.fn(f, column="mom")
        return allocate.fn(
            s, f, top_n=4, rebalance="daily", target_vol=target_vol, vol_window=20
        ).collect()

    full = weights(prices).filter(pl.col("date") <= c)
    part = weights(prices.filter(pl.col("date") <= c))
    assert full.equals(part)
