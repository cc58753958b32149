"""The walk-forward as a run: prices in, a run folder and ledger records out.

With :mod:`~qpipe.research.cpcv_run` and :mod:`~qpipe.research.study`, the I/O edge of
:mod:`qpipe.research` (the rest of the package is pure). Step by step,
:func:`run_walk_forward`:

1. ingests the prices (the built-in universe or a file) and pivots the price panel once
   (:func:`qpipe.backtest.batch.build_panel`), and records ``research_started``;
2. builds the splits over the price dates, with ``purge`` defaulting to the largest
   :func:`~qpipe.research.splits.purge_default` over the grid's parameter sets;
3. evaluates the grid fold by fold (:func:`~qpipe.research.walkforward.evaluate_walk_forward`);
   a fold whose weights fail the Tier 2 audit stops the run with every failing fold named;
4. trades the stitched weights in **one plain run** (:func:`qpipe.run` with the weights as an
   external weights file and ``backtest.start``/``end`` the out-of-sample span), so the run
   folder holds equity, weights, trades, metrics and the report like any run;
   Before it, the trial-aware statistics are prepared (:func:`~qpipe.research.judge.study_basis`:
   N from the ledger, V, the grid's PBO over its sets' full-history daily returns); the run's
   ``report.html`` shows them with the DSR of its own out-of-sample returns, MinTRL, IS vs OOS
   and the folds table (passed in as ``report_research``);
5. adds ``folds.arrow`` (the folds table), ``trials.arrow`` (every set's IS and OOS metric on
   every fold), ``research.json`` and ``research.html`` (the research page) to that folder,
   records them as artifacts, and records ``research_finished`` with the statistics and the
   sweeps they counted (or ``research_failed`` with the one-line error).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from qpipe._fs import write_bytes_atomic
from qpipe.config import ThreadSafeConfig
from qpipe.errors import AllocationAuditError
from qpipe.ledger import Ledger, RunRecorder
from qpipe.ledger import payloads as p
from qpipe.research.distribute import GridEngine, grid_engine
from qpipe.research.judge import StudyBasis, study_basis
from qpipe.research.pages import walk_forward_page, walk_forward_research
from qpipe.research.splits import purge_default, walk_forward
from qpipe.research.study import OnEvent, Study, write_json
from qpipe.research.walkforward import (
    StrategyFactory,
    WalkForwardResult,
    evaluate_walk_forward,
    param_sets,
    set_config,
    with_stitched,
)
from qpipe.store import DatasetRef, write_ipc_atomic
from qpipe.strategy import build_strategy

__all__ = ["WalkForwardRun", "run_walk_forward"]


@dataclass(frozen=True)
class WalkForwardRun:
    """A finished walk-forward: its id, the evaluation, and the stitched run."""

    research_id: str
    result: WalkForwardResult
    run: Any  # qpipe.runs.RunResult of the stitched out-of-sample backtest
    stats: dict[str, Any] | None = None  # N, the sweeps counted, the values, the verdict

    @property
    def verdict(self) -> str:
        """``DSR 0.41 with N = 240 trials: not significant at 95%`` (or why not computed)."""
        return str((self.stats or {}).get("verdict", ""))

    @property
    def out_dir(self) -> Path:
        return Path(self.run.out_dir)

    @property
    def folds(self) -> pl.DataFrame:
        return self.result.folds


def _stitched_config(cfg: ThreadSafeConfig, result: WalkForwardResult) -> ThreadSafeConfig:
    """The plain run's config: the out-of-sample window, and allocation limits that admit every
    chosen set's weights (each fold was already audited against its own limits)."""
    chosen = [set_config(cfg, result.sets[j]) for j in result.folds["set"].to_list()]
    limits = {
        "max_weight": max(c.allocation.max_weight for c in chosen),
        "gross_leverage": max(c.allocation.gross_leverage for c in chosen),
        "long_only": all(c.allocation.long_only for c in chosen),
    }
    window = {"start": result.start.isoformat(), "end": result.end.isoformat()}
    return cfg.replace(allocation=limits, backtest=window, sweep={})


def _check_audits(result: WalkForwardResult) -> None:
    bad = [(i, a) for i, a in enumerate(result.audits) if not a.passed]
    if bad:
        folds = ", ".join(str(i) for i, _ in bad)
        first = bad[0][1]
        msg = f"the tier 2 audit failed on fold(s) {folds}: {first.violations[0][2]} first"
        raise AllocationAuditError(msg, tuple(v for _, a in bad for v in a.violations))


def oos_returns(equity: pl.DataFrame) -> np.ndarray:
    """The stitched run's daily out-of-sample returns (its ``equity.arrow``'s ``return``)."""
    return equity.sort("date")["return"].drop_nulls().to_numpy()


def _write_tables(
    run: Any, result: WalkForwardResult, info: dict[str, Any], book: Ledger, basis: StudyBasis
) -> None:
    """folds.arrow, trials.arrow, research.json and research.html in the run folder, recorded
    as artifacts."""
    out = Path(run.out_dir)
    returns = oos_returns(run.store.open(run.refs["equity"]))
    html = walk_forward_page(result, returns, basis, run.run_id).encode("utf-8")
    files = {
        "folds.arrow": lambda path: write_ipc_atomic(result.folds, path),
        "trials.arrow": lambda path: write_ipc_atomic(result.trials, path),
        "research.json": lambda path: write_json(path, info),
        "research.html": lambda path: write_bytes_atomic(path, html),
    }
    recorder = RunRecorder(book, run.run_id)
    for name, write in files.items():
        path = out / name
        digest = write(path)
        recorder.artifact(
            p.Artifact(name=name, path=str(path), digest=digest, bytes=path.stat().st_size)
        )


def _walk_forward_result(result: WalkForwardResult) -> dict[str, Any]:
    return {
        "metric": result.metric,
        "sets": list(result.sets),
        "folds": result.folds.to_dicts(),
        "audits_passed": [a.passed for a in result.audits],
        "oos_start": result.start.isoformat(),
        "oos_end": result.end.isoformat(),
    }


def run_walk_forward(
    cfg: ThreadSafeConfig,
    grid: Mapping[str, Sequence[Any]],
    *,
    train: int,
    test: int,
    step: int | None = None,
    anchored: bool = False,
    purge: int | None = None,
    embargo: int = 0,
    metric: str = "sharpe",
    out: str | Path | None = None,
    ledger: str | Path | None = None,
    on_event: OnEvent | None = None,
    strategy: StrategyFactory = build_strategy,
    argv: Sequence[str] | None = None,
    engine: Any = None,
) -> WalkForwardRun:
    """Walk-forward ``grid`` (``{"section.key": values}``) and trade the stitched choice.

    ``engine``: an engine instance, ``"local"``/``"ray"``, or None for ``[engine] kind``; on
    Ray the grid's windowed trials and daily returns are sharded over it
    (:mod:`qpipe.research.distribute`) and the stitched run uses it too.

    Raises the one-line :class:`~qpipe.errors.QpipeError` of the first problem (bad windows,
    a failed audit...), recorded in the ledger as ``research_failed``.
    """
    study = Study(cfg, out, ledger, on_event)
    window = {"train": train, "test": test, "step": step, "anchored": anchored}
    params = {**window, "purge": purge, "embargo": embargo}
    with study.failures_recorded():
        prices_ref = study.start("walk_forward", params, grid, metric=metric, argv=argv)
        grid_eng, own = grid_engine(study.base, engine)
        try:
            result, set_returns = _evaluate(study, grid, prices_ref, params, metric, strategy,
                                            grid_eng)  # fmt: skip
            _check_audits(result)
            info = {"folds": result.folds.height, "sets": len(result.sets), "engine": grid_eng.name}
            study.emit("research_evaluated", info)
            basis = study_basis(study.ledger.path, study.id, set_returns)
            run = _stitched_run(study, result, on_event, argv, basis, grid_eng.engine)
        finally:
            if own:
                grid_eng.close()
    equity = run.store.open(run.refs["equity"])
    result = replace(result, folds=with_stitched(result.folds, equity))
    stats = basis.record(*basis.statistics(oos_returns(equity)))
    finished = p.ResearchFinished(
        method="walk_forward",
        splits_digest=result.splits.digest,
        splits=result.splits.to_dict(),
        result={**_walk_forward_result(result), "stats": stats},
        out_dir=str(run.out_dir),
        run_id=run.run_id,
    )
    info = {"research_id": study.id, **finished.to_data()}
    _write_tables(run, result, info, study.ledger, basis)
    study.recorder.research_finished(finished)
    study.emit("research_finished", {"research_id": study.id, "run_id": run.run_id})
    return WalkForwardRun(study.id, result, run, stats)


def _evaluate(
    study: Study,
    grid: Mapping[str, Sequence[Any]],
    prices_ref: DatasetRef,
    params: dict[str, Any],
    metric: str,
    strategy: StrategyFactory,
    grid_eng: GridEngine,
) -> tuple[WalkForwardResult, np.ndarray]:
    """The walk-forward's evaluation, and every set's full-history daily returns (days x
    sets, the batched path) for the PBO and V; both on ``grid_eng``."""
    from qpipe.backtest.batch import build_panel

    base, store = study.base, study.store
    assert store is not None
    prices = store.open(prices_ref)
    split_params = dict(params)
    if split_params["purge"] is None:
        split_params["purge"] = max(purge_default(set_config(base, s)) for s in param_sets(grid))
    dates = prices["date"].unique().sort()
    splits = walk_forward(dates, **split_params)
    panel = build_panel(prices_ref, store)
    evaluate = functools.partial(grid_eng.evaluate, panel, base.to_dict(), str(store.root))
    result = evaluate_walk_forward(
        evaluate, prices, base, grid, splits, metric=metric, strategy=strategy
    )
    returns = grid_eng.returns(prices_ref, panel, base, str(store.root), list(result.sets))
    return result, returns


def _stitched_run(
    study: Study,
    result: WalkForwardResult,
    on_event: OnEvent | None,
    argv: Sequence[str] | None,
    basis: StudyBasis,
    engine: Any,
) -> Any:
    from qpipe.runs import run

    assert study.store is not None
    weights = study.store.put(result.weights)
    return run(
        _stitched_config(study.base, result),
        weights=weights.path,
        out=study.paths.out,
        ledger=study.paths.ledger,
        engine=engine,
        on_event=on_event,
        argv=argv,
        report_research=lambda equity: walk_forward_research(
            replace(result, folds=with_stitched(result.folds, equity)), oos_returns(equity), basis
        ),
    )
