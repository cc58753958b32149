"""Walk-forward evaluation of a parameter grid: select in sample, trade out of sample.

Step by step (:func:`evaluate_walk_forward`; nothing here writes a file):

1. The grid's parameter sets are evaluated on every fold's **training** window with the batched
   sweep evaluator (:func:`qpipe.backtest.batch.evaluate_chunk`; the window is each trial's
   ``backtest.start``/``backtest.end``, so features and signals still see the whole history and
   are computed once per signal set for all folds).
2. On each fold the set with the best ranking metric is chosen (descending; ascending for
   :data:`LOWER_IS_BETTER`; failed trials and nulls never win; ties go to the first set).
3. Every set is also evaluated on every fold's **test** window (a fresh backtest from cash):
   the folds table's out-of-sample metric and the IS-vs-OOS scatter.
4. The stitched target weights: for each fold, the chosen set's strategy runs on the full price
   history (so its warm-up comes from before the test window and nothing from after it), and
   its rebalance rows inside the test window are kept. :mod:`qpipe.research.run` trades them in
   one plain backtest over the out-of-sample span, so cash and holdings carry across folds.
5. Each fold's weights pass the Tier 2 audit, with the point-in-time check against the fold's
   own strategy (cuts inside the test window).
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from qpipe.config import ThreadSafeConfig
from qpipe.conventions import PERIODS_PER_YEAR
from qpipe.errors import ResearchError
from qpipe.research.splits import Splits, check_test_window
from qpipe.stages.base import Pipeline
from qpipe.strategy import build_strategy
from qpipe.validation.audit import AuditReport, audit_allocation

__all__ = [
    "WINDOW_KEYS",
    "WalkForwardResult",
    "best_rows",
    "evaluate_walk_forward",
    "param_sets",
    "set_config",
    "with_stitched",
]

WINDOW_KEYS = frozenset({"backtest.start", "backtest.end"})
StrategyFactory = Callable[[ThreadSafeConfig], Pipeline]


def param_sets(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of ``{"section.key": values}``, the first key varying slowest."""
    if not grid:
        msg = "the walk-forward grid is empty: give at least one `--sweep section.key=v1,v2`"
        raise ResearchError(msg)
    clash = sorted(WINDOW_KEYS & set(grid))
    if clash:
        msg = f"`{clash[0]}` cannot be swept in a walk-forward: the folds set the windows"
        raise ResearchError(msg)
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]


def set_config(cfg: ThreadSafeConfig, params: Mapping[str, Any]) -> ThreadSafeConfig:
    """``cfg`` with one parameter set's ``section.key`` values applied."""
    tables: dict[str, dict[str, Any]] = {}
    for key, value in params.items():
        section, _, name = key.partition(".")
        tables.setdefault(section, {})[name] = value
    return cfg.replace(**tables)


@dataclass(frozen=True)
class WalkForwardResult:
    """What a walk-forward found; frames are small (folds x sets rows, and the weights).

    ``folds``: fold, train_start, train_end, test_start, test_end, set, each parameter,
    ``is_<metric>``, ``oos_<metric>`` (then ``stitched_return``, ``stitched_sharpe`` once the
    stitched run exists: :func:`with_stitched`). ``trials``: fold, set, ``is_<metric>``,
    ``oos_<metric>``, is_status, oos_status (every set on every fold). ``weights``: the
    stitched target weights. ``audits``: each fold's Tier 2 report.
    """

    splits: Splits
    metric: str
    sets: tuple[dict[str, Any], ...]
    folds: pl.DataFrame
    trials: pl.DataFrame
    weights: pl.DataFrame
    audits: tuple[AuditReport, ...]

    @property
    def start(self) -> dt.date:
        return self.splits.folds[0].test[0].start

    @property
    def end(self) -> dt.date:
        return self.splits.folds[-1].test[-1].end


def _window_trials(splits: Splits, sets: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """Every set on every fold's training window (trial ``fold * n_sets + set``), then on every
    test window (the same numbers plus ``n_folds * n_sets``): one evaluator call, so features
    and signals are computed once per signal set for both."""
    trials = []
    offset = len(splits.folds) * len(sets)
    for side, shift in (("train", 0), ("test", offset)):
        for fold in splits.folds:
            (window,) = fold.train if side == "train" else fold.test
            bounds = {
                "backtest.start": window.start.isoformat(),
                "backtest.end": window.end.isoformat(),
            }
            for j, params in enumerate(sets):
                trials.append((shift + fold.index * len(sets) + j, {**params, **bounds}))
    return trials


def _evaluate(
    evaluate: Callable[..., Any], trials: list[tuple[int, dict[str, Any]]], metric: str
) -> pl.DataFrame:
    table = pl.from_arrow(evaluate(trials))
    assert isinstance(table, pl.DataFrame)
    if metric not in table.columns:
        msg = f"ranking metric `{metric}` is not a metric of the sweep evaluator"
        raise ResearchError(msg)
    return table.select("trial", pl.col(metric).cast(pl.Float64), "status", "error")


def best_rows(frame: pl.DataFrame, metric: str, by: str = "fold") -> pl.DataFrame:
    """The best ``set`` per ``by`` group by ``metric`` (nulls, NaN, failed never win)."""
    from qpipe.sweep import LOWER_IS_BETTER

    value = pl.col(metric)
    ok = frame.filter((pl.col("status") == "ok") & value.is_not_null() & value.is_not_nan())
    descending = metric not in LOWER_IS_BETTER
    return (
        ok.sort([by, metric, "set"], descending=[False, descending, False])
        .group_by(by, maintain_order=True)
        .first()
    )


def _trials_frame(rows: pl.DataFrame, n_sets: int, n_folds: int, metric: str) -> pl.DataFrame:
    """Split the evaluator's rows into in-sample and out-of-sample columns per (fold, set)."""
    offset = n_sets * n_folds
    ins = rows.filter(pl.col("trial") < offset)
    oos = rows.filter(pl.col("trial") >= offset).with_columns(pl.col("trial") - offset)
    both = ins.rename({metric: f"is_{metric}", "status": "is_status", "error": "is_error"}).join(
        oos.rename({metric: f"oos_{metric}", "status": "oos_status", "error": "oos_error"}),
        on="trial",
    )
    return both.with_columns(
        (pl.col("trial") // n_sets).alias("fold"), (pl.col("trial") % n_sets).alias("set")
    ).sort("trial")


def _folds_frame(
    splits: Splits, sets: list[dict[str, Any]], trials: pl.DataFrame, metric: str
) -> pl.DataFrame:
    ranked = best_rows(trials.rename({"is_status": "status"}), f"is_{metric}")
    chosen = dict(zip(ranked["fold"].to_list(), ranked["set"].to_list(), strict=True))
    missing = [f.index for f in splits.folds if f.index not in chosen]
    if missing:
        msg = f"no parameter set finished on the training window of fold {missing[0]}"
        raise ResearchError(msg)
    rows = []
    for fold in splits.folds:
        j = chosen[fold.index]
        row = trials.filter(pl.col("trial") == fold.index * len(sets) + j).row(0, named=True)
        rows.append(
            {
                "fold": fold.index,
                "train_start": fold.train[0].start,
                "train_end": fold.train[-1].end,
                "test_start": fold.test[0].start,
                "test_end": fold.test[-1].end,
                "set": j,
                **sets[j],
                f"is_{metric}": row[f"is_{metric}"],
                f"oos_{metric}": row[f"oos_{metric}"],
            }
        )
    return pl.DataFrame(rows)


def _stitch(
    splits: Splits,
    chosen: list[int],
    pipes: dict[int, Pipeline],
    prices: pl.DataFrame,
) -> tuple[list[pl.DataFrame], dict[int, dict[str, pl.DataFrame]]]:
    """Each fold's rebalance rows inside its test window, from the chosen set's full-history
    weights (computed once per distinct set), and each set's other outputs for its audits."""
    full: dict[int, pl.DataFrame] = {}
    inter: dict[int, dict[str, pl.DataFrame]] = {}
    parts = []
    for fold, j in zip(splits.folds, chosen, strict=True):
        if j not in full:
            env = pipes[j].apply_lazy({"prices": prices.lazy()})
            names = [n for n in pipes[j].outputs if n != "weights"]
            weights, *rest = pl.collect_all([env["weights"], *(env[n] for n in names)])
            full[j] = weights.with_columns(pl.col("date").cast(pl.Date))
            inter[j] = dict(zip(names, rest, strict=True))
        (window,) = fold.test
        parts.append(full[j].filter(pl.col("date").is_between(window.start, window.end)))
    return parts, inter


def evaluate_walk_forward(
    evaluate: Callable[[list[tuple[int, dict[str, Any]]]], Any],
    prices: pl.DataFrame,
    cfg: ThreadSafeConfig,
    grid: Mapping[str, Sequence[Any]],
    splits: Splits,
    *,
    metric: str = "sharpe",
    strategy: StrategyFactory = build_strategy,
) -> WalkForwardResult:
    """Run the walk-forward of ``grid`` over ``splits`` (see the module docstring).

    Parameters
    ----------
    evaluate
        ``trials -> Arrow table`` of metric rows: the batched evaluator bound to its panel,
        base config and store (``functools.partial(evaluate_chunk, panel, base, store_root)``
        with the trials as the last argument).
    prices
        The long prices the panel was built from (the strategies run on them).
    cfg
        The base config; each set's ``section.key`` values override it.
    splits
        A :func:`~qpipe.research.splits.walk_forward` split whose test windows tile
        (``step == test``), so the stitched curve has no gap and no overlap.
    strategy
        Builds a set's pipeline from its config (the default strategy; tests plant others).
    """
    params = dict(splits.params)
    if splits.method != "walk_forward" or params["step"] != params["test"]:
        msg = (
            f"a stitched walk-forward needs walk-forward splits with `step` equal to `test` "
            f"({params.get('test')}; got step={params.get('step')}): its test windows must tile "
            f"the out-of-sample span; `qpipe.research.walk_forward` makes other splits"
        )
        raise ResearchError(msg)
    sets = param_sets(grid)
    configs = [set_config(cfg, p) for p in sets]
    for c in configs:
        check_test_window(int(params["test"]), c)
    rows = _evaluate(evaluate, _window_trials(splits, sets), metric)
    trials = _trials_frame(rows, len(sets), len(splits.folds), metric)
    folds = _folds_frame(splits, sets, trials, metric)
    chosen = folds["set"].to_list()
    pipes = {j: strategy(configs[j]) for j in set(chosen)}
    parts, inter = _stitch(splits, chosen, pipes, prices)
    audits = tuple(
        audit_allocation(
            part,
            prices,
            configs[j],
            strategy=pipes[j],
            raise_on_violation=False,
            intermediates=inter[j],  # the step-by-step PIT check re-runs each step on these
        )
        for part, j in zip(parts, chosen, strict=True)
    )
    weights = pl.concat(parts).sort("date", "symbol")
    return WalkForwardResult(splits, metric, tuple(sets), folds, trials, weights, audits)


def with_stitched(folds: pl.DataFrame, equity: pl.DataFrame) -> pl.DataFrame:
    """``folds`` plus what the stitched curve earned on each test window.

    ``oos_<metric>`` trades the chosen set alone on its test window, from cash; the stitched
    run enters each window holding the previous fold's book (cash and holdings carry), so the
    two differ, most in a window's first weeks. ``stitched_return`` (compounded) and
    ``stitched_sharpe`` (annualised, sample std, null below 2 days or with no spread) are the
    stitched equity's daily returns on the window's dates: they compound to the whole run.
    """
    daily = equity.select("date", pl.col("return").fill_null(0.0))
    returns, sharpes = [], []
    for start, end in folds.select("test_start", "test_end").iter_rows():
        r = daily.filter(pl.col("date").is_between(start, end))["return"].to_numpy()
        returns.append(float(np.prod(1.0 + r) - 1.0) if r.size else None)
        sd = float(np.std(r, ddof=1)) if r.size >= 2 else 0.0
        ok = sd > 0 and math.isfinite(sd)
        sharpes.append(float(np.mean(r)) / sd * math.sqrt(PERIODS_PER_YEAR) if ok else None)
    return folds.with_columns(
        pl.Series("stitched_return", returns, dtype=pl.Float64),
        pl.Series("stitched_sharpe", sharpes, dtype=pl.Float64),
    )
