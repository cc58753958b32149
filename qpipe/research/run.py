"""The walk-forward as a run: prices in, a run folder and ledger records out.

This is the I/O edge of :mod:`qpipe.research` (the rest of the package is pure). Step by step,
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
5. adds ``folds.arrow`` (the folds table), ``trials.arrow`` (every set's IS and OOS metric on
   every fold) and ``research.json`` to that folder, records them as artifacts, and records
   ``research_finished`` (or ``research_failed`` with the one-line error).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from qpipe._fs import write_bytes_atomic
from qpipe.config import ThreadSafeConfig
from qpipe.errors import AllocationAuditError, ConfigError, QpipeError
from qpipe.ledger import Ledger
from qpipe.research.cpcv import CPCVResult, evaluate_cpcv, trial_returns
from qpipe.research.splits import (
    check_test_window,
    combinatorial_purged,
    purge_default,
    walk_forward,
)
from qpipe.research.walkforward import (
    StrategyFactory,
    WalkForwardResult,
    evaluate_walk_forward,
    param_sets,
    set_config,
)
from qpipe.store import ArrowStore, DatasetRef, write_ipc_atomic
from qpipe.strategy import build_strategy

__all__ = ["CPCVRun", "WalkForwardRun", "run_cpcv", "run_walk_forward"]

OnEvent = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class WalkForwardRun:
    """A finished walk-forward: its id, the evaluation, and the stitched run."""

    research_id: str
    result: WalkForwardResult
    run: Any  # qpipe.api.RunResult of the stitched out-of-sample backtest

    @property
    def out_dir(self) -> Path:
        return Path(self.run.out_dir)

    @property
    def folds(self) -> pl.DataFrame:
        return self.result.folds


def _prices(cfg: ThreadSafeConfig, store: ArrowStore) -> DatasetRef:
    """The prices' stored ref: the built-in universe or a file (as a run reads them)."""
    from qpipe.api import _builtin
    from qpipe.ingest import ingest_prices

    if cfg.data.weights:
        msg = "a walk-forward runs the strategy on the prices; `data.weights` must be empty"
        raise ConfigError(msg)
    if cfg.data.source == "builtin":
        return _builtin(cfg, store).ref
    return ingest_prices(cfg.data.source, store, validate=cfg.validation.mode != "none").ref


def _record(book: Ledger, research_id: str, kind: str, data: Mapping[str, Any]) -> None:
    """The one place research records are written (typed payloads will replace the dicts)."""
    book.append(research_id, kind, dict(data))


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


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


def _write_tables(run: Any, result: WalkForwardResult, info: dict[str, Any], book: Ledger) -> None:
    """folds.arrow, trials.arrow and research.json in the run folder, recorded as artifacts."""
    out = Path(run.out_dir)
    files = {
        "folds.arrow": lambda p: write_ipc_atomic(result.folds, p),
        "trials.arrow": lambda p: write_ipc_atomic(result.trials, p),
        "research.json": lambda p: write_bytes_atomic(
            p, (json.dumps(info, sort_keys=True, indent=2, default=str) + "\n").encode()
        ),
    }
    for name, write in files.items():
        path = out / name
        digest = write(path)
        data = {"name": name, "path": str(path), "digest": digest, "bytes": path.stat().st_size}
        book.append(run.run_id, "artifact", data)


def _summary(result: WalkForwardResult) -> dict[str, Any]:
    return {
        "method": "walk_forward",
        "splits": result.splits.to_dict(),
        "splits_digest": result.splits.digest,
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
) -> WalkForwardRun:
    """Walk-forward ``grid`` (``{"section.key": values}``) and trade the stitched choice.

    Raises the one-line :class:`~qpipe.errors.QpipeError` of the first problem (bad windows,
    a failed audit...), recorded in the ledger as ``research_failed``.
    """
    from qpipe.api import new_run_id, resolve_paths

    emit = on_event or (lambda kind, data: None)
    paths = resolve_paths(cfg, out, ledger)
    paths.out.mkdir(parents=True, exist_ok=True)
    book, research_id = Ledger(paths.ledger), new_run_id()
    base = cfg.replace(sweep={})
    window = {"train": train, "test": test, "step": step, "anchored": anchored}
    started = {
        "method": "walk_forward",
        **window,
        "purge": purge,
        "embargo": embargo,
        "grid": {k: list(v) for k, v in grid.items()},
        "metric": metric,
        "config_digest": base.digest,
        "argv": list(argv or []),
    }
    try:
        store = ArrowStore(paths.store)
        prices_ref = _prices(base, store)
        _record(
            book, research_id, "research_started", {**started, "data_digest": prices_ref.digest}
        )
        emit("research_started", {"research_id": research_id, "method": "walk_forward"})
        result = _evaluate(base, grid, store, prices_ref, window, purge, embargo, metric, strategy)
        _check_audits(result)
        emit("research_evaluated", {"folds": result.folds.height, "sets": len(result.sets)})
        run = _stitched_run(base, result, store, paths, on_event, argv)
    except QpipeError as exc:
        failed = {"error": type(exc).__name__, "message": _first_line(exc)}
        _record(book, research_id, "research_failed", failed)
        raise
    info = {"research_id": research_id, "run_id": run.run_id, **_summary(result)}
    _write_tables(run, result, info, book)
    _record(book, research_id, "research_finished", info)
    emit("research_finished", {"research_id": research_id, "run_id": run.run_id})
    return WalkForwardRun(research_id, result, run)


def _evaluate(
    base: ThreadSafeConfig,
    grid: Mapping[str, Sequence[Any]],
    store: ArrowStore,
    prices_ref: DatasetRef,
    window: dict[str, Any],
    purge: int | None,
    embargo: int,
    metric: str,
    strategy: StrategyFactory,
) -> WalkForwardResult:
    from qpipe.backtest.batch import build_panel

    prices = store.open(prices_ref)
    if purge is None:
        purge = max(purge_default(set_config(base, p)) for p in param_sets(grid))
    dates = prices["date"].unique().sort()
    splits = walk_forward(dates, purge=purge, embargo=embargo, **window)
    panel = build_panel(prices_ref, store)
    evaluate = functools.partial(_evaluate_trials, panel, base.to_dict(), str(store.root))
    return evaluate_walk_forward(
        evaluate, prices, base, grid, splits, metric=metric, strategy=strategy
    )


def _evaluate_trials(panel: Any, base: dict[str, Any], root: str, trials: list) -> Any:
    from qpipe.backtest.batch import evaluate_chunk

    return evaluate_chunk(panel, base, trials, root)


def _stitched_run(
    base: ThreadSafeConfig,
    result: WalkForwardResult,
    store: ArrowStore,
    paths: Any,
    on_event: OnEvent | None,
    argv: Sequence[str] | None,
) -> Any:
    from qpipe.api import run

    weights = store.put(result.weights)
    return run(
        _stitched_config(base, result),
        weights=weights.path,
        out=paths.out,
        ledger=paths.ledger,
        on_event=on_event,
        argv=argv,
    )


@dataclass(frozen=True)
class CPCVRun:
    """A finished CPCV: its id, folder (``<out>/research/<id>/``), result and the grid's PBO."""

    research_id: str
    out_dir: Path
    result: CPCVResult
    pbo: Any  # qpipe.stats.PBOResult, or None when the history is too short for 16 blocks


def _cpcv_files(folder: Path, result: CPCVResult, info: dict[str, Any]) -> dict[str, str]:
    """splits.arrow, paths.arrow, sets.arrow and research.json; name -> digest."""
    folder.mkdir(parents=True, exist_ok=True)
    digests = {
        f"{name}.arrow": write_ipc_atomic(frame, folder / f"{name}.arrow")
        for name, frame in (
            ("splits", result.splits),
            ("paths", result.paths),
            ("sets", result.sets),
        )
    }
    text = json.dumps(info, sort_keys=True, indent=2, default=str) + "\n"
    digests["research.json"] = write_bytes_atomic(folder / "research.json", text.encode())
    return digests


def _cpcv_summary(result: CPCVResult, pbo: Any) -> dict[str, Any]:
    return {
        "method": "cpcv",
        "splits": result.splits_def.to_dict(),
        "splits_digest": result.splits_def.digest,
        "sets": list(result.sets_params),
        "path_sharpes": result.paths["sharpe"].to_list(),
        "pbo": None if pbo is None else pbo.to_dict(),
    }


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
) -> CPCVRun:
    """CPCV of ``grid``: every set backtested once, every split evaluated, paths reassembled.

    Writes ``<out>/research/<id>/`` and records ``research_started`` / ``research_finished``
    (``research_failed`` with the one-line error).
    """
    from qpipe.api import new_run_id, resolve_paths
    from qpipe.backtest.batch import build_panel
    from qpipe.backtest.panel import open_panel
    from qpipe.stats import pbo as compute_pbo

    emit = on_event or (lambda kind, data: None)
    paths = resolve_paths(cfg, out, ledger)
    paths.out.mkdir(parents=True, exist_ok=True)
    book, research_id = Ledger(paths.ledger), new_run_id()
    base = cfg.replace(sweep={})
    started = {
        "method": "cpcv",
        "groups": groups,
        "test_groups": test_groups,
        "purge": purge,
        "embargo": embargo,
        "grid": {k: list(v) for k, v in grid.items()},
        "config_digest": base.digest,
        "argv": list(argv or []),
    }
    try:
        store = ArrowStore(paths.store)
        prices_ref = _prices(base, store)
        started["data_digest"] = prices_ref.digest
        _record(book, research_id, "research_started", started)
        emit("research_started", {"research_id": research_id, "method": "cpcv"})
        sets = param_sets(grid)
        configs = [set_config(base, p) for p in sets]
        prices = store.open(prices_ref)
        dates = prices["date"].unique().sort()
        if purge is None:
            purge = max(purge_default(c) for c in configs)
        splits = combinatorial_purged(dates, groups, test_groups, purge, embargo)
        for c in configs:
            check_test_window(dates.len() // groups, c, what=f"a group of `groups` = {groups}")
        panel = open_panel(build_panel(prices_ref, store), store)
        returns = trial_returns(prices, panel, base, sets)
        result = evaluate_cpcv(returns, dates, splits, sets)
        pbo = compute_pbo(returns, 16) if len(sets) >= 2 and dates.len() >= 32 else None
    except QpipeError as exc:
        failed = {"error": type(exc).__name__, "message": _first_line(exc)}
        _record(book, research_id, "research_failed", failed)
        raise
    folder = paths.out / "research" / research_id
    info = {"research_id": research_id, **_cpcv_summary(result, pbo)}
    info["artifacts"] = _cpcv_files(folder, result, info)
    _record(book, research_id, "research_finished", info)
    emit("research_finished", {"research_id": research_id, "out_dir": str(folder)})
    return CPCVRun(research_id, folder, result, pbo)
