"""Allocation: signals to target weights on rebalance dates (needs every date; no sharding).

The steps, in order (each only reads rows of dates up to the rebalance date t):

1. **Schedule** -- :func:`rebalance_dates` picks the rebalance dates from the price dates (the
   dates present in the signals frame): ``daily``, ``weekly`` (last price date of each ISO week),
   ``month_end`` (last price date of each month), ``month_start`` (first price date of each
   month) or ``every_k`` (every k-th price date counting from the first, which is index 0).
2. **Scheme** -- on each rebalance date, among the names with a non-null signal (so only names
   with a price that day), weights with unit gross exposure (``sum |w| = 1``):
   ``top_n`` equal weight on the ``top_n`` highest signals; ``long_short`` +0.5/k on the top
   ``k = floor(quantile * n)`` names and -0.5/k on the bottom k (long only: 1/k on the top k);
   ``inverse_vol`` the ``top_n`` highest signals weighted by ``1 / risk_vol``; ``proportional``
   ``w = s / sum |s|`` (long only: negative signals count as 0). Ties are broken by symbol.
3. **Long only** -- negative weights become 0.
4. **Per-name cap** -- ``|w|`` is clipped to ``max_weight``. Nothing is re-normalised: what the
   cap removes stays in cash.
5. **Gross limit** -- if ``sum |w| > gross_leverage`` all weights are scaled down to it (a limit,
   never a target: unit-gross weights are not levered up here).
6. **Volatility targeting** (``target_vol > 0``) -- the ex-ante vol of the day's portfolio is its
   trailing realised vol: hold today's weights over the last ``vol_window`` price dates,
   ``p_s = sum_i w_i r_{i,s}`` (a missing return counts as 0), ``sigma = std(p, ddof=1) sqrt(252)``.
   This historical-simulation estimator uses the full sample covariance of the held names
   without forming it. Weights are scaled by ``k = min(target_vol / sigma, gross_leverage /
   sum |w|, max_weight / max |w|)``, so the scaled weights still meet both limits. With fewer
   than ``vol_window`` dates of history (or sigma = 0) the weights are left as they are.

The output is `date`, `symbol`, `weight` (Float64), sorted by (date, symbol), holding the non-zero
weights of each rebalance date. A rebalance date with no position (all cash) still appears, as one
row with weight 0.0 for the first symbol (byte-wise) priced that day; unlisted symbols have
weight 0 (DESIGN.md, weights).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Literal

import numpy as np
import polars as pl

from qpipe.conventions import PERIODS_PER_YEAR
from qpipe.errors import StageError
from qpipe.stages.base import stage
from qpipe.stages.signals import ordered_sum

__all__ = ["RebalanceRule", "Scheme", "allocate", "rebalance_dates", "vol_target_scale"]

Scheme = Literal["top_n", "long_short", "inverse_vol", "proportional"]
RebalanceRule = Literal["daily", "weekly", "month_end", "month_start", "every_k"]
KEYS = ("date", "symbol")
LIMIT_SLACK = 1e-12  # far inside the audit's 1e-9 gross tolerance


def rebalance_dates(dates: pl.LazyFrame, rule: RebalanceRule, every_k: int = 21) -> pl.LazyFrame:
    """The rebalance dates (a `date` column, ascending) among the price dates in ``dates``.

    Parameters
    ----------
    dates
        Any frame with a `date` column; duplicates are fine.
    rule
        ``daily``, ``weekly``, ``month_end``, ``month_start`` or ``every_k``.
    every_k
        For ``every_k``: price dates 0, k, 2k, ... counting from the first.
    """
    d = dates.select("date").unique().sort("date")
    c = pl.col("date")
    if rule == "daily":
        return d
    if rule == "weekly":
        return (
            d.group_by(c.dt.iso_year(), c.dt.week().alias("_w"))
            .agg(c.max().alias("_d"))
            .select(pl.col("_d").alias("date"))
            .sort("date")
        )
    if rule in ("month_end", "month_start"):
        pick = c.max() if rule == "month_end" else c.min()
        return (
            d.group_by(c.dt.year().alias("_y"), c.dt.month().alias("_m"))
            .agg(pick.alias("_d"))
            .select(pl.col("_d").alias("date"))
            .sort("date")
        )
    if rule == "every_k":
        if every_k < 1:
            msg = f"`every_k` must be >= 1, got {every_k}"
            raise StageError(msg)
        return d.with_row_index("_i").filter(pl.col("_i") % every_k == 0).select("date")
    msg = (
        f"rebalance rule `{rule}` is unknown; use daily, weekly, month_end, month_start or every_k"
    )
    raise StageError(msg)


def _by_score(frame: pl.LazyFrame, score: str) -> pl.LazyFrame:
    """Sorted by (date, score descending, symbol) with `_pos` (0 = best) and `_n` per date."""
    # `.over` follows row order, so after this sort position 0 is the best, ties by symbol
    pos = pl.int_range(pl.len(), dtype=pl.Int64).over("date")
    return frame.sort(["date", score, "symbol"], descending=[False, True, False]).with_columns(
        pos.alias("_pos"), pl.len().over("date").cast(pl.Int64).alias("_n")
    )


def _scheme_weights(
    cand: pl.LazyFrame, scheme: str, top_n: int, quantile: float, long_only: bool
) -> pl.LazyFrame:
    """Unit-gross weights per date from candidates (`date`, `symbol`, `signal`[, `risk_vol`])."""
    w = pl.col("weight")
    if scheme == "top_n":
        ranked = _by_score(cand, "signal").filter(pl.col("_pos") < top_n)
        out = ranked.with_columns((1.0 / pl.len().over("date")).alias("weight"))
    elif scheme == "inverse_vol":
        ranked = _by_score(cand, "signal").filter(pl.col("_pos") < top_n).sort(KEYS)
        inv = 1.0 / pl.col("risk_vol")
        out = ranked.with_columns((inv / ordered_sum(inv).over("date")).alias("weight"))
    elif scheme == "long_short":
        ranked = _by_score(cand, "signal")
        # small epsilon: 0.29 * 100 must give 29, not 28
        k = (pl.col("_n").cast(pl.Float64) * quantile + 1e-9).floor()
        pos = pl.col("_pos").cast(pl.Float64)
        long = pos < k
        short = (pl.col("_n") - 1 - pl.col("_pos")).cast(pl.Float64) < k
        if long_only:
            weight = pl.when(long).then(1.0 / k).otherwise(0.0)
        else:
            weight = pl.when(long).then(0.5 / k).when(short).then(-0.5 / k).otherwise(0.0)
        out = ranked.with_columns(weight.alias("weight"))
    elif scheme == "proportional":
        s = pl.col("signal").clip(lower_bound=0.0) if long_only else pl.col("signal")
        total = ordered_sum(s.abs()).over("date")
        out = cand.sort(KEYS).with_columns(
            pl.when(total > 0).then(s / total).otherwise(0.0).alias("weight")
        )
    else:
        msg = (
            f"allocation scheme `{scheme}` is unknown; "
            "use top_n, long_short, inverse_vol or proportional"
        )
        raise StageError(msg)
    out = out.select(*KEYS, w.cast(pl.Float64))
    if long_only:
        out = out.with_columns(w.clip(lower_bound=0.0))
    return out.filter(w != 0.0).sort(KEYS)


def vol_target_scale(
    weights: pl.LazyFrame, returns: pl.LazyFrame, dates: pl.LazyFrame, *, window: int
) -> pl.LazyFrame:
    """Trailing realised vol of each date's portfolio (historical simulation).

    Parameters
    ----------
    weights
        `date`, `symbol`, `weight` (rebalance dates only).
    returns
        `date`, `symbol`, `ret` (one-period returns; missing counts as 0).
    dates
        Every price date (`date`).
    window
        Number of price dates ending at (and including) the rebalance date.

    Returns
    -------
    pl.LazyFrame
        `date`, `sigma` (annualised; null with fewer than ``window`` dates of history).
    """
    # Dense numpy over one combined frame: a join of every held name with every window date
    # was 7M+ rows for daily rebalancing of 50 names; gathering from a dense matrix is ~100x
    # cheaper. `map_batches` keeps it lazy: it runs when the plan is collected.
    parts = [
        returns.select("date", "symbol", pl.col("ret").cast(pl.Float64), pl.lit(0).alias("_part")),
        weights.select(
            "date",
            "symbol",
            pl.col("weight").cast(pl.Float64).alias("ret"),
            pl.lit(1).alias("_part"),
        ),
        dates.select(
            "date", pl.lit(None, pl.String).alias("symbol"), pl.lit(None, pl.Float64).alias("ret")
        ).with_columns(pl.lit(2).alias("_part")),
    ]
    combined = pl.concat(parts, how="vertical_relaxed")
    schema = {"date": pl.Date, "sigma": pl.Float64}
    return combined.map_batches(lambda df: _sigma(df, window), schema=schema)


def _sigma(frame: pl.DataFrame, window: int) -> pl.DataFrame:
    part = pl.col("_part")
    dates = frame.filter(part != 1)["date"].unique().sort()
    rets = frame.filter((part == 0) & pl.col("ret").is_finite())
    held = frame.filter((part == 1) & (pl.col("ret") != 0.0)).sort("date", "symbol")
    symbols = pl.concat([rets["symbol"], held["symbol"]]).unique().sort()
    d_num = dates.to_physical().to_numpy()

    def rows(col: pl.Series) -> np.ndarray:
        return np.searchsorted(d_num, col.to_physical().to_numpy())

    codes = np.arange(len(symbols))

    def cols(col: pl.Series) -> np.ndarray:
        return col.replace_strict(symbols, codes, return_dtype=pl.Int64).to_numpy()

    dense = np.zeros((len(dates), len(symbols)))  # a missing return counts as 0
    dense[rows(rets["date"]), cols(rets["symbol"])] = rets["ret"].to_numpy()
    h_row, h_col, h_w = rows(held["date"]), cols(held["symbol"]), held["ret"].to_numpy()
    starts = np.flatnonzero(np.r_[True, h_row[1:] != h_row[:-1]])
    ends = np.r_[starts[1:], len(h_row)]
    date_list = dates.to_list()
    out_dates: list[dt.date] = []
    out_sigma: list[float | None] = []
    for a, b in zip(starts, ends, strict=True):
        i = int(h_row[a])
        out_dates.append(date_list[i])
        if i + 1 < window:
            out_sigma.append(None)
            continue
        # fixed summation order (numpy, one thread): the same bits on every run
        port = (dense[i - window + 1 : i + 1, h_col[a:b]] * h_w[a:b]).sum(axis=1)
        out_sigma.append(float(np.std(port, ddof=1) * math.sqrt(PERIODS_PER_YEAR)))
    return pl.DataFrame(
        {"date": out_dates, "sigma": out_sigma}, schema={"date": pl.Date, "sigma": pl.Float64}
    )


@stage(output="weights", shard=None)
def allocate(
    signals: pl.LazyFrame,
    features: pl.LazyFrame,
    *,
    scheme: Scheme = "top_n",
    top_n: int = 50,
    quantile: float = 0.2,
    rebalance: RebalanceRule = "month_end",
    every_k: int = 21,
    max_weight: float = 0.1,
    gross_leverage: float = 1.0,
    long_only: bool = True,
    target_vol: float = 0.0,
    vol_window: int = 63,
) -> pl.LazyFrame:
    """Target weights on rebalance dates from per-date signals (see the module docstring).

    Parameters
    ----------
    signals
        `date`, `symbol`, `signal`: one row per priced (date, symbol); its dates are the price
        dates.
    features
        `date`, `symbol` and `risk_vol` (scheme ``inverse_vol``) and `ret` (``target_vol > 0``).

    Returns
    -------
    pl.LazyFrame
        `date`, `symbol`, `weight` (Float64) sorted by (date, symbol); at least one row per
        rebalance date.
    """
    _check_params(max_weight, gross_leverage, quantile, top_n)
    sig = signals.select(*KEYS, pl.col("signal").cast(pl.Float64))
    on_reb = sig.join(rebalance_dates(sig, rebalance, every_k), on="date", how="semi")
    cand = _candidates(on_reb, features, scheme)
    weights = _capped(
        _scheme_weights(cand, scheme, top_n, quantile, long_only), max_weight, gross_leverage
    )
    if target_vol > 0:
        rets = features.select(*KEYS, pl.col("ret").cast(pl.Float64))
        weights = _vol_targeted(
            weights,
            rets,
            sig.select("date"),
            target_vol=target_vol,
            gross_leverage=gross_leverage,
            max_weight=max_weight,
            vol_window=vol_window,
        )
    return _with_all_cash_dates(weights, on_reb)


def _check_params(max_weight: float, gross_leverage: float, quantile: float, top_n: int) -> None:
    if not (max_weight > 0 and gross_leverage > 0 and 0 < quantile <= 0.5 and top_n >= 1):
        msg = (
            f"allocation params out of range: max_weight={max_weight}, "
            f"gross_leverage={gross_leverage}, quantile={quantile}, top_n={top_n}"
        )
        raise StageError(msg)


def _candidates(on_reb: pl.LazyFrame, features: pl.LazyFrame, scheme: Scheme) -> pl.LazyFrame:
    """Rows on rebalance dates with a finite signal (and, for inverse_vol, a positive vol)."""
    cand = on_reb.filter(pl.col("signal").is_not_null() & pl.col("signal").is_finite())
    if scheme != "inverse_vol":
        return cand
    vol = features.select(*KEYS, pl.col("risk_vol").cast(pl.Float64))
    return cand.join(vol, on=list(KEYS), how="left").filter(
        pl.col("risk_vol").is_finite() & (pl.col("risk_vol") > 0)
    )


def _capped(weights: pl.LazyFrame, max_weight: float, gross_leverage: float) -> pl.LazyFrame:
    """Each weight within ±max_weight, then the date's gross scaled down to the limit."""
    w = pl.col("weight")
    weights = weights.with_columns(w.clip(-max_weight, max_weight))
    gross = ordered_sum(w.abs()).over("date")
    # a few-ulp excess (fifty 0.02s added in order give 1.0000000000000004) is no reason to rescale
    return weights.with_columns(
        pl.when(gross > gross_leverage + LIMIT_SLACK)
        .then(w * (gross_leverage / gross))
        .otherwise(w)
        .alias("weight")
    )


def _vol_targeted(
    weights: pl.LazyFrame,
    rets: pl.LazyFrame,
    dates: pl.LazyFrame,
    *,
    target_vol: float,
    gross_leverage: float,
    max_weight: float,
    vol_window: int,
) -> pl.LazyFrame:
    """Scale each date's book towards ``target_vol``, never past the gross or per-name limits."""
    w = pl.col("weight")
    sigma = vol_target_scale(weights, rets, dates, window=vol_window)
    g = ordered_sum(w.abs()).over("date")
    top = w.abs().max().over("date")
    k = pl.min_horizontal(
        pl.lit(target_vol) / pl.col("sigma"),
        pl.lit(gross_leverage) / g,
        pl.lit(max_weight) / top,
    )
    return (
        weights.join(sigma, on="date", how="left")
        .with_columns(
            pl.when(pl.col("sigma").is_not_null() & (pl.col("sigma") > 0))
            .then(w * k)
            .otherwise(w)
            .alias("weight")
        )
        .select(*KEYS, "weight")
    )


def _with_all_cash_dates(weights: pl.LazyFrame, on_reb: pl.LazyFrame) -> pl.LazyFrame:
    """All-cash rebalance dates keep one weight-0 row so the date stays a rebalance date."""
    empty = (
        on_reb.join(weights.select("date").unique(), on="date", how="anti")
        .group_by("date")
        .agg(pl.col("symbol").min())
        .with_columns(pl.lit(0.0, dtype=pl.Float64).alias("weight"))
    )
    return pl.concat([weights.select(*KEYS, "weight"), empty.select(*KEYS, "weight")]).sort(KEYS)
