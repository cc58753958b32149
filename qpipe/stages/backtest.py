"""Backtest and metrics as pipeline stages.

The accounting is sequential, so these stages collect their inputs, run
:func:`qpipe.backtest.simulate` / :func:`qpipe.backtest.compute_metrics`, and return the result
as a lazy frame. They stay pure: no I/O, no globals, same inputs give the same output.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from qpipe.backtest.accounting import simulate
from qpipe.backtest.metrics import METRIC_NAMES, compute_metrics, equal_weight_benchmark
from qpipe.errors import BacktestError
from qpipe.stages.base import stage

__all__ = ["backtest", "metrics"]


def _iso(name: str, value: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        msg = f"`backtest.{name}` must be an ISO date (YYYY-MM-DD) or empty, got {value!r}"
        raise BacktestError(msg) from None


@stage(output=("equity", "trades"))
def backtest(
    prices: pl.LazyFrame,
    weights: pl.LazyFrame,
    *,
    initial_capital: float = 1.0,
    cost_bps: float = 0.0,
    slippage_bps: float = 0.0,
    execution: str = "close",
    borrow_bps: float = 0.0,
    cash_rate: float = 0.0,
    start: str = "",
    end: str = "",
) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Backtest target weights on prices; the equity and trades frames (see ``simulate``).

    Params mirror the config ``[backtest]`` table; ``start``/``end`` are ISO dates, ``""`` = none.
    """
    result = simulate(
        prices.collect(),
        weights.collect(),
        initial_capital=initial_capital,
        cost_bps=cost_bps,
        slippage_bps=slippage_bps,
        execution=execution,
        borrow_bps=borrow_bps,
        cash_rate=cash_rate,
        start=_iso("start", start),
        end=_iso("end", end),
    )
    return result.equity.lazy(), result.trades.lazy()


def _n_rebalances(equity: pl.DataFrame, weights: pl.DataFrame) -> int:
    """Weight dates among the equity dates on which the portfolio was not ruined."""
    live = equity.filter(~pl.col("ruined")) if "ruined" in equity.columns else equity
    reb = weights.select(pl.col("date").unique())
    return live.join(reb, on="date", how="semi").height


@stage(output="metrics")
def metrics(
    equity: pl.LazyFrame,
    weights: pl.LazyFrame,
    benchmark: pl.LazyFrame,
    *,
    initial_capital: float = 1.0,
) -> pl.LazyFrame:
    """One row of metrics (one Float64 column each, null where undefined).

    ``benchmark`` is a prices frame; its equal-weight daily returns are the benchmark (an empty
    frame leaves the benchmark metrics null).
    """
    eq = equity.collect()
    w = weights.select("date").collect()
    bench_prices = benchmark.collect()
    bench = equal_weight_benchmark(bench_prices) if bench_prices.height else None
    values = compute_metrics(
        eq,
        initial_capital=initial_capital,
        n_rebalances=_n_rebalances(eq, w),
        benchmark_returns=bench,
    )
    return pl.DataFrame(
        {name: [values[name]] for name in METRIC_NAMES},
        schema=dict.fromkeys(METRIC_NAMES, pl.Float64),
    ).lazy()
