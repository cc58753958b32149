"""Per-symbol time-series features (shard by symbol).

Every feature is a Polars expression evaluated ``.over("symbol")`` on prices sorted by
(symbol, date), so a symbol's rows are in time order whatever the input order was. Windows count
the symbol's own rows (its price dates), not calendar days; a window that is not full gives null.
Nothing looks forward: every expression at row t reads rows t, t-1, ... only.

>>> import datetime as dt
>>> prices = pl.LazyFrame({
...     "date": [dt.date(2024, 1, d) for d in (2, 3, 4)],
...     "symbol": ["A"] * 3,
...     "close": [100.0, 110.0, 99.0],
... })
>>> out = features.fn(prices, columns=("ret",)).collect()
>>> [round(x, 2) if x is not None else None for x in out["ret"]]
[None, 0.1, -0.1]
"""

from __future__ import annotations

import math
from collections.abc import Callable

import polars as pl

from qpipe.conventions import PERIODS_PER_YEAR
from qpipe.errors import StageError
from qpipe.stages.base import stage

__all__ = [
    "FEATURE_COLUMNS",
    "PERIODS_PER_YEAR",
    "feature_warmup",
    "features",
    "log_return",
    "momentum",
    "moving_average",
    "price_zscore",
    "reversal",
    "rolling_volatility",
    "simple_return",
]

KEYS = ("symbol", "date")

# Every column the `features` stage can add, in output order.
FEATURE_COLUMNS = (
    "ret",
    "log_ret",
    "vol",
    "ma_fast",
    "ma_slow",
    "mom",
    "rev",
    "zscore",
    "risk_vol",
)


def _ret(periods: int) -> pl.Expr:
    # group-local (no `.over`): the caller evaluates it once per symbol
    return pl.col("close") / pl.col("close").shift(periods) - 1.0


def _vol(window: int) -> pl.Expr:
    return _ret(1).rolling_std(window, min_samples=window) * math.sqrt(PERIODS_PER_YEAR)


def _ma(window: int) -> pl.Expr:
    return pl.col("close").rolling_mean(window, min_samples=window)


def _mom(lookback: int, skip: int) -> pl.Expr:
    return pl.col("close").shift(skip) / pl.col("close").shift(lookback) - 1.0


def _zscore(window: int) -> pl.Expr:
    c = pl.col("close")
    mean = c.rolling_mean(window, min_samples=window)
    std = c.rolling_std(window, min_samples=window)
    # equal prices in the window: std = 0 gives null, never inf/NaN
    return pl.when(std > 0).then((c - mean) / std).otherwise(None)


def simple_return(periods: int = 1) -> pl.Expr:
    """Return over ``periods`` rows: ``close_t / close_{t-periods} - 1`` per symbol."""
    return _ret(periods).over("symbol")


def log_return(periods: int = 1) -> pl.Expr:
    """Log return over ``periods`` rows: ``ln(close_t / close_{t-periods})`` per symbol."""
    return (pl.col("close") / pl.col("close").shift(periods)).log().over("symbol")


def rolling_volatility(window: int) -> pl.Expr:
    """Annualised volatility: ``std(ret over the last window rows, ddof=1) * sqrt(252)``.

    Needs ``window`` returns, so ``window + 1`` prices; null before that.
    """
    return _vol(window).over("symbol")


def moving_average(window: int) -> pl.Expr:
    """Simple moving average of ``close`` over the last ``window`` rows (null until full)."""
    return _ma(window).over("symbol")


def momentum(lookback: int, skip: int) -> pl.Expr:
    """12-1 style momentum: ``close_{t-skip} / close_{t-lookback} - 1`` (the last ``skip`` rows
    are left out to avoid the short-term reversal)."""
    return _mom(lookback, skip).over("symbol")


def reversal(lookback: int) -> pl.Expr:
    """Short-term reversal score: the negative of the return over the last ``lookback`` rows."""
    return (-_ret(lookback)).over("symbol")


def price_zscore(window: int) -> pl.Expr:
    """Rolling z-score of price: ``(close - mean) / std`` over the last ``window`` rows.

    Null where the window is not full or the prices in it are all equal (std = 0).
    """
    return _zscore(window).over("symbol")


def _builders(
    lookback: int,
    skip: int,
    fast: int,
    slow: int,
    vol_window: int,
    zscore_window: int,
    risk_window: int,
) -> dict[str, tuple[Callable[[], pl.Expr], int]]:
    # name -> (expression, rows of history it needs before the current row)
    return {
        "ret": (lambda: simple_return(1), 1),
        "log_ret": (lambda: log_return(1), 1),
        "vol": (lambda: rolling_volatility(vol_window), vol_window),
        "ma_fast": (lambda: moving_average(fast), fast - 1),
        "ma_slow": (lambda: moving_average(slow), slow - 1),
        "mom": (lambda: momentum(lookback, skip), lookback),
        "rev": (lambda: reversal(lookback), lookback),
        "zscore": (lambda: price_zscore(zscore_window), zscore_window - 1),
        "risk_vol": (lambda: rolling_volatility(risk_window), risk_window),
    }


def feature_warmup(
    columns: tuple[str, ...],
    *,
    lookback: int = 252,
    skip: int = 21,
    fast: int = 50,
    slow: int = 200,
    vol_window: int = 63,
    zscore_window: int = 20,
    risk_window: int = 63,
) -> int:
    """Rows of a symbol's history (before the current row) the given feature columns need."""
    table = _builders(lookback, skip, fast, slow, vol_window, zscore_window, risk_window)
    _check_columns(columns)
    return max((table[c][1] for c in columns), default=0)


def _check_columns(columns: tuple[str, ...]) -> None:
    unknown = [c for c in columns if c not in FEATURE_COLUMNS]
    if unknown:
        names = ", ".join(f"`{c}`" for c in unknown)
        msg = f"unknown feature column(s) {names}; known: {', '.join(FEATURE_COLUMNS)}"
        raise StageError(msg)


@stage(output="features", shard="symbol")
def features(
    prices: pl.LazyFrame,
    *,
    columns: tuple[str, ...] = FEATURE_COLUMNS,
    lookback: int = 252,
    skip: int = 21,
    fast: int = 50,
    slow: int = 200,
    vol_window: int = 63,
    zscore_window: int = 20,
    risk_window: int = 63,
) -> pl.LazyFrame:
    """Per-symbol features: `date`, `symbol`, `close` plus the requested feature columns.

    Parameters
    ----------
    prices
        Long prices (`date`, `symbol`, `close`, ...), any row order.
    columns
        Which of :data:`FEATURE_COLUMNS` to add: ``ret`` / ``log_ret`` (1-row simple / log
        return), ``vol`` (annualised vol of returns over ``vol_window``), ``ma_fast`` /
        ``ma_slow`` (moving averages over ``fast`` / ``slow``), ``mom`` (return from
        t-``lookback`` to t-``skip``), ``rev`` (minus the return over ``lookback``), ``zscore``
        (price z-score over ``zscore_window``), ``risk_vol`` (annualised vol over
        ``risk_window``, used by the allocation for inverse-vol and vol targeting).

    Returns
    -------
    pl.LazyFrame
        One row per input row, sorted by (symbol, date); features are null while their window
        is not full.
    """
    cols = tuple(columns)
    _check_columns(cols)
    table = _builders(lookback, skip, fast, slow, vol_window, zscore_window, risk_window)
    exprs = [table[c][0]().cast(pl.Float64).alias(c) for c in FEATURE_COLUMNS if c in cols]
    # Sort first: `.over("symbol")` windows follow row order, which must be time order.
    return (
        prices.select("date", "symbol", pl.col("close").cast(pl.Float64))
        .sort(KEYS)
        .with_columns(exprs)
    )
