"""Research results as :class:`qpipe.views.research.ResearchPage` data, rendered to HTML.

Pure: the numbers the page shows are computed here (from results already in memory); the page
layout lives in :mod:`qpipe.views.research`. The same :class:`ResearchPage` is the stand-alone
page (``research.html``, ``stats.html``) and the research sections of the walk-forward's
``report.html`` and of ``sweep.html``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from qpipe.conventions import PERIODS_PER_YEAR
from qpipe.research.stats import min_track_record, probabilistic_sharpe, sharpe_moments
from qpipe.research.trials import verdict
from qpipe.views.research import ResearchPage, render_research

__all__ = [
    "cpcv_page",
    "cpcv_research",
    "psr_curve",
    "stats_page",
    "sweep_not_judged",
    "sweep_research",
    "walk_forward_page",
    "walk_forward_research",
]

HALVINGS = (
    "One point per CSCV halving: the in-sample best trial's per-period Sharpe in sample (x) "
    "and out of sample (y)."
)
NO_FOLDS = (
    "A sweep has no folds: every trial ran on the whole window. Its out-of-sample evidence is "
    "the CSCV halvings above (PBO); `runner.py --sweep ... --walk-forward train=N,test=N` "
    "gives folds. The table lists the sweeps (and studies) whose trials N counts."
)


def psr_curve(values: dict[str, Any], points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """PSR against SR0 for track records from 2 to ~2x max(T, MinTRL) observations (T and
    MinTRL themselves among them)."""
    sr, sr0 = float(values["sr"]), float(values["sr0"])
    skew, kurt, t = float(values["skew"]), float(values["kurtosis"]), int(values["n_obs"])
    trl = float(values["min_trl"])
    top = 2 * max(t, trl if math.isfinite(trl) else t, 10)
    marks = [t] + ([math.ceil(trl)] if math.isfinite(trl) else [])
    ts = np.unique(np.concatenate([np.linspace(2, top, points).round(), marks]).astype(int))
    ts = ts[ts >= 2]
    psr = np.array([probabilistic_sharpe(sr, sr0, int(n), skew, kurt) for n in ts])
    return ts.astype(float), psr


def _fmt(x: float | None, digits: int = 3) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}g}"


def _judged(values: dict[str, Any] | None, why: str, pbo: Any, why_pbo: str) -> dict[str, Any]:
    """The ResearchPage fields of the DSR, PBO and MinTRL sections (or why they are absent)."""
    absent = []
    fields: dict[str, Any] = {}
    if values is None:
        absent.append(("verdict", "Deflated Sharpe ratio", f"DSR not computed: {why}"))
    else:
        fields = {"verdict": verdict(values), "stats": values, "psr_curve": psr_curve(values)}
    if pbo is None:
        absent.append(("pbo", "Probability of backtest overfitting", f"not computed: {why_pbo}"))
    else:
        fields.update(
            lambdas=pbo.lambdas, pbo=pbo.pbo, slope=pbo.slope, prob_loss=pbo.prob_oos_loss
        )
    return {**fields, "absent": tuple(absent)}


def _counted(count: Any) -> pl.DataFrame:
    rows = [{"kind": "sweep", **s.to_dict()} for s in count.sweeps]
    return pl.DataFrame(rows).select("sweep_id", "kind", "n_trials", "n_ok")


def walk_forward_research(
    result: Any,
    returns: np.ndarray,
    basis: Any,
    run_id: str = "",
) -> ResearchPage:
    """The walk-forward's research: its facts, the verdict on the stitched out-of-sample
    returns (``returns``, daily) with the honest N, IS vs OOS per (fold, set), the grid's PBO,
    MinTRL, the folds and the sweeps counted."""
    trials, metric = result.trials, result.metric
    chosen = trials.join(
        result.folds.select("fold", "set", pl.lit(True).alias("_c")), on=["fold", "set"], how="left"
    )
    both = chosen.filter(
        pl.col(f"is_{metric}").is_not_null() & pl.col(f"oos_{metric}").is_not_null()
    )
    sr, skew, kurt, t = sharpe_moments(returns)
    params = dict(result.splits.params)
    facts = [
        ("splits", f"{len(result.splits)} folds, {params}"),
        ("splits digest", result.splits.digest[:16]),
        ("out-of-sample", f"{result.start} to {result.end} ({t} days)"),
        *((("stitched run", run_id),) if run_id else ()),
        ("OOS Sharpe (annualised)", _fmt(sr * math.sqrt(PERIODS_PER_YEAR))),
        ("PSR(0) of the OOS returns", _fmt(probabilistic_sharpe(sr, 0.0, t, skew, kurt))),
        ("MinTRL(0) at 95 %", _fmt(min_track_record(sr, 0.0, skew, kurt), 6)),
    ]
    values, why = basis.statistics(returns)
    return ResearchPage(
        title="Walk-forward",
        subtitle=f"ranking metric `{metric}`, {len(result.sets)} parameter sets; the DSR judges "
        "the stitched out-of-sample returns with N counted from the ledger",
        facts=facts,
        is_oos=(
            both[f"is_{metric}"].to_numpy(),
            both[f"oos_{metric}"].to_numpy(),
            both["_c"].fill_null(False).to_numpy(),
        ),
        tables=(("folds", "Folds", result.folds),
                ("sweeps", "Sweeps and studies counted in N", _counted(basis.count))),
        **_judged(values, why, basis.pbo, basis.why_no_pbo),
    )  # fmt: skip


def walk_forward_page(result: Any, returns: np.ndarray, basis: Any, run_id: str) -> str:
    """The walk-forward's stand-alone page (``research.html`` in the stitched run's folder)."""
    return render_research(walk_forward_research(result, returns, basis, run_id))


def cpcv_research(
    result: Any, basis: Any, best: tuple[int, np.ndarray], research_id: str
) -> ResearchPage:
    """The CPCV's research: paths, IS vs OOS per (split, set), the PBO, and the DSR of the set
    with the best full-history Sharpe (``best``: its index and daily returns)."""
    splits = result.splits.drop_nulls(["is_sharpe", "oos_sharpe"])
    path_sr = result.paths["sharpe"].drop_nulls().to_numpy()
    facts = [
        ("study", research_id),
        ("splits", f"{len(result.splits_def)} splits, {dict(result.splits_def.params)}"),
        ("paths", f"{result.paths.height}: Sharpe mean {_fmt(float(np.mean(path_sr)))}"),
        ("judged set", f"{best[0]}: {result.sets_params[best[0]]} (best full-history Sharpe)"),
    ]
    values, why = basis.statistics(best[1])
    return ResearchPage(
        title="Combinatorial purged cross-validation",
        subtitle=f"{len(result.sets_params)} parameter sets; Sharpe annualised",
        facts=facts,
        is_oos=(
            splits["is_sharpe"].to_numpy(),
            splits["oos_sharpe"].to_numpy(),
            splits["chosen"].to_numpy(),
        ),
        tables=(
            ("paths", "Out-of-sample paths (best-in-sample set per split)", result.paths),
            ("sets", "Out-of-sample Sharpe per parameter set, over the splits", result.sets),
            ("sweeps", "Sweeps and studies counted in N", _counted(basis.count)),
        ),
        **_judged(values, why, basis.pbo, basis.why_no_pbo),
    )


def cpcv_page(result: Any, basis: Any, best: tuple[int, np.ndarray], research_id: str) -> str:
    """The CPCV's page (``research.html`` in its folder)."""
    return render_research(cpcv_research(result, basis, best, research_id))


def sweep_research(stats: Any) -> ResearchPage:
    """``stats SWEEP_ID``'s research, also the sections of ``sweep.html``: verdict, DSR, the
    PBO halvings (IS vs OOS of the IS-best trial), MinTRL, the sweeps counted in N."""
    facts = [
        ("sweep", stats.sweep_id),
        ("judged trial", f"{stats.trial}: {stats.params}"),
        ("trials from", stats.count.trials_from),
        ("recorded as", f"trial_stats {stats.stats_id}"),
    ]
    pbo = stats.pbo
    judged = _judged(stats.values, "", pbo, stats.why_no_pbo)
    if pbo is None:
        why = f"the scatter shows the PBO's halvings, not computed: {stats.why_no_pbo}"
        judged["absent"] = (("is-oos", "In-sample vs out-of-sample", why), *judged["absent"])
    return ResearchPage(
        title=f"Is sweep {stats.sweep_id} real?",
        subtitle="trial-aware statistics (docs/research.md)",
        facts=facts,
        is_oos=None if pbo is None else (pbo.is_sharpe, pbo.oos_sharpe, np.ones(pbo.lambdas.size)),
        tables=(("sweeps", "Sweeps counted in N", _counted(stats.count)),),
        notes=(("sweeps", NO_FOLDS), ("is-oos", HALVINGS)),
        **judged,
    )


def sweep_not_judged(sweep_id: str, why: str) -> ResearchPage:
    """``sweep.html``'s research sections when the statistics could not be computed."""
    return ResearchPage(
        title=f"Is sweep {sweep_id} real?",
        absent=(("verdict", "Deflated Sharpe ratio", f"DSR not computed: {why}"),),
    )


def stats_page(stats: Any) -> str:
    """``stats SWEEP_ID``'s page: verdict, DSR, PBO and MinTRL."""
    return render_research(sweep_research(stats))
