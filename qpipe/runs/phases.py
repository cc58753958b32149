"""The middle phases of a run: strategy → audit (Tier 2) → backtest.

Each takes refs and returns refs (plus small values); frames are opened from the store only
where a phase needs to look at them.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any

from qpipe.context import RunContext
from qpipe.errors import AllocationAuditError
from qpipe.ledger import payloads as p
from qpipe.runs.env import RunEnv
from qpipe.runs.ingest import Inputs
from qpipe.stages.backtest import backtest as backtest_stage
from qpipe.stages.backtest import metrics as metrics_stage
from qpipe.stages.base import Pipeline
from qpipe.strategy import build_strategy
from qpipe.validation.audit import AuditReport
from qpipe.validation.tier2 import tier2, write_index

__all__ = ["Allocation", "Audit", "Backtest", "audit", "backtest", "strategy"]


@dataclass(frozen=True)
class Allocation:
    """The run context once target weights exist, and the pipeline that made them (if any)."""

    context: RunContext
    pipeline: Pipeline | None


@dataclass(frozen=True)
class Audit:
    """The Tier 2 outcome (None when ``validation.mode = "none"``) and its warnings."""

    report: AuditReport | None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Backtest:
    """Every output as a ref, and the metrics as JSON numbers."""

    context: RunContext
    metrics: dict[str, Any]


def strategy(env: RunEnv, ingest: Inputs) -> Allocation:
    """Target weights: the strategy pipeline on the engine, or the external weights file."""
    bench = ingest.benchmark or ingest.prices
    ctx = RunContext({"prices": ingest.prices.ref, "benchmark": bench.ref})
    if ingest.weights is not None:
        return Allocation(ctx.with_refs(weights=ingest.weights.ref), None)
    pipeline = build_strategy(env.cfg)
    run = env.engine.run(
        pipeline, ctx, env.store, check=env.check, on_record=env.on_stage, cache=env.cache
    )
    return Allocation(run.context, pipeline)


def audit(env: RunEnv, strategy: Allocation) -> Audit:
    """Tier 2: limits, prices and the point-in-time check; recorded, then enforced."""
    if env.cfg.validation.mode == "none":
        return Audit(None)
    start = time.perf_counter()
    report, notes = _audit_or_reuse(env, strategy)
    env.recorder.validation(_tier2_record(report, time.perf_counter() - start))
    env.emit("audited", report.to_json())
    for note in notes:
        env.emit("warning", {"message": note})
    try:
        report.raise_for_violations()
    except AllocationAuditError as exc:
        if strategy.pipeline is not None:
            raise
        msg = f"weights file `{env.cfg.data.weights}`: {exc.args[0]}"
        raise AllocationAuditError(msg, exc.violations) from None
    return Audit(report, notes)


def _audit_or_reuse(env: RunEnv, strategy: Allocation) -> tuple[AuditReport, tuple[str, ...]]:
    """Reuse a validation certificate for these inputs, or audit (see qpipe.validation.tier2)."""
    ctx, made = strategy.context, strategy.pipeline.outputs if strategy.pipeline else ()
    records = env.ledger.records() if env.ledger.path.exists() else []
    index = env.store.subfolder("index")
    outcome = tier2(
        env.store.open(ctx["weights"]),
        env.store.open(ctx["prices"]),
        env.cfg,
        strategy=strategy.pipeline,
        intermediates={n: env.store.open(ctx[n]) for n in made if n != "weights"},
        records=records,
        prices_digest=ctx["prices"].digest,
        weights_digest=ctx["weights"].digest,
        index=index,
    )
    for kind, data in outcome.events:
        env.emit(kind, data)
    written = env.recorder.allocation_audit(p.AllocationAudit(**outcome.record_data()))
    entry = outcome.index_entry(written, records)
    if entry is not None:
        with contextlib.suppress(OSError):  # the index is a shortcut; the ledger is the truth
            write_index(index, entry)
    return outcome.report, tuple(outcome.notes)


def _tier2_record(report: AuditReport, seconds: float) -> p.Validation:
    """The audit as a Tier 2 validation record: one failure per check that found violations."""
    found: dict[str, list[str]] = {}
    for day, symbol, check, _ in report.violations:
        found.setdefault(check, []).append(f"{day} {symbol}")
    failures = tuple(
        p.ValidationFailure(check=check, count=len(where), example=where[0])
        for check, where in found.items()
    )
    return p.Validation(
        tier="tier2",
        target="weights",
        passed=report.passed,
        skipped=report.skipped,
        seconds=round(seconds, 6),
        failures=failures,
    )


def _backtest_pipeline(env: RunEnv) -> Pipeline:
    b = env.cfg.backtest
    params = (
        "initial_capital",
        "cost_bps",
        "slippage_bps",
        "execution",
        "borrow_bps",
        "cash_rate",
        "start",
        "end",
    )
    bt = backtest_stage.bind({name: b[name] for name in params})
    mt = metrics_stage.bind({"initial_capital": b.initial_capital})
    return Pipeline((bt, mt), name="backtest")


def backtest(env: RunEnv, strategy: Allocation, audit: Audit) -> Backtest:
    """Accounting and metrics on the engine (after the audit passed); records the metrics."""
    run = env.engine.run(
        _backtest_pipeline(env),
        strategy.context,
        env.store,
        check=env.check,
        on_record=env.on_stage,
        cache=env.cache,
    )
    row = env.store.open(run.context["metrics"]).row(0, named=True)
    metrics = {k: json_number(k, v) for k, v in row.items()}
    env.recorder.metrics(p.Metrics(metrics))
    return Backtest(run.context, metrics)


def json_number(name: str, value: Any) -> Any:
    """Metrics as JSON numbers: NaN/inf become null, counts become ints."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if name.startswith("n_") and float(value).is_integer():
        return int(value)
    return value
