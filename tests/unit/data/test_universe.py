"""The built-in synthetic universe: shape, realism, and the determinism contract."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from qpipe.data import builtin_universe, trading_days, universe_digest
from qpipe.errors import ConfigError
from qpipe.ingest import ingest_frame
from qpipe.store import ArrowStore

# The determinism contract: these bytes never change for these arguments (NumPy 2.4 streams,
# the store's IPC layout). If a deliberate change to the generator or the store moves them,
# update the pins and say so in the changelog: every recorded built-in run's digest moves too.
SMALL = {"symbols": 20, "start": "2020-01-01", "end": "2020-12-31", "seed": 7}
SMALL_DIGEST = "de5bbf7eb733f829ad1a127383559204accbd11f2c20ae473eea74c6e8cd8d18"


@pytest.fixture(scope="module")
def medium() -> pl.DataFrame:
    return builtin_universe(symbols=120, start="2015-01-01", end="2022-12-31", seed=7)


def test_columns_dtypes_and_sorted_unique_keys():
    u = builtin_universe(**SMALL)
    assert u.schema == pl.Schema(
        {
            "date": pl.Date,
            "symbol": pl.String,
            "open": pl.Float64,
            "high": pl.Float64,
            "low": pl.Float64,
            "close": pl.Float64,
            "volume": pl.Float64,
        }
    )
    assert u.equals(u.sort("symbol", "date"))
    assert not u.select(pl.struct("symbol", "date").is_duplicated().any()).item()
    assert u["symbol"].unique().sort().to_list() == [f"SYM{i:04d}" for i in range(1, 21)]


def test_prices_positive_finite_and_ohlc_consistent(medium):
    prices = medium.select("open", "high", "low", "close", "volume")
    assert prices.select(pl.all().is_finite().all()).row(0) == (True,) * 5
    assert medium.select((pl.col("low") > 0).all()).item()
    ok = (pl.col("low") <= pl.min_horizontal("open", "close")) & (
        pl.col("high") >= pl.max_horizontal("open", "close")
    )
    assert medium.select(ok.all()).item()
    assert medium.select((pl.col("volume") > 0).all()).item()


def test_business_days_only_with_fixed_holidays():
    days = trading_days("2020-01-01", "2020-12-31")
    as_dates = [d.astype(dt.date) for d in days]
    assert all(d.weekday() < 5 for d in as_dates)
    assert dt.date(2020, 1, 1) not in as_dates  # New Year's Day, a Wednesday
    assert dt.date(2020, 12, 25) not in as_dates
    assert dt.date(2020, 1, 2) in as_dates
    assert len(days) == 262 - 2  # 4 July 2020 is a Saturday


def test_default_size_is_about_500_symbols_by_2600_days():
    u = builtin_universe()
    assert u["symbol"].n_unique() == 500
    assert u["date"].n_unique() == len(trading_days("2015-01-01", "2024-12-31"))
    assert 1_200_000 < u.height < 1_310_000


def test_some_symbols_list_late_and_some_delist_early(medium):
    spans = medium.group_by("symbol").agg(first=pl.col("date").min(), last=pl.col("date").max())
    first_day, last_day = medium["date"].min(), medium["date"].max()
    late = spans.filter(pl.col("first") > first_day).height
    early = spans.filter(pl.col("last") < last_day).height
    assert 3 <= late <= 12  # ~5% of 120
    assert 3 <= early <= 12


def test_realistic_volatility_dispersion_and_short_term_reversal(medium):
    ret = medium.with_columns(r=pl.col("close").log().diff().over("symbol")).drop_nulls("r")
    per = ret.group_by("symbol").agg(
        vol=pl.col("r").std() * np.sqrt(252),
        mu=pl.col("r").mean() * 252,
        ac=pl.corr(pl.col("r"), pl.col("r").shift(1)),
    )
    assert per["vol"].min() > 0.15 and per["vol"].max() < 0.9
    assert per["vol"].max() - per["vol"].min() > 0.25  # a real spread of volatilities
    assert per["mu"].std() > 0.04  # cross-sectional dispersion of drift
    assert per["ac"].mean() < -0.005  # short-term reversal on average


def test_momentum_has_positive_rank_ic(medium):
    c = pl.col("close")
    frame = medium.with_columns(
        mom=(c.shift(21) / c.shift(252) - 1).over("symbol"),
        fwd=(c.shift(-21) / c - 1).over("symbol"),
    ).drop_nulls(["mom", "fwd"])
    month = pl.col("date").dt.truncate("1mo").alias("month")
    month_ends = frame.group_by(month).agg(pl.col("date").max())
    ic = (
        frame.filter(pl.col("date").is_in(month_ends["date"].implode()))
        .group_by("date")
        .agg(ic=pl.corr("mom", "fwd", method="spearman"))
    )
    assert ic["ic"].mean() > 0.0


def test_same_arguments_give_byte_identical_data_and_pinned_digest():
    assert builtin_universe(**SMALL).equals(builtin_universe(**SMALL))
    assert universe_digest(**SMALL) == SMALL_DIGEST


def test_seed_changes_the_data():
    other = dict(SMALL, seed=8)
    assert universe_digest(**other) != SMALL_DIGEST


def test_digest_does_not_depend_on_thread_count():
    code = f"from qpipe.data import universe_digest;print(universe_digest(**{SMALL!r}))"
    env = dict(os.environ, POLARS_MAX_THREADS="1", OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == SMALL_DIGEST


def test_passes_tier1_ingestion(tmp_path):
    result = ingest_frame(builtin_universe(**SMALL), ArrowStore(tmp_path / "store"))
    assert result.validated and result.rows == builtin_universe(**SMALL).height
    assert result.ref.digest == SMALL_DIGEST  # already sorted: ingestion stores it as is


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"symbols": 0}, "`symbols`"),
        ({"symbols": 2.5}, "`symbols`"),
        ({"seed": -1}, "`seed`"),
        ({"start": "2020/01/01"}, "`start`"),
        ({"start": "2021-01-01", "end": "2020-01-01"}, "`end`"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        builtin_universe(**kwargs)
