"""Numbers the run page shows, computed from the equity and benchmark frames (pure numpy/Polars).

Conventions (docs/report.md): daily simple returns, ``PERIODS_PER_YEAR`` trading days a year,
risk-free rate 0, drawdown from a running maximum that starts at the capital before the first
day (the metrics contract's ``E_-1``).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from qpipe.conventions import PERIODS_PER_YEAR

ROLLING_WINDOW = 126  # half a year of trading days: rolling Sharpe, volatility and beta


def to_np(frame: pl.DataFrame, column: str) -> np.ndarray:
    """A column as a float64 numpy array with nulls as NaN."""
    return frame.get_column(column).cast(pl.Float64).fill_null(float("nan")).to_numpy().copy()


def base_capital(equity: np.ndarray, returns: np.ndarray) -> float:
    """Capital before the first day: ``E_0 / (1 + r_0)``, as the metrics contract defines r_0."""
    if equity.size == 0:
        return 1.0
    r0 = returns[0] if returns.size else 0.0
    if math.isfinite(r0) and r0 > -1.0 and math.isfinite(equity[0]):
        base = float(equity[0] / (1.0 + r0))
        if base > 0:
            return base
    return float(equity[0]) if equity[0] > 0 else 1.0


def drawdown(equity: np.ndarray, capital: float) -> np.ndarray:
    """``E / running max(E) - 1`` with the running maximum starting at the capital (contract)."""
    if equity.size == 0:
        return equity
    peak = np.maximum.accumulate(np.concatenate(([capital], equity)))[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        return equity / peak - 1.0


def first_invested_index(equity: pl.DataFrame) -> int:
    """Row of the first day the book holds positions (0 when it never does or cannot tell).

    The first day with gross exposure > 0, or, without exposure columns, the first day with
    turnover > 0. Days before it are the strategy's warm-up (e.g. a 12-month lookback).
    """
    column = "gross_exposure" if "gross_exposure" in equity.columns else "turnover"
    values = to_np(equity, column)
    hits = np.flatnonzero(np.isfinite(values) & (values > 0))
    return int(hits[0]) if hits.size else 0


@dataclass(frozen=True)
class Drawdown:
    """One drawdown period: peak (start), trough and recovery (None if not yet recovered)."""

    start: dt.date
    trough: dt.date
    recovery: dt.date | None
    depth: float  # trough equity / peak - 1 (negative)
    length: int  # trading days from the peak to the recovery, or to the last day
    to_recover: int | None  # trading days from the trough to the recovery


def worst_drawdowns(dates: pl.Series, dd: np.ndarray, top: int = 5) -> list[Drawdown]:
    """The ``top`` deepest drawdown periods, deepest first (a period runs peak -> recovery)."""
    under = np.isfinite(dd) & (dd < 0)
    if not under.any():
        return []
    edges = np.flatnonzero(np.diff(np.concatenate(([0], under.view(np.int8), [0]))))
    days = dates.to_list()
    periods = []
    for a, b in zip(edges[::2], edges[1::2], strict=True):  # rows a..b-1 are under water
        trough = a + int(np.argmin(dd[a:b]))
        recovered = b < dd.size
        start = max(a - 1, 0)  # the peak is the last day at the high (or the capital, day 0)
        periods.append(
            Drawdown(
                start=days[start],
                trough=days[trough],
                recovery=days[b] if recovered else None,
                depth=float(dd[trough]),
                length=(b if recovered else dd.size - 1) - start,
                to_recover=b - trough if recovered else None,
            )
        )
    periods.sort(key=lambda p: (p.depth, p.start))
    return periods[:top]


def rolling_sharpe(returns: pl.Series, window: int = ROLLING_WINDOW) -> np.ndarray:
    mean = returns.rolling_mean(window, min_samples=window)
    std = returns.rolling_std(window, min_samples=window, ddof=1)
    return _finite_np(mean / std * math.sqrt(PERIODS_PER_YEAR))


def rolling_vol(returns: pl.Series, window: int = ROLLING_WINDOW) -> np.ndarray:
    std = returns.rolling_std(window, min_samples=window, ddof=1)
    return _finite_np(std * math.sqrt(PERIODS_PER_YEAR))


def rolling_beta(returns: pl.Series, bench: pl.Series, window: int = ROLLING_WINDOW) -> np.ndarray:
    """``cov(r, b) / var(b)`` over a trailing window (ddof 1, as the ``beta`` metric)."""
    frame = pl.DataFrame({"r": returns.cast(pl.Float64), "b": bench.cast(pl.Float64)})
    out = frame.select(
        (
            pl.rolling_cov("r", "b", window_size=window, min_samples=window, ddof=1)
            / pl.col("b").rolling_var(window, min_samples=window, ddof=1)
        ).alias("beta")
    )
    return _finite_np(out.get_column("beta"))


def _finite_np(series: pl.Series) -> np.ndarray:
    out = series.cast(pl.Float64).fill_null(float("nan")).to_numpy().copy()
    out[~np.isfinite(out)] = np.nan
    return out


def period_returns(dates: pl.Series, returns: pl.Series, every: str) -> pl.DataFrame:
    """Compounded return per calendar month (``every="month"``) or year (``"year"``), sorted."""
    frame = pl.DataFrame({"date": dates, "r": returns.cast(pl.Float64)})
    keys = [pl.col("date").dt.year().alias("year")]
    if every == "month":
        keys.append(pl.col("date").dt.month().alias("month"))
    names = [k.meta.output_name() for k in keys]
    return (
        frame.with_columns(keys)
        .group_by(names)
        .agg(((pl.col("r").fill_null(0.0) + 1.0).product() - 1.0).alias("ret"))
        .sort(names)
    )


@dataclass(frozen=True)
class Distribution:
    """Daily-return distribution statistics (returns as fractions)."""

    n: int
    mean: float | None
    std: float | None
    skew: float | None  # sample skewness (population moments)
    kurtosis: float | None  # excess kurtosis (normal = 0)
    var95: float | None  # historical 95% value at risk: the 5th percentile return (negative)
    cvar95: float | None  # mean return on the days at or below var95
    best_day: tuple[dt.date, float] | None
    worst_day: tuple[dt.date, float] | None
    best_month: tuple[str, float] | None
    worst_month: tuple[str, float] | None


def distribution(dates: pl.Series, returns: pl.Series) -> Distribution:
    """Moments, VaR/CVaR and extremes of the daily returns (null returns skipped)."""
    frame = pl.DataFrame({"date": dates, "r": returns.cast(pl.Float64)}).filter(
        pl.col("r").is_not_null() & pl.col("r").is_finite()
    )
    r = frame.get_column("r").to_numpy()
    if r.size == 0:
        return Distribution(0, None, None, None, None, None, None, None, None, None, None)
    mean, std = float(r.mean()), float(r.std(ddof=1)) if r.size > 1 else None
    m2 = float(((r - mean) ** 2).mean())
    skew = kurt = None
    if m2 > 0:
        skew = float(((r - mean) ** 3).mean() / m2**1.5)
        kurt = float(((r - mean) ** 4).mean() / m2**2 - 3.0)
    var95 = float(np.quantile(r, 0.05))
    cvar95 = float(r[r <= var95].mean())
    d = frame.get_column("date").to_list()
    months = period_returns(frame.get_column("date"), frame.get_column("r"), "month")
    mk = [f"{y}-{m:02d}" for y, m in months.select("year", "month").iter_rows()]
    mr = months.get_column("ret").to_numpy()
    return Distribution(
        n=int(r.size),
        mean=mean,
        std=std,
        skew=skew,
        kurtosis=kurt,
        var95=var95,
        cvar95=cvar95,
        best_day=(d[int(r.argmax())], float(r.max())),
        worst_day=(d[int(r.argmin())], float(r.min())),
        best_month=(mk[int(mr.argmax())], float(mr.max())) if mr.size else None,
        worst_month=(mk[int(mr.argmin())], float(mr.min())) if mr.size else None,
    )


def histogram(returns: np.ndarray, bins: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Bin centres and counts of the finite daily returns (empty arrays when there are none)."""
    r = returns[np.isfinite(returns)]
    if r.size == 0:
        return np.empty(0), np.empty(0)
    lo, hi = float(r.min()), float(r.max())
    if hi <= lo:
        lo, hi = lo - 1e-4, hi + 1e-4
    counts, edges = np.histogram(r, bins=bins, range=(lo, hi))
    return (edges[:-1] + edges[1:]) / 2, counts.astype(float)
