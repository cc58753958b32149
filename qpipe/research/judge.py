"""The trial-aware statistics of a walk-forward or a CPCV: the honest N, V, the PBO, the DSR.

A study tried its grid's parameter sets (and the family's sweeps and studies before it tried
theirs), so its result is judged like a sweep's best trial (docs/research.md):

1. :func:`study_basis`, before the judged returns exist: N from the ledger
   (:func:`~qpipe.research.trials.count_study_trials`), V from the per-period Sharpe ratios of
   the counted sweeps' finished trials (their chunk files) and of the study's own sets (their
   full-history daily returns, the batched path), and the PBO by CSCV over those returns;
2. :meth:`StudyBasis.statistics`, given the judged daily returns (a walk-forward's stitched
   out-of-sample returns, a CPCV's best set): SR, skew, kurtosis, T, SR0, PSR(0), DSR and
   MinTRL against SR0 -- or why they cannot be computed (fewer than 2 trials, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qpipe.errors import ResearchError
from qpipe.research.trials import TrialCount, count_study_trials, trial_statistics, verdict

__all__ = ["PBO_BLOCKS", "StudyBasis", "set_sharpes", "study_basis"]

PBO_BLOCKS = 16


def set_sharpes(returns: np.ndarray) -> np.ndarray:
    """Per-period Sharpe ratio (mean / std, ddof = 1) of each column; NaN for a flat one."""
    r = np.asarray(returns, dtype=np.float64)
    if r.shape[0] < 2:
        return np.full(r.shape[1], np.nan)
    sd = r.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sd > 0, r.mean(axis=0) / sd, np.nan)


@dataclass(frozen=True)
class StudyBasis:
    """What the DSR of a study needs besides the judged returns."""

    count: TrialCount
    sharpes: np.ndarray  # per-period, of the counted trials that finished
    pbo: Any  # qpipe.stats.PBOResult or None
    why_no_pbo: str = ""
    why_no_stats: str = ""  # e.g. a counted sweep's chunk file is gone: no DSR, the study goes on

    def statistics(self, returns: Any) -> tuple[dict[str, Any] | None, str]:
        """``(values, "")`` -- SR, SR0, DSR, MinTRL..., ``pbo`` -- or ``(None, why)``."""
        if self.why_no_stats:
            return None, self.why_no_stats
        try:
            values = trial_statistics(returns, self.sharpes, self.count.n_trials)
        except ResearchError as exc:
            return None, str(exc)
        values["pbo"] = None if self.pbo is None else self.pbo.to_dict()
        return values, ""

    def record(self, values: dict[str, Any] | None, why: str) -> dict[str, Any]:
        """The statistics as a ``research_finished`` result entry (the sweeps counted too)."""
        return {
            "trials_from": self.count.trials_from,
            "n_trials": self.count.n_trials,
            "sweeps_counted": [s.to_dict() for s in self.count.sweeps],
            "values": values,
            "verdict": verdict(values) if values else f"DSR not computed: {why}",
        }


def study_basis(ledger: str | Path, study_id: str, set_returns: np.ndarray) -> StudyBasis:
    """N, V and the PBO for study ``study_id`` from the ledger and its sets' daily returns
    (days x sets, the full history)."""
    from qpipe.ledger import records
    from qpipe.research.sweep_stats import counted_sharpes
    from qpipe.stats import pbo

    own = set_sharpes(set_returns)
    finite = int(np.isfinite(own).sum())
    count = count_study_trials(records(ledger), study_id, n_ok=finite)
    why_no_stats = ""
    try:
        sharpes = counted_sharpes(count)
    except ResearchError as exc:  # an earlier sweep's files are gone: V cannot be computed
        sharpes, why_no_stats = np.empty(0), str(exc)
    if any(s.sweep_id == study_id for s in count.sweeps):
        sharpes = np.concatenate([sharpes, own[np.isfinite(own)]])
    t, n = set_returns.shape
    if n < 2 or t < PBO_BLOCKS:
        why = f"the PBO needs >= 2 parameter sets and >= {PBO_BLOCKS} days, got {n} and {t}"
        return StudyBasis(count, sharpes, None, why, why_no_stats)
    return StudyBasis(count, sharpes, pbo(set_returns, PBO_BLOCKS), "", why_no_stats)
