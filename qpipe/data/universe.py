"""The built-in synthetic universe: deterministic daily OHLCV prices from a factor model.

The data is made so that the default strategies have something to find, and find different
things:

- **Factors.** Daily log returns are ``r = mu_i + a_it + beta_i m_t + gamma_i s_{k(i),t} + e_it``:
  a market factor ``m`` (16 % a year, with slowly varying volatility regimes), eight sector
  factors ``s`` (10 % a year), betas around 1 and sector loadings around 0.8.
- **Idiosyncratic volatility** is spread uniformly over 15-60 % a year.
- **Drift and its dispersion.** ``mu_i`` is about 7 % a year with a 5 % cross-sectional spread,
  and falls with idiosyncratic volatility (the low-volatility anomaly).
- **Persistence (momentum).** ``a_it`` is a slowly varying expected return per symbol, an AR(1)
  with a half-life of about six months and a 12 % a year stationary spread, so past winners
  tend to keep winning for a while.
- **Short-term reversal.** ``e_it = z_it - 0.12 * mean(z_i,t-1..t-5)``: a fraction of each week's
  idiosyncratic move is given back the next week (measured lag-1 autocorrelation about -0.02).
- **Gaps.** About 5 % of symbols list late and 5 % delist early; New Year's Day, 4 July and
  Christmas are market holidays; about 0.05 % of (symbol, day) rows are missing (halts).

Prices are rounded to 4 decimals and floored at 0.01, so that a 1-ulp difference in a libm
``exp`` between CPUs cannot reach the output; ``open``/``high``/``low`` are made consistent after
rounding. Everything is drawn from one ``numpy.random.default_rng(seed)`` in a fixed order with
no threading, so a given (symbols, start, end, seed) and NumPy release give byte-identical data;
:func:`universe_digest` states it and ``tests/unit/data/test_universe.py`` pins it.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from qpipe.conventions import PERIODS_PER_YEAR
from qpipe.errors import ConfigError
from qpipe.store.arrow import write_ipc_atomic

__all__ = ["builtin_universe", "trading_days", "universe_digest"]

_YEAR = PERIODS_PER_YEAR  # trading days a year (one definition)
_SECTORS = 8
_HOLIDAYS = ((1, 1), (7, 4), (12, 25))  # (month, day): closed when they fall on a weekday
_REVERSAL_LAGS = 5
_REVERSAL = 0.12
_PRICE_DECIMALS = 4
_MIN_PRICE = 0.01


def _parse_day(value: str, key: str) -> np.datetime64:
    try:
        return np.datetime64(dt.date.fromisoformat(value), "D")
    except (TypeError, ValueError):
        msg = f"`{key}` must be an ISO date YYYY-MM-DD, got {value!r}"
        raise ConfigError(msg) from None


def trading_days(start: str, end: str) -> np.ndarray:
    """Business days (Mon-Fri) from ``start`` to ``end`` inclusive, less the fixed holidays.

    Returns
    -------
    numpy.ndarray
        ``datetime64[D]`` days in ascending order.
    """
    first, last = _parse_day(start, "start"), _parse_day(end, "end")
    if last < first:
        msg = f"`end` {end} is before `start` {start}"
        raise ConfigError(msg)
    days = np.arange(first, last + 1, dtype="datetime64[D]")
    days = days[np.is_busday(days)]
    month = days.astype("datetime64[M]").astype(np.int64) % 12 + 1
    day = (days - days.astype("datetime64[M]")).astype(np.int64) + 1
    holiday = np.zeros(days.shape, dtype=bool)
    for m, d in _HOLIDAYS:
        holiday |= (month == m) & (day == d)
    return days[~holiday]


def _ar1(shocks: np.ndarray, phi: float, start: np.ndarray) -> np.ndarray:
    """x_t = phi x_{t-1} + shocks_t along axis 0 (a short Python loop over days, vector ops)."""
    out = np.empty_like(shocks)
    prev = start
    for t in range(shocks.shape[0]):
        prev = phi * prev + shocks[t]
        out[t] = prev
    return out


def _validate_args(symbols: int, seed: int) -> None:
    if isinstance(symbols, bool) or not isinstance(symbols, int) or symbols < 1:
        msg = f"`symbols` must be a positive integer, got {symbols!r}"
        raise ConfigError(msg)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        msg = f"`seed` must be a non-negative integer, got {seed!r}"
        raise ConfigError(msg)


def builtin_universe(
    symbols: int = 500,
    start: str = "2015-01-01",
    end: str = "2024-12-31",
    seed: int = 7,
) -> pl.DataFrame:
    """A deterministic synthetic daily price universe.

    Parameters
    ----------
    symbols
        Number of symbols, named ``SYM0001``, ``SYM0002``, ... (wider if more than 9,999).
    start, end
        First and last calendar day (ISO ``YYYY-MM-DD``), inclusive.
    seed
        Seed for ``numpy.random.default_rng``; equal arguments give byte-identical frames.

    Returns
    -------
    polars.DataFrame
        Long format sorted by ``(symbol, date)``: ``date`` (Date), ``symbol`` (String),
        ``open``, ``high``, ``low``, ``close``, ``volume`` (Float64). About 1.3M rows by default.

    Examples
    --------
    >>> prices = builtin_universe(symbols=3, start="2020-01-01", end="2020-01-31")
    >>> prices.columns
    ['date', 'symbol', 'open', 'high', 'low', 'close', 'volume']
    """
    _validate_args(symbols, seed)
    days = trading_days(start, end)
    n_days, n_sym = len(days), symbols
    # One generator, drawn from in a fixed order (the helpers below run in this order): equal
    # arguments give byte-identical frames, and `universe_digest` pins them.
    rng = np.random.default_rng(seed)
    syms = _symbol_params(rng, n_sym)
    first, last = _listing_windows(rng, n_sym, n_days)
    ret = _daily_returns(rng, syms, n_days)
    close = syms.start_price * np.exp(np.cumsum(ret, axis=0))
    bars = _bars(rng, syms, close, ret)
    halted = rng.random(size=(n_days, n_sym)) < 0.0005
    t_idx = np.arange(n_days)[:, None]
    listed = (t_idx >= first) & (t_idx <= last) & ~halted
    return _long_frame(days, listed, bars)


@dataclass(frozen=True)
class _Symbols:
    """Per-symbol parameters of the generator."""

    sector: np.ndarray
    beta: np.ndarray
    gamma: np.ndarray
    idio_vol: np.ndarray  # annual
    mu: np.ndarray  # annual
    start_price: np.ndarray
    base_volume: np.ndarray


def _symbol_params(rng: np.random.Generator, n_sym: int) -> _Symbols:
    sector = rng.integers(0, _SECTORS, size=n_sym)
    beta = np.clip(rng.normal(1.0, 0.3, size=n_sym), 0.3, 2.0)
    gamma = np.clip(rng.normal(0.8, 0.3, size=n_sym), 0.0, 2.0)
    idio_vol = rng.uniform(0.15, 0.60, size=n_sym)
    mu = 0.07 - 0.10 * (idio_vol - 0.375) + rng.normal(0.0, 0.05, size=n_sym)
    start_price = np.exp(rng.normal(np.log(50.0), 0.8, size=n_sym))
    base_volume = np.exp(rng.normal(np.log(1e6), 1.0, size=n_sym))
    return _Symbols(sector, beta, gamma, idio_vol, mu, start_price, base_volume)


def _listing_windows(
    rng: np.random.Generator, n_sym: int, n_days: int
) -> tuple[np.ndarray, np.ndarray]:
    """First and last listed day per symbol: ~5% list late, ~5% delist early (disjoint)."""
    order = rng.permutation(n_sym)
    n_late = round(0.05 * n_sym)
    n_early = round(0.05 * n_sym)
    first = np.zeros(n_sym, dtype=np.int64)
    last = np.full(n_sym, n_days - 1, dtype=np.int64)
    first[order[:n_late]] = rng.integers(int(0.05 * n_days), max(int(0.8 * n_days), 1) + 1, n_late)
    last[order[n_late : n_late + n_early]] = rng.integers(
        int(0.2 * n_days), max(int(0.95 * n_days), 1) + 1, n_early
    )
    return first, last


def _daily_returns(rng: np.random.Generator, syms: _Symbols, n_days: int) -> np.ndarray:
    """Log returns: drift + persistent alpha (momentum) + market with volatility regimes +
    sector factors + idiosyncratic noise with a weekly reversal."""
    n_sym, sqrt_year = syms.beta.size, np.sqrt(_YEAR)
    log_vol = _ar1(rng.normal(0.0, 0.05, size=n_days), 0.99, np.zeros(()))
    vol_var = 0.05**2 / (1 - 0.99**2)  # stationary variance of log_vol: keeps E[scale^2] = 1
    market = rng.normal(0.0, 0.16 / sqrt_year, size=n_days) * np.exp(log_vol - vol_var)
    sectors = rng.normal(0.0, 0.10 / sqrt_year, size=(n_days, _SECTORS))
    phi = 0.5 ** (1.0 / 126.0)
    alpha_sd = 0.12 / _YEAR  # stationary daily spread of the expected return
    alpha0 = rng.normal(0.0, alpha_sd, size=n_sym)
    alpha = _ar1(rng.normal(0.0, alpha_sd * np.sqrt(1 - phi**2), size=(n_days, n_sym)), phi, alpha0)
    z = rng.normal(0.0, 1.0, size=(n_days + _REVERSAL_LAGS, n_sym)) * (syms.idio_vol / sqrt_year)
    csum = np.cumsum(z, axis=0)
    past = csum[_REVERSAL_LAGS - 1 : -1] - np.vstack(
        [np.zeros((1, n_sym)), csum[: -_REVERSAL_LAGS - 1]]
    )
    idio = z[_REVERSAL_LAGS:] - _REVERSAL * past / _REVERSAL_LAGS
    factors = market[:, None] * syms.beta + sectors[:, syms.sector] * syms.gamma
    return syms.mu / _YEAR + alpha + factors + idio


def _price(x: np.ndarray) -> np.ndarray:
    return np.maximum(np.round(x, _PRICE_DECIMALS), _MIN_PRICE)


def _bars(
    rng: np.random.Generator, syms: _Symbols, close: np.ndarray, ret: np.ndarray
) -> dict[str, np.ndarray]:
    """Open, high, low, close, volume: part of each day's move happens overnight; the range
    scales with the symbol's volatility."""
    daily_vol = syms.idio_vol / np.sqrt(_YEAR)
    gap = 0.3 * ret + rng.normal(0.0, 0.2, size=ret.shape) * daily_vol
    prev_close = np.vstack([close[:1] * np.exp(-ret[:1]), close[:-1]])
    open_ = prev_close * np.exp(gap)
    wick_hi = np.abs(rng.normal(0.0, 0.5, size=ret.shape)) * daily_vol
    wick_lo = np.abs(rng.normal(0.0, 0.5, size=ret.shape)) * daily_vol
    shock = np.abs(ret) / daily_vol
    volume = np.round(
        syms.base_volume * np.exp(rng.normal(0.0, 0.3, size=ret.shape)) * (1 + 0.5 * shock)
    )
    close, open_ = _price(close), _price(open_)
    high = np.maximum(_price(np.maximum(open_, close) * np.exp(wick_hi)), np.maximum(open_, close))
    low = np.minimum(_price(np.minimum(open_, close) * np.exp(-wick_lo)), np.minimum(open_, close))
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


def _long_frame(days: Any, listed: np.ndarray, bars: dict[str, np.ndarray]) -> pl.DataFrame:
    """Long rows for the listed (day, symbol) cells, sorted by (symbol, date)."""
    n_days, n_sym = listed.shape
    keep = listed.T.ravel()  # symbol-major order (transpose) gives rows sorted by (symbol, date)
    sym_idx = np.repeat(np.arange(n_sym, dtype=np.uint32), n_days)[keep]
    day_idx = np.tile(np.arange(n_days, dtype=np.uint32), n_sym)[keep]
    width = max(4, len(str(n_sym)))
    names = pl.Series("symbol", [f"SYM{i + 1:0{width}d}" for i in range(n_sym)], dtype=pl.String)
    dates = pl.Series("date", days, dtype=pl.Date)
    columns = [
        pl.Series(name, bars[name].T.ravel()[keep], dtype=pl.Float64)
        for name in ("open", "high", "low", "close", "volume")
    ]
    return pl.DataFrame([dates.gather(day_idx), names.gather(sym_idx), *columns])


def universe_digest(
    symbols: int = 500,
    start: str = "2015-01-01",
    end: str = "2024-12-31",
    seed: int = 7,
) -> str:
    """SHA-256 of the universe written as the store writes it (uncompressed Arrow IPC).

    This is the digest its :class:`~qpipe.store.DatasetRef` gets; it never changes for the same
    arguments (the determinism contract, pinned in the tests).
    """
    frame = builtin_universe(symbols, start, end, seed)
    with tempfile.TemporaryDirectory(prefix="qpipe-universe-") as tmp:
        return write_ipc_atomic(frame, Path(tmp) / "universe.arrow")
