"""Public statistics API: ``from qpipe.stats import deflated_sharpe, pbo``.

Re-exports :mod:`qpipe.research.stats` (see there for the conventions: per-period Sharpe,
kurtosis not excess).
"""

from qpipe.research.stats import (
    EULER_GAMMA,
    PBOResult,
    deflated_sharpe,
    expected_max_sharpe,
    min_track_record,
    pbo,
    probabilistic_sharpe,
    sharpe_moments,
)

__all__ = [
    "EULER_GAMMA",
    "PBOResult",
    "deflated_sharpe",
    "expected_max_sharpe",
    "min_track_record",
    "pbo",
    "probabilistic_sharpe",
    "sharpe_moments",
]
