"""Conventions every part of qpipe shares (docs/design.md): one definition of each.

A leaf module (it imports nothing from qpipe), so stages, accounting, metrics and views can all
use it without pulling anything else in.
"""

__all__ = ["PERIODS_PER_YEAR"]

# Trading days in a year: annualises returns, volatility and Sharpe, and daily accruals of
# annual rates (borrow, cash interest). Used by the metrics contract.
PERIODS_PER_YEAR = 252
