"""Performance metrics (DESIGN.md, "Metrics") and the equal-weight benchmark.

All metrics are computed with numpy on the full daily return series in date order, so they are
deterministic. A metric whose denominator is zero (or, for standard deviations, below
:data:`ZERO_STD`, i.e. floating-point noise) is ``None`` (null in ``metrics.json``). So is a ratio
whose spread is not finite: returns so large that their squares overflow (one close of 1e200)
make the standard deviation infinite, and ``mean / inf`` would print a meaningless 0.0. The
Sortino ratio is null then too, and so are the benchmark metrics when either series' spread
overflows: their means and differences are as meaningless as the spread.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from qpipe.conventions import PERIODS_PER_YEAR
from qpipe.errors import BacktestError

__all__ = [
    "METRIC_NAMES",
    "ZERO_STD",
    "compute_metrics",
    "equal_weight_benchmark",
    "metrics_from_arrays",
]

PERIODS = PERIODS_PER_YEAR  # trading days a year (one definition)
# A standard deviation of daily returns below this is rounding noise, not risk.
ZERO_STD = 1e-14

METRIC_NAMES = (
    "total_return",
    "cagr",
    "ann_vol",
    "sharpe",
    "sortino",
    "max_drawdown",
    "calmar",
    "turnover_ann",
    "total_cost",
    "n_rebalances",
    "hit_rate",
    "exposure",
    "beta",
    "alpha_ann",
    "tracking_error",
    "information_ratio",
)


def _f(x: float | np.floating) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _std(x: np.ndarray) -> float | None:
    return float(np.std(x, ddof=1)) if x.size >= 2 else None


def compute_metrics(
    equity: pl.DataFrame,
    *,
    initial_capital: float,
    n_rebalances: int,
    benchmark_returns: pl.DataFrame | None = None,
    exposure: pl.Series | None = None,
) -> dict[str, float | int | None]:
    """Compute every DESIGN.md metric from an equity frame.

    Parameters
    ----------
    equity
        The equity frame of a backtest (``date``, ``equity``, ``return``, ``turnover``,
        ``cost`` and, for ``exposure``, ``gross_exposure``), one row per price date.
    initial_capital
        Capital ``K`` (the running maximum of the drawdown starts at it).
    n_rebalances
        Reported as is.
    benchmark_returns
        A frame with ``date`` and ``return``; joined to the equity dates (inner join). ``None``
        leaves the benchmark metrics null.
    exposure
        Daily gross exposure (``sum |shares * close| / E``); default the ``gross_exposure``
        column of ``equity``. Nulls are skipped by the mean.

    Returns
    -------
    dict
        ``{name: value}`` in :data:`METRIC_NAMES` order; ``None`` where undefined.

    Notes
    -----
    With ``r`` the daily returns (rows with a null return, i.e. after equity fell to <= 0, are
    skipped), ``n`` the number of equity rows and ``b`` the aligned benchmark returns:
    ``beta = cov(r, b) / var(b)`` (ddof=1), ``alpha_ann = (mean(r) - beta * mean(b)) * 252``,
    ``tracking_error = std(r - b, ddof=1) * sqrt(252)``, ``information_ratio = mean(r - b) *
    252 / tracking_error``. ``cagr`` is -1 when final equity is <= 0.
    """
    for col in ("date", "equity", "return", "turnover", "cost"):
        if col not in equity.columns:
            msg = f"equity frame is missing column `{col}`"
            raise BacktestError(msg)
    eq = equity.sort("date")
    if exposure is None and "gross_exposure" in eq.columns:
        exposure = eq["gross_exposure"]
    x = None
    if exposure is not None:
        x = exposure.cast(pl.Float64).drop_nulls().drop_nans().to_numpy()
    rr = bb = None
    if benchmark_returns is not None and benchmark_returns.height:
        joined = (
            eq.select("date", "return")
            .join(benchmark_returns.select("date", pl.col("return").alias("_b")), on="date")
            .drop_nulls()
            .sort("date")
        )
        rr = joined["return"].cast(pl.Float64).to_numpy()
        bb = joined["_b"].cast(pl.Float64).to_numpy()
    return metrics_from_arrays(
        eq["equity"].cast(pl.Float64).to_numpy(),
        eq["return"].cast(pl.Float64).drop_nulls().to_numpy(),
        eq["turnover"].cast(pl.Float64).to_numpy(),
        eq["cost"],
        initial_capital=initial_capital,
        n_rebalances=n_rebalances,
        exposure=x,
        aligned_returns=rr,
        aligned_benchmark=bb,
    )


def metrics_from_arrays(
    e: np.ndarray,
    r: np.ndarray,
    turnover: np.ndarray,
    cost: pl.Series | np.ndarray,
    *,
    initial_capital: float,
    n_rebalances: int,
    exposure: np.ndarray | None = None,
    aligned_returns: np.ndarray | None = None,
    aligned_benchmark: np.ndarray | None = None,
) -> dict[str, float | int | None]:
    """The metrics of :func:`compute_metrics` from plain arrays (the one implementation).

    ``e``, ``turnover`` and ``cost`` have one value per equity row in date order; ``r`` holds
    the non-null daily returns; ``exposure`` the non-null, non-NaN gross exposures (None: null
    metric); ``aligned_returns``/``aligned_benchmark`` the strategy and benchmark returns on the
    dates both have (None: null benchmark metrics). The batched sweep
    (:mod:`qpipe.backtest.batch`) calls this too, so its rows equal ``metrics.json`` exactly.
    """
    k = float(initial_capital)
    n = e.size
    out: dict[str, float | int | None] = dict.fromkeys(METRIC_NAMES)
    out["n_rebalances"] = int(n_rebalances)
    # Polars' sum (not numpy's) as metrics.json has always used: the same bits as before
    costs = cost if isinstance(cost, pl.Series) else pl.Series("cost", cost, dtype=pl.Float64)
    out["total_cost"] = float(costs.sum()) if n else 0.0
    if n == 0:
        return out

    e_end = float(e[-1])
    out["total_return"] = _f(e_end / k - 1.0)
    out["cagr"] = _cagr(e_end / k, n) if e_end > 0 else -1.0
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is handled as a null
        sd = _std(r)
    spread_ok = sd is None or math.isfinite(sd)
    if sd is not None:
        out["ann_vol"] = _f(sd * math.sqrt(PERIODS))
        if _usable(sd):
            out["sharpe"] = _f(float(np.mean(r)) / sd * math.sqrt(PERIODS))
    if r.size:
        downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
        if _usable(downside) and spread_ok:
            out["sortino"] = _f(float(np.mean(r)) * PERIODS / (downside * math.sqrt(PERIODS)))
        moved = r[r != 0.0]
        if moved.size:
            out["hit_rate"] = float(np.count_nonzero(moved > 0.0)) / moved.size
    with np.errstate(over="ignore", invalid="ignore"):  # a non-finite equity gives a null
        peak = np.maximum.accumulate(np.concatenate(([k], e)))[1:]
        mdd = float(np.min(e / peak - 1.0))
    out["max_drawdown"] = _f(mdd)
    if mdd != 0.0 and out["cagr"] is not None:
        out["calmar"] = _f(float(out["cagr"]) / abs(mdd))
    out["turnover_ann"] = _f(float(np.mean(turnover)) * PERIODS)
    if exposure is not None:
        out["exposure"] = float(np.mean(exposure)) if exposure.size else None
    if aligned_returns is not None and aligned_benchmark is not None:
        _benchmark_metrics(out, aligned_returns, aligned_benchmark)
    return out


def _cagr(growth: float, n: int) -> float | None:
    try:
        return _f(growth ** (PERIODS / n) - 1.0)
    except OverflowError:  # a float power overflows with an error, not to inf
        return None


def _usable(spread: float) -> bool:
    """A spread a ratio may divide by: above rounding noise and finite."""
    return ZERO_STD < spread < math.inf


def _benchmark_metrics(out: dict[str, float | int | None], rr: np.ndarray, bb: np.ndarray) -> None:
    """Beta, alpha, tracking error and information ratio against aligned benchmark returns."""
    if rr.size < 2:
        return
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is handled as a null
        sb = float(np.std(bb, ddof=1))
        if not (math.isfinite(sb) and math.isfinite(float(np.std(rr, ddof=1)))):
            return  # a spread overflowed: every comparison with it is meaningless
        if _usable(sb):
            beta = float(np.cov(rr, bb, ddof=1)[0, 1]) / sb**2
            out["beta"] = _f(beta)
            out["alpha_ann"] = _f((float(np.mean(rr)) - beta * float(np.mean(bb))) * PERIODS)
        active = rr - bb
        te = float(np.std(active, ddof=1)) * math.sqrt(PERIODS)
    out["tracking_error"] = _f(te)
    if ZERO_STD * math.sqrt(PERIODS) < te < math.inf:
        out["information_ratio"] = _f(float(np.mean(active)) * PERIODS / te)


def equal_weight_benchmark(prices: pl.DataFrame) -> pl.DataFrame:
    """Daily-rebalanced equal weight of the universe, as a return series.

    Parameters
    ----------
    prices
        Long prices (``date``, ``symbol``, ``close``).

    Returns
    -------
    pl.DataFrame
        ``date``, ``return``: one row per price date (sorted); the mean over symbols priced on
        both that date and the previous price date of ``close_t / close_prev - 1``; 0 on the
        first date and on dates with no such symbol.
    """
    for col in ("date", "symbol", "close"):
        if col not in prices.columns:
            msg = f"benchmark prices frame is missing column `{col}`"
            raise BacktestError(msg)
    if prices.height == 0:
        return pl.DataFrame(schema={"date": pl.Date, "return": pl.Float64})
    days = prices["date"].cast(pl.Int32).to_numpy()
    uniq = np.unique(days)
    symbols = prices["symbol"].unique().sort()
    idx = pl.DataFrame({"symbol": symbols, "_s": pl.int_range(symbols.len(), eager=True)})
    coded = prices.select("symbol", "close").with_columns(
        pl.Series("_d", np.searchsorted(uniq, days))).join(idx, on="symbol")
    close = np.full((uniq.size, symbols.len()), np.nan)
    close[coded["_d"].to_numpy(), coded["_s"].to_numpy()] = coded["close"].cast(
        pl.Float64).to_numpy()
    rets = np.zeros(uniq.size)
    if uniq.size > 1:
        step = close[1:] / close[:-1] - 1.0  # NaN unless priced on both days
        both = ~np.isnan(step)
        count = both.sum(axis=1)
        total = np.where(both, step, 0.0).sum(axis=1)
        rets[1:] = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    return pl.DataFrame({"date": pl.Series(uniq.astype(np.int32)).cast(pl.Date), "return": rets})
