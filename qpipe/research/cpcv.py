"""Combinatorial purged cross-validation of a parameter grid.

A parameter set has nothing to fit, so each set is backtested **once** over the whole history
(the batched kernel; :func:`trial_returns`) and every split reads that set's daily returns on
its own days. Step by step, :func:`evaluate_cpcv`:

1. for every split, the annualised Sharpe of every set on the split's training days (purged and
   embargoed) and on its test days;
2. per split, the set with the best training Sharpe (first on ties) is *chosen*;
3. the C(N-1, k-1) **paths**: path p strings together, group by group, the test-day returns of
   the set chosen by the split that path p takes for that group (``Splits.paths``), a full
   out-of-sample history of the select-the-best procedure; its Sharpe is one draw of the
   out-of-sample Sharpe distribution;
4. per set, the distribution of its out-of-sample Sharpe over the C(N, k) splits (mean, std,
   quantiles). (Path by path a fixed set's returns are the same days, so its per-path Sharpe is
   its full-history Sharpe; the per-split distribution is the informative one.)

Sharpe ratios here are annualised like ``metrics.json`` (mean / std(ddof=1) * sqrt(252));
``qpipe.stats`` takes per-period ones (divide by sqrt(252)).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from qpipe.config import ThreadSafeConfig
from qpipe.conventions import PERIODS_PER_YEAR
from qpipe.errors import ResearchError
from qpipe.research.splits import Splits, range_mask

__all__ = ["CPCVResult", "annualised_sharpe", "evaluate_cpcv", "trial_returns"]

_ROOT = math.sqrt(PERIODS_PER_YEAR)


def annualised_sharpe(returns: np.ndarray) -> np.ndarray:
    """Column-wise mean / std(ddof=1) * sqrt(252); NaN where fewer than 2 rows or std is 0."""
    r = np.asarray(returns, dtype=np.float64)
    if r.shape[0] < 2:
        return np.full(r.shape[1:], np.nan)
    sd = r.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = r.mean(axis=0) / sd * _ROOT
    return np.where(sd > 0, out, np.nan)


@dataclass(frozen=True)
class CPCVResult:
    """Frames: ``splits`` (split, set, is_sharpe, oos_sharpe, chosen), ``paths`` (path,
    sharpe, one ``set_g<i>`` column per group: the set used there), ``sets`` (set, each
    parameter, full_sharpe, oos_mean, oos_std, oos_min, oos_median, oos_max, times_chosen).
    ``path_returns`` is T x P (the dates are ``dates``)."""

    splits_def: Splits
    sets_params: tuple[dict[str, Any], ...]
    splits: pl.DataFrame
    paths: pl.DataFrame
    sets: pl.DataFrame
    dates: pl.Series
    path_returns: np.ndarray


def _split_sharpes(returns: np.ndarray, dates: pl.Series, splits: Splits) -> pl.DataFrame:
    n_sets = returns.shape[1]
    frames = []
    for fold in splits.folds:
        sr_is = annualised_sharpe(returns[range_mask(dates, fold.train)])
        sr_oos = annualised_sharpe(returns[range_mask(dates, fold.test)])
        ranked = np.where(np.isnan(sr_is), -np.inf, sr_is)
        chosen = np.zeros(n_sets, dtype=bool)
        if np.isfinite(ranked).any():
            chosen[int(np.argmax(ranked))] = True
        frames.append(
            pl.DataFrame(
                {
                    "split": np.full(n_sets, fold.index),
                    "set": np.arange(n_sets),
                    "is_sharpe": sr_is,
                    "oos_sharpe": sr_oos,
                    "chosen": chosen,
                },
                nan_to_null=True,
            )
        )
    return pl.concat(frames)


def _paths(
    returns: np.ndarray, dates: pl.Series, splits: Splits, table: pl.DataFrame
) -> tuple[pl.DataFrame, np.ndarray]:
    chosen = dict(table.filter("chosen").select("split", "set").iter_rows())
    groups = [range_mask(dates, [g]) for g in splits.groups]
    out = np.zeros((returns.shape[0], len(splits.paths)))
    rows = []
    for p, path in enumerate(splits.paths):
        used = {}
        for g, split in enumerate(path):
            if split not in chosen:
                msg = f"cpcv split {split} has no set with a finite training sharpe"
                raise ResearchError(msg)
            out[groups[g], p] = returns[groups[g], chosen[split]]
            used[f"set_g{g}"] = chosen[split]
        rows.append({"path": p, "sharpe": float(annualised_sharpe(out[:, p : p + 1])[0]), **used})
    return pl.DataFrame(rows, nan_to_null=True), out


def _per_set(
    returns: np.ndarray, sets: Sequence[dict[str, Any]], table: pl.DataFrame
) -> pl.DataFrame:
    oos = pl.col("oos_sharpe")
    stats = (
        table.group_by("set")
        .agg(
            oos.mean().alias("oos_mean"),
            oos.std().alias("oos_std"),
            oos.min().alias("oos_min"),
            oos.median().alias("oos_median"),
            oos.max().alias("oos_max"),
            pl.col("chosen").sum().alias("times_chosen"),
        )
        .sort("set")
    )
    params = pl.DataFrame([dict(p) for p in sets]).with_row_index("set").cast({"set": pl.Int64})
    full = pl.DataFrame({"set": np.arange(len(sets)), "full_sharpe": annualised_sharpe(returns)})
    return params.join(full.fill_nan(None), on="set").join(stats, on="set").sort("set")


def evaluate_cpcv(
    returns: np.ndarray,
    dates: Any,
    splits: Splits,
    sets: Sequence[dict[str, Any]],
) -> CPCVResult:
    """CPCV over a T x S matrix of daily returns (one column per parameter set, rows = dates).

    ``splits`` must be :func:`~qpipe.research.splits.combinatorial_purged` over ``dates``.
    """
    r = np.asarray(returns, dtype=np.float64)
    days = pl.Series("date", dates)
    if splits.method != "cpcv":
        msg = "cpcv needs combinatorial purged splits (`combinatorial_purged`)"
        raise ResearchError(msg)
    if r.ndim != 2 or r.shape != (days.len(), len(sets)):
        msg = f"`returns` must be dates x sets = {days.len()} x {len(sets)}, got {r.shape}"
        raise ResearchError(msg)
    table = _split_sharpes(r, days, splits)
    paths, path_returns = _paths(r, days, splits, table)
    return CPCVResult(
        splits, tuple(sets), table, paths, _per_set(r, sets, table), days, path_returns
    )


def trial_returns(
    prices: pl.DataFrame,
    panel: Any,
    base: ThreadSafeConfig,
    sets: Sequence[Mapping[str, Any]],
    *,
    full_history: bool = True,
) -> np.ndarray:
    """Daily returns (dates x sets) of each set's backtest.

    ``full_history``: over every panel date (``backtest.start``/``end`` ignored; CPCV);
    otherwise over the base config's window (every set must share it; a sweep's trials).
    The batched path: signals once per signal set, weights once per set, the compiled kernel
    per set (:func:`qpipe.backtest.batch_sim.trial_equity`, the accounting of a metrics row).
    Days before a set's first trade return 0; after a ruin (equity <= 0) too.
    """
    from qpipe.backtest.batch_config import ConfigBuilder
    from qpipe.backtest.batch_weights import SignalSet

    if full_history:
        base = base.replace(backtest={"start": "", "end": ""})
    builder = ConfigBuilder(base.to_dict())
    configs = [builder.get(dict(p)) for p in sets]
    out = np.zeros((panel.days.size, len(configs)))
    windows: set[tuple[int, int]] = set()
    groups: dict[str, list[int]] = {}
    for j, cfg in enumerate(configs):
        groups.setdefault(cfg.signal_key, []).append(j)
    for members in groups.values():  # one signal set alive at a time
        signals = SignalSet(configs[members[0]], prices, panel)
        for j in members:
            a, r = _set_returns(panel, signals, configs[j])
            out[a : a + r.size, j] = r
            windows.add((a, a + r.size))
    if full_history or not windows:
        return out
    if len(windows) > 1:
        msg = "the sets' backtest windows differ; their returns cannot share one date axis"
        raise ResearchError(msg)
    ((a, b),) = windows
    return out[a:b]


def _set_returns(panel: Any, signals: Any, cfg: Any) -> tuple[int, np.ndarray]:
    from qpipe.backtest.batch_sim import trial_equity

    rows, wmat = signals.weights(cfg)
    a, equity = trial_equity(panel, rows, wmat, cfg)
    prev = np.concatenate(([cfg.backtest.initial_capital], equity[:-1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        return a, np.where(prev > 0, equity / prev - 1.0, 0.0)
