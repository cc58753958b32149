"""Benchmark helpers: seeded data, memory checks, same-run results, subprocess probes.

Sizes are readable parameter ids ("1e7-rows"). Big frames are made with vectorised numpy (not the
factor model of the built-in universe), written once to a session store, and handed to the
benchmarks as refs. Sizes that do not fit in the machine's free memory are skipped with the
numbers in the reason. Results that later benchmarks compare against (same-run ratios) are kept
in ``RESULTS``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import psutil
import pytest

from qpipe.store import DatasetRef

REPO = Path(__file__).resolve().parent.parent
SEED = 20240611
GIB = 1 << 30
DAYS_PER_SYMBOL = 2_500  # ~10 years of trading days

# (group, name, size id) -> seconds (the minimum over rounds); filled as benchmarks run
RESULTS: dict[tuple[str, str, str], float] = {}


def size_id(rows: int) -> str:
    """1e7 -> "1e7-rows"; 5e7 -> "5e7-rows"."""
    exp = len(str(rows)) - 1
    lead = rows // 10**exp
    return f"{lead}e{exp}-rows" if lead > 1 else f"1e{exp}-rows"


def available_bytes() -> int:
    return int(psutil.virtual_memory().available)


def require_memory(need: int, what: str) -> None:
    """Skip the calling test unless ``need`` bytes are free now (with the numbers in the reason)."""
    free = available_bytes()
    if free < need:
        have = free / GIB
        pytest.skip(f"{what} needs ~{need / GIB:.1f} GiB free memory, {have:.1f} GiB available")


def record(benchmark, group: str, name: str, size: str) -> float:
    """Store the benchmark's best time for same-run comparisons and return it."""
    best = float(benchmark.stats.stats.min)
    RESULTS[(group, name, size)] = best
    return best


def ohlcv_frame(rows: int, seed: int = SEED) -> pl.DataFrame:
    """A long OHLCV frame of about ``rows`` rows: ``rows / 2,500`` symbols x 2,500 business days.

    Vectorised numpy (a few seconds for 5e7 rows), sorted by (symbol, date), types as the data
    contract says (Date, String, Float64).
    """
    n_sym = max(1, rows // DAYS_PER_SYMBOL)
    n_days = rows // n_sym
    rng = np.random.default_rng(seed)
    day0 = np.datetime64("2010-01-04")
    days = np.busday_offset(day0, np.arange(n_days), roll="forward").astype("datetime64[D]")
    rets = rng.standard_normal((n_sym, n_days), dtype=np.float32) * np.float32(0.015)
    close = (50.0 * np.exp(np.cumsum(rets, axis=1, dtype=np.float64))).ravel()
    del rets
    spread = np.abs(rng.standard_normal(close.size, dtype=np.float32)) * np.float32(0.005) + 1
    names = pl.Series("symbol", [f"S{i:06d}" for i in range(n_sym)], dtype=pl.String)
    frame = pl.DataFrame(
        {
            "date": pl.Series("date", np.tile(days, n_sym)),
            "symbol": names.gather(np.repeat(np.arange(n_sym, dtype=np.uint32), n_days)),
            "open": close / spread,
            "high": close * spread,
            "low": close / (spread * spread),
            "close": close,
            "volume": rng.integers(1_000, 1_000_000, close.size).astype(np.float64),
        }
    )
    return frame


def run_python(code: str, timeout: float = 600) -> str:
    """Run ``code`` in a fresh interpreter (clean memory and caches); return its stdout."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
        check=False,
    )
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise AssertionError(f"subprocess failed: {tail}")
    return done.stdout


def ray_count_rows(ref_or_frame) -> int:
    """Body of the Ray task: open a ref (zero-copy) or use the frame; return its row count."""
    from qpipe.store import open_ipc

    if isinstance(ref_or_frame, DatasetRef):
        return open_ipc(ref_or_frame.path).height
    return ref_or_frame.height
