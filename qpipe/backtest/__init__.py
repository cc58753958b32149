"""Backtest accounting and metrics.

:func:`simulate` runs the cash-constrained close-to-close convention of DESIGN.md in a compiled
kernel; :func:`compute_metrics` and :func:`equal_weight_benchmark` turn its equity frame into
the metrics of ``metrics.json``. See ``docs/backtest.md``.
"""

from qpipe.backtest.accounting import EQUITY_COLUMNS, TRADE_COLUMNS, BacktestResult, simulate
from qpipe.backtest.metrics import METRIC_NAMES, compute_metrics, equal_weight_benchmark

__all__ = [
    "EQUITY_COLUMNS",
    "METRIC_NAMES",
    "TRADE_COLUMNS",
    "BacktestResult",
    "compute_metrics",
    "equal_weight_benchmark",
    "simulate",
]
