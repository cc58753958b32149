"""Signals: one score per (date, symbol), from features of that same row or date.

Cross-sectional signals compare symbols on one date (``.over("date")``); the MA crossover reads
only its own row. Neither looks at any other date, so both shard by date. The output is always
`date`, `symbol`, `signal` (Float64), one row per feature row, sorted by (date, symbol), with a null
signal where it cannot be computed (a null feature, or a date with too few names).
"""

from __future__ import annotations

from typing import Literal

import polars as pl

from qpipe.errors import StageError
from qpipe.stages.base import stage

__all__ = ["SignalMethod", "cross_sectional", "cs_rank", "cs_zscore", "ma_crossover", "ordered_sum"]

SignalMethod = Literal["rank", "zscore", "raw"]
KEYS = ("date", "symbol")


def ordered_sum(expr: pl.Expr) -> pl.Expr:
    """Sum of ``expr`` (nulls as 0) adding the rows in their order, as an aggregation.

    Polars' ``sum`` may split a group into chunks whose number depends on the thread count, so
    its last bits can differ between runs; ``cum_sum`` is sequential, so its last value is the
    same on every run. Use it on rows sorted by (date, symbol): ``ordered_sum(x).over("date")``.
    """
    return expr.fill_null(0.0).cum_sum().last()


def cs_rank(expr: pl.Expr) -> pl.Expr:
    """Percentile rank per date in [0, 1]: ``(rank - 1) / (n - 1)`` with average ranks for ties.

    ``n`` counts the non-null values of the date; nulls stay null; a single name gets 0.5.
    """
    n = expr.count().over("date")
    rank = expr.rank("average").over("date")
    return (
        pl.when(expr.is_null()).then(None).when(n > 1).then((rank - 1.0) / (n - 1.0)).otherwise(0.5)
    )


def cs_zscore(expr: pl.Expr) -> pl.Expr:
    """Z-score per date: ``(x - mean) / std`` (ddof=1) over the date's non-null values.

    Null where the date has fewer than two values or they are all equal. Sums run in row order
    (:func:`ordered_sum`): sort by (date, symbol) first for bit-identical results.
    """
    n = expr.count().over("date")
    mean = ordered_sum(expr).over("date") / n
    std = (ordered_sum((expr - mean) ** 2).over("date") / (n - 1)).sqrt()
    return pl.when(std > 0).then((expr - mean) / std).otherwise(None)


@stage(output="signals", shard="date")
def cross_sectional(
    features: pl.LazyFrame, *, column: str, method: SignalMethod = "rank", sign: float = 1.0
) -> pl.LazyFrame:
    """Cross-sectional signal from one feature column: ``method(sign * column)`` per date.

    Parameters
    ----------
    features
        Frame with `date`, `symbol` and ``column``.
    column
        The feature to score (e.g. ``mom``, ``rev``, ``vol``).
    method
        ``rank`` (percentile rank in [0, 1], higher is better), ``zscore`` (per-date z-score) or
        ``raw`` (the signed value itself).
    sign
        ``-1.0`` to prefer low values (e.g. low volatility).

    Returns
    -------
    pl.LazyFrame
        `date`, `symbol`, `signal`, sorted by (date, symbol).
    """
    if method not in ("rank", "zscore", "raw"):
        msg = f"signal method `{method}` is unknown; use rank, zscore or raw"
        raise StageError(msg)
    # NaN would rank above everything; treat a non-finite score as missing.
    raw = pl.col(column).cast(pl.Float64) * float(sign)
    x = pl.when(raw.is_finite()).then(raw).otherwise(None)
    expr = {"rank": cs_rank, "zscore": cs_zscore, "raw": lambda e: e}[method](x)
    # Sort first so per-date means/stds sum in a fixed order (bit-identical across runs).
    return (
        features.select(*KEYS, column)
        .sort(KEYS)
        .select(*KEYS, expr.cast(pl.Float64).alias("signal"))
    )


@stage(output="signals", shard="date")
def ma_crossover(
    features: pl.LazyFrame, *, fast: str = "ma_fast", slow: str = "ma_slow", short: bool = False
) -> pl.LazyFrame:
    """Moving-average crossover: 1 where the fast MA is above the slow MA, else 0 (or -1 with
    ``short=True``); null while either average is null.

    Returns
    -------
    pl.LazyFrame
        `date`, `symbol`, `signal`, sorted by (date, symbol).
    """
    f, s = pl.col(fast), pl.col(slow)
    below = -1.0 if short else 0.0
    signal = (
        pl.when(f.is_null() | s.is_null())
        .then(None)
        .when(f > s)
        .then(pl.lit(1.0))
        .otherwise(pl.lit(below))
    )
    return features.select(*KEYS, signal.cast(pl.Float64).alias("signal")).sort(KEYS)
