"""Per-symbol features: values against a numpy reference, order independence, no look-ahead."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qpipe.errors import StageError
from qpipe.stages.features import FEATURE_COLUMNS, feature_warmup, features

PARAMS = {
    "lookback": 20,
    "skip": 5,
    "fast": 5,
    "slow": 15,
    "vol_window": 10,
    "zscore_window": 8,
    "risk_window": 12,
}


def make_universe(symbols: int = 20, days: int = 300, seed: int = 3) -> pl.DataFrame:
    """Seeded random walks on business days, rows shuffled.

    Every 5th symbol (from 1) lists a quarter of the way in, from 2 delists at 80 %, from 3 misses
    about 10 % of days at random (gaps), from 4 has a long gap in the middle.
    """
    rng = np.random.default_rng(seed)
    start = dt.date(2020, 1, 1)
    dates = pl.date_range(start, start + dt.timedelta(days=days * 2), "1d", eager=True)
    dates = dates.filter(dates.dt.weekday() <= 5).head(days)
    n = len(dates)
    frames = []
    for i in range(symbols):
        r = rng.normal(0.0003, 0.01 + 0.02 * rng.random(), n)
        close = 50.0 * np.exp(np.cumsum(r))
        keep = np.ones(n, dtype=bool)
        if i % 5 == 1:
            keep[: n // 4] = False
        elif i % 5 == 2:
            keep[n - n // 5 :] = False
        elif i % 5 == 3:
            keep[rng.random(n) < 0.1] = False
        elif i % 5 == 4:
            keep[n // 3 : n // 3 + 30] = False
        frames.append(
            pl.DataFrame(
                {"date": dates.filter(pl.Series(keep)), "symbol": f"S{i:02d}", "close": close[keep]}
            )
        )
    return pl.concat(frames).sample(fraction=1.0, shuffle=True, seed=seed)


@pytest.fixture(scope="module")
def prices() -> pl.DataFrame:
    return make_universe()


def _reference(close: np.ndarray, p: dict[str, int]) -> dict[str, np.ndarray]:
    """Straightforward per-symbol loops, windows over the symbol's own rows."""
    n = len(close)
    nan = np.full(n, np.nan)
    ret, log_ret = nan.copy(), nan.copy()
    ret[1:] = close[1:] / close[:-1] - 1
    log_ret[1:] = np.log(close[1:] / close[:-1])
    out = {"ret": ret, "log_ret": log_ret}

    def vol(w: int) -> np.ndarray:
        v = nan.copy()
        for t in range(w, n):
            v[t] = np.std(ret[t - w + 1 : t + 1], ddof=1) * math.sqrt(252)
        return v

    def ma(w: int) -> np.ndarray:
        m = nan.copy()
        for t in range(w - 1, n):
            m[t] = close[t - w + 1 : t + 1].mean()
        return m

    out["vol"], out["risk_vol"] = vol(p["vol_window"]), vol(p["risk_window"])
    out["ma_fast"], out["ma_slow"] = ma(p["fast"]), ma(p["slow"])
    mom, rev, z = nan.copy(), nan.copy(), nan.copy()
    lb, sk, zw = p["lookback"], p["skip"], p["zscore_window"]
    for t in range(lb, n):
        mom[t] = close[t - sk] / close[t - lb] - 1
        rev[t] = -(close[t] / close[t - lb] - 1)
    for t in range(zw - 1, n):
        win = close[t - zw + 1 : t + 1]
        z[t] = (close[t] - win.mean()) / win.std(ddof=1)
    out.update(mom=mom, rev=rev, zscore=z)
    return out


def test_features_match_a_per_symbol_loop_reference(prices: pl.DataFrame) -> None:
    out = features.fn(prices.lazy(), **PARAMS).collect()
    assert out.columns == ["date", "symbol", "close", *FEATURE_COLUMNS]
    assert out.height == prices.height
    for (sym,), part in out.group_by("symbol"):
        ref = _reference(part["close"].to_numpy(), PARAMS)
        for col in FEATURE_COLUMNS:
            got = part[col].to_numpy().astype(float)
            np.testing.assert_allclose(got, ref[col], rtol=1e-9, atol=1e-12, err_msg=f"{sym} {col}")


def test_features_do_not_depend_on_input_row_order(prices: pl.DataFrame) -> None:
    a = features.fn(prices.lazy(), **PARAMS).collect()
    b = features.fn(prices.sort("date", "symbol", descending=True).lazy(), **PARAMS).collect()
    assert a.equals(b)
    assert a.select("symbol", "date").equals(a.select("symbol", "date").sort("symbol", "date"))


@settings(max_examples=15, deadline=None)
@given(cut=st.integers(min_value=0, max_value=299))
def test_features_on_a_date_ignore_later_rows(cut: int) -> None:
    p = make_universe(symbols=6, days=300, seed=5)
    dates = p["date"].unique().sort()
    c = dates[min(cut, len(dates) - 1)]
    full = features.fn(p.lazy(), **PARAMS).collect().filter(pl.col("date") <= c)
    part = features.fn(p.filter(pl.col("date") <= c).lazy(), **PARAMS).collect()
    assert full.equals(part)


def test_zscore_of_constant_prices_is_null_not_nan() -> None:
    d = pl.date_range(dt.date(2024, 1, 1), dt.date(2024, 1, 20), "1d", eager=True)
    p = pl.DataFrame({"date": d, "symbol": "A", "close": 10.0})
    out = features.fn(p.lazy(), columns=("zscore", "vol"), zscore_window=5, vol_window=5).collect()
    assert out["zscore"].null_count() == out.height
    assert out["vol"].drop_nulls().to_list() == [0.0] * (out.height - 5)


def test_features_only_adds_the_requested_columns(prices: pl.DataFrame) -> None:
    out = features.fn(prices.lazy(), columns=("mom", "ret")).collect()
    assert out.columns == ["date", "symbol", "close", "ret", "mom"]


def test_unknown_feature_column_is_rejected(prices: pl.DataFrame) -> None:
    with pytest.raises(StageError, match="`momentum`"):
        features.fn(prices.lazy(), columns=("momentum",))


def test_feature_warmup_is_the_longest_lookback() -> None:
    assert feature_warmup(("mom",), lookback=252, skip=21) == 252
    assert feature_warmup(("ma_fast", "ma_slow"), fast=50, slow=200) == 199
    assert feature_warmup(("vol", "risk_vol"), vol_window=20, risk_window=63) == 63
    assert feature_warmup(()) == 0


def test_features_stage_is_sharded_by_symbol() -> None:
    assert features.shard == "symbol"
    assert features.inputs == ("prices",)
    assert features.outputs == ("features",)
