"""Shared fixtures: small data by default, expensive set-up once per session."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "qpipe", deadline=None, max_examples=50, suppress_health_check=[HealthCheck.too_slow]
)
# CI replays the same examples every run (a red build must be reproducible); locally each run
# explores new ones. HYPOTHESIS_PROFILE overrides either.
settings.register_profile("ci", parent=settings.get_profile("qpipe"), derandomize=True)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "qpipe")
)

REPO = Path(__file__).resolve().parent.parent

# The ledger's signing key and per-ledger heads live in a key folder outside the runs folder
# (default: the user's state folder). Tests, and the processes they start, never touch the real
# one: every session gets its own, removed at the end.
os.environ["QPIPE_KEY_DIR"] = tempfile.mkdtemp(prefix="qpipe-test-keys-")


@pytest.fixture(scope="session", autouse=True)
def _remove_test_key_folder():
    yield
    shutil.rmtree(os.environ["QPIPE_KEY_DIR"], ignore_errors=True)


def sets(*pairs: str) -> list[str]:
    """``--set`` flags for ``runner_main``: ``sets("a.b=1")`` -> ``["--set", "a.b=1"]``."""
    return [flag for pair in pairs for flag in ("--set", pair)]


# a strategy that fits random_walk_prices() (8 symbols, 120 days)
FAST_SETS = sets("strategy.lookback=20", "strategy.skip=2", "allocation.top_n=3")
# a small built-in universe (20 symbols, 18 months) and a strategy that fits it
SMALL_BUILTIN_SETS = sets(
    "data.symbols=20",
    'data.start="2020-01-01"',
    'data.end="2021-06-30"',
    "strategy.lookback=60",
    "strategy.skip=5",
    "allocation.top_n=5",
)


def random_walk_prices(symbols: int = 8, days: int = 120, seed: int = 1) -> pl.DataFrame:
    """A small long-format price frame: business days, some symbols listing late or ending early."""
    rng = np.random.default_rng(seed)
    dates = pl.date_range(pl.date(2020, 1, 1), pl.date(2021, 12, 31), "1d", eager=True)
    dates = dates.filter(dates.dt.weekday() <= 5).head(days)
    frames = []
    for i in range(symbols):
        r = rng.normal(0.0003, 0.015, days)
        close = 50.0 * np.exp(np.cumsum(r))
        lo, hi = 0, days
        if i % 4 == 1:
            lo = days // 5
        if i % 4 == 2:
            hi = days - days // 6
        frames.append(
            pl.DataFrame(
                {"date": dates[lo:hi], "symbol": f"S{i:02d}", "close": close[lo:hi]},
            )
        )
    return pl.concat(frames).sort("symbol", "date")


@pytest.fixture(scope="session")
def small_prices() -> pl.DataFrame:
    return random_walk_prices()


@pytest.fixture
def store(tmp_path):
    from qpipe.store import ArrowStore

    return ArrowStore(tmp_path / "store")
