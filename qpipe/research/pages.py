"""Research results as :class:`qpipe.views.research.ResearchPage` data, rendered to HTML.

Pure: the numbers the page shows are computed here (from results already in memory); the page
layout lives in :mod:`qpipe.views.research`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from qpipe.conventions import PERIODS_PER_YEAR
from qpipe.research.stats import min_track_record, probabilistic_sharpe, sharpe_moments
from qpipe.views.research import ResearchPage, render_research

__all__ = ["cpcv_page", "psr_curve", "stats_page", "walk_forward_page"]


def psr_curve(values: dict[str, Any], points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """PSR against SR0 for track records from 2 to ~2x max(T, MinTRL) observations."""
    sr, sr0 = float(values["sr"]), float(values["sr0"])
    skew, kurt, t = float(values["skew"]), float(values["kurtosis"]), int(values["n_obs"])
    trl = float(values["min_trl"])
    top = 2 * max(t, trl if math.isfinite(trl) else t, 10)
    ts = np.unique(np.linspace(2, top, points).round().astype(int))
    psr = np.array([probabilistic_sharpe(sr, sr0, int(n), skew, kurt) for n in ts])
    return ts.astype(float), psr


def _fmt(x: float | None, digits: int = 3) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}g}"


def walk_forward_page(result: Any, run: Any) -> str:
    """The walk-forward's research page (``research.html`` in the stitched run's folder)."""
    trials, metric = result.trials, result.metric
    chosen = trials.join(
        result.folds.select("fold", "set", pl.lit(True).alias("_c")), on=["fold", "set"], how="left"
    )
    both = chosen.filter(
        pl.col(f"is_{metric}").is_not_null() & pl.col(f"oos_{metric}").is_not_null()
    )
    returns = run.equity["return"].drop_nulls().to_numpy()
    sr, skew, kurt, t = sharpe_moments(returns)
    params = dict(result.splits.params)
    facts = [
        ("splits", f"{len(result.splits)} folds, {params}"),
        ("splits digest", result.splits.digest[:16]),
        ("out-of-sample", f"{result.start} to {result.end} ({t} days)"),
        ("stitched run", str(run.run_id)),
        ("OOS Sharpe (annualised)", _fmt(sr * math.sqrt(PERIODS_PER_YEAR))),
        ("PSR(0) of the OOS returns", _fmt(probabilistic_sharpe(sr, 0.0, t, skew, kurt))),
        ("MinTRL(0) at 95 %", _fmt(min_track_record(sr, 0.0, skew, kurt), 6)),
    ]
    page = ResearchPage(
        title="Walk-forward",
        subtitle=f"ranking metric `{metric}`, {len(result.sets)} parameter sets",
        facts=facts,
        is_oos=(
            both[f"is_{metric}"].to_numpy(),
            both[f"oos_{metric}"].to_numpy(),
            both["_c"].fill_null(False).to_numpy(),
        ),
        tables=(("folds", "Folds", result.folds),),
    )
    return render_research(page)


def cpcv_page(result: Any, pbo: Any, research_id: str) -> str:
    """The CPCV's research page (``research.html`` in its folder)."""
    splits = result.splits.drop_nulls(["is_sharpe", "oos_sharpe"])
    path_sr = result.paths["sharpe"].drop_nulls().to_numpy()
    facts = [
        ("study", research_id),
        ("splits", f"{len(result.splits_def)} splits, {dict(result.splits_def.params)}"),
        ("paths", f"{result.paths.height}: Sharpe mean {_fmt(float(np.mean(path_sr)))}"),
    ]
    page = ResearchPage(
        title="Combinatorial purged cross-validation",
        subtitle=f"{len(result.sets_params)} parameter sets; Sharpe annualised",
        facts=facts,
        is_oos=(
            splits["is_sharpe"].to_numpy(),
            splits["oos_sharpe"].to_numpy(),
            splits["chosen"].to_numpy(),
        ),
        lambdas=None if pbo is None else pbo.lambdas,
        pbo=None if pbo is None else pbo.pbo,
        slope=None if pbo is None else pbo.slope,
        tables=(
            ("paths", "Out-of-sample paths (best-in-sample set per split)", result.paths),
            ("sets", "Out-of-sample Sharpe per parameter set, over the splits", result.sets),
        ),
    )
    return render_research(page)


def stats_page(stats: Any) -> str:
    """``stats SWEEP_ID``'s page: verdict, DSR, PBO and MinTRL."""
    counted = pl.DataFrame([s.to_dict() for s in stats.count.sweeps])
    facts = [
        ("sweep", stats.sweep_id),
        ("judged trial", f"{stats.trial}: {stats.params}"),
        ("trials from", stats.count.trials_from),
    ]
    pbo = stats.pbo
    page = ResearchPage(
        title=f"Is sweep {stats.sweep_id} real?",
        subtitle="trial-aware statistics (docs/research.md)",
        facts=facts,
        verdict=stats.line,
        stats=stats.values,
        is_oos=None if pbo is None else (pbo.is_sharpe, pbo.oos_sharpe, np.ones(pbo.lambdas.size)),
        lambdas=None if pbo is None else pbo.lambdas,
        pbo=None if pbo is None else pbo.pbo,
        slope=None if pbo is None else pbo.slope,
        psr_curve=psr_curve(stats.values),
        tables=(("sweeps", "Sweeps counted in N", counted),),
    )
    return render_research(page)
