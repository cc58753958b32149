"""The CPCV as a study: prices in, ``<out>/research/<id>/`` and ledger records out.

:func:`run_cpcv` ingests the prices, backtests every parameter set once over the whole history
(:func:`~qpipe.research.cpcv.trial_returns`), evaluates every combinatorial purged split and
reassembles the paths (:func:`~qpipe.research.cpcv.evaluate_cpcv`), computes the grid's PBO and
the trial-aware statistics of the set with the best full-history Sharpe (N from the ledger:
:func:`~qpipe.research.judge.study_basis`), and writes ``splits.arrow``, ``paths.arrow``,
``sets.arrow``, ``research.json`` and ``research.html``; ``research_finished`` lists them with
their digests, the statistics and the sweeps they counted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qpipe._fs import write_bytes_atomic
from qpipe.config import ThreadSafeConfig
from qpipe.ledger import payloads as p
from qpipe.research.cpcv import CPCVResult, evaluate_cpcv
from qpipe.research.distribute import GridEngine, grid_engine
from qpipe.research.judge import StudyBasis, set_sharpes, study_basis
from qpipe.research.pages import cpcv_page
from qpipe.research.splits import check_test_window, combinatorial_purged, purge_default
from qpipe.research.study import OnEvent, Study, write_json
from qpipe.research.walkforward import param_sets, set_config
from qpipe.store import DatasetRef, write_ipc_atomic

__all__ = ["CPCVRun", "run_cpcv"]


@dataclass(frozen=True)
class CPCVRun:
    """A finished CPCV: its id, folder (``<out>/research/<id>/``), result and the grid's PBO."""

    research_id: str
    out_dir: Path
    result: CPCVResult
    pbo: Any  # qpipe.stats.PBOResult, or None when the history is too short for 16 blocks
    stats: dict[str, Any] | None = None  # N, the sweeps counted, the values, the verdict

    @property
    def verdict(self) -> str:
        """``DSR 0.41 with N = 240 trials: not significant at 95%`` (or why not computed)."""
        return str((self.stats or {}).get("verdict", ""))


def _cpcv_files(
    folder: Path,
    result: CPCVResult,
    judged: tuple[StudyBasis, tuple[int, np.ndarray]],
    info: Mapping[str, Any],
) -> dict[str, str]:
    """splits.arrow, paths.arrow, sets.arrow and research.json; name -> digest."""
    folder.mkdir(parents=True, exist_ok=True)
    tables = (("splits", result.splits), ("paths", result.paths), ("sets", result.sets))
    digests = {f"{n}.arrow": write_ipc_atomic(frame, folder / f"{n}.arrow") for n, frame in tables}
    digests["research.json"] = write_json(folder / "research.json", info)
    html = cpcv_page(result, *judged, str(info["research_id"])).encode("utf-8")
    digests["research.html"] = write_bytes_atomic(folder / "research.html", html)
    return digests


def run_cpcv(
    cfg: ThreadSafeConfig,
    grid: Mapping[str, Sequence[Any]],
    *,
    groups: int,
    test_groups: int,
    purge: int | None = None,
    embargo: int = 0,
    out: str | Path | None = None,
    ledger: str | Path | None = None,
    on_event: OnEvent | None = None,
    argv: Sequence[str] | None = None,
    engine: Any = None,
) -> CPCVRun:
    """CPCV of ``grid``: every set backtested once, every split evaluated, paths reassembled.

    Writes ``<out>/research/<id>/`` and records ``research_started`` / ``research_finished``
    (``research_failed`` with the one-line error). ``engine``: an instance, ``"local"``/
    ``"ray"`` or None for ``[engine] kind``; on Ray the sets' backtests are sharded over it.
    """
    study = Study(cfg, out, ledger, on_event)
    params = {"groups": groups, "test_groups": test_groups, "purge": purge, "embargo": embargo}
    with study.failures_recorded():
        prices_ref = study.start("cpcv", params, grid, argv=argv)
        grid_eng, own = grid_engine(study.base, engine)
        try:
            result, returns = _cpcv(study, prices_ref, grid, params, grid_eng)
        finally:
            if own:
                grid_eng.close()
        basis = study_basis(study.ledger.path, study.id, returns)
    sharpes = set_sharpes(returns)
    best = int(np.argmax(np.nan_to_num(sharpes, nan=-np.inf)))
    stats = {"judged_set": best, **basis.record(*basis.statistics(returns[:, best]))}
    folder = study.paths.out / "research" / study.id
    pbo = basis.pbo
    summary = {
        "sets": list(result.sets_params),
        "path_sharpes": result.paths["sharpe"].to_list(),
        "pbo": None if pbo is None else pbo.to_dict(),
        "stats": stats,
    }
    info = {"research_id": study.id, "splits": result.splits_def.to_dict(), **summary}
    summary["artifacts"] = _cpcv_files(folder, result, (basis, (best, returns[:, best])), info)
    study.recorder.research_finished(
        p.ResearchFinished(
            method="cpcv",
            splits_digest=result.splits_def.digest,
            splits=result.splits_def.to_dict(),
            result=summary,
            out_dir=str(folder),
        )
    )
    study.emit("research_finished", {"research_id": study.id, "out_dir": str(folder)})
    return CPCVRun(study.id, folder, result, pbo, stats)


def _cpcv(
    study: Study,
    prices_ref: DatasetRef,
    grid: Mapping[str, Sequence[Any]],
    params: dict,
    grid_eng: GridEngine,
) -> tuple[CPCVResult, np.ndarray]:
    """The CPCV's evaluation, and every set's full-history daily returns (days x sets)."""
    from qpipe.backtest.batch import build_panel

    assert study.store is not None
    sets = param_sets(grid)
    configs = [set_config(study.base, s) for s in sets]
    prices = study.store.open(prices_ref)
    dates = prices["date"].unique().sort()
    purge = params["purge"]
    if purge is None:
        purge = max(purge_default(c) for c in configs)
    splits = combinatorial_purged(
        dates, params["groups"], params["test_groups"], purge, params["embargo"]
    )
    for c in configs:
        check_test_window(
            dates.len() // params["groups"], c, what=f"a group of `groups` = {params['groups']}"
        )
    panel = build_panel(prices_ref, study.store)
    returns = grid_eng.returns(prices_ref, panel, study.base, str(study.store.root), sets)
    return evaluate_cpcv(returns, dates, splits, sets), returns
