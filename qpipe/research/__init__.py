"""Out-of-sample research: splits (walk-forward, CPCV) and trial-aware statistics.

Pure functions only (no file I/O): a notebook, the CLI and a Ray task call the same code.
"""

from qpipe.research.splits import (
    DateRange,
    Fold,
    Splits,
    check_test_window,
    combinatorial_purged,
    holding_days,
    purge_default,
    range_mask,
    walk_forward,
)
from qpipe.research.stats import (
    PBOResult,
    deflated_sharpe,
    expected_max_sharpe,
    min_track_record,
    pbo,
    probabilistic_sharpe,
    sharpe_moments,
)

__all__ = [
    "DateRange",
    "Fold",
    "PBOResult",
    "Splits",
    "check_test_window",
    "combinatorial_purged",
    "deflated_sharpe",
    "expected_max_sharpe",
    "holding_days",
    "min_track_record",
    "pbo",
    "probabilistic_sharpe",
    "purge_default",
    "range_mask",
    "sharpe_moments",
    "walk_forward",
]
