"""The point-in-time (look-ahead) check, one stage at a time.

Weights for date t may use prices up to close t only. The check proves it stage by stage: each
step of the strategy is called again on its *own inputs* (the frames the full run produced)
truncated after a cut date r, and what it returns on the last few rebalance dates up to r must
equal what it returned in the full run. A step that reads any later row -- ``shift(-1)``, a centred
window, a whole-sample statistic, the next rebalance -- changes its output on r, whose future is
missing from the truncated inputs. Because every step gets exactly the inputs of the full run,
a causal step gives the same numbers; a look-ahead is pinned on the step that has it.

The steps's ``shard`` says how little each re-run needs (the stage contract, ``stages/base.py``):

``"symbol"``  time-series stage: a sample of symbols (every symbol held on a cut date plus
              :data:`PIT_SYMBOLS` spread over the universe), each with its last
              ``warmup_days + 5`` rows before the compared dates. A stage that reads other
              symbols breaks its shard contract and fails here too.
``"date"``    cross-sectional stage: only the compared dates, every symbol.
``None``      needs everything (allocation): every symbol over ``warmup_days + 5`` price dates
              before the compared dates, moved back to the ``every_k`` schedule if there is one.

So the work grows with the cuts, the window and the sample, not with the history or the
universe. Outputs are compared on their (date, symbol) rows: the weights exactly as the audit
reads them (a missing row is weight 0; to 1e-12), other outputs row by row (a row on one side
only, a null against a value, or ``|a - b| > 1e-9 max(|a|, |b|) + 1e-12``: rolling windows
restarted at another row differ in the last bits, a look-ahead by far more).

A step whose digest (its code, the code it calls in its own package, its params and the
schemas of its inputs; :func:`step_digest`) was proven causal in an earlier run can be passed in
``proven``; it is not re-run, and the proof stays in the earlier ledger record.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import inspect
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from qpipe._canonical import canonical_digest
from qpipe.stages.base import Pipeline, Step
from qpipe.validation._pit_plan import Plan, _History, make_plan

__all__ = [
    "PIT_MARGIN",
    "PIT_SYMBOLS",
    "StageProof",
    "_History",
    "check_point_in_time",
    "step_digest",
]

PIT_TOL = 1e-12  # weights: same inputs, same code, so the same bits are expected
RTOL = 1e-9  # other outputs: rolling sums restarted at another row differ in the last bits
ATOL = 1e-12
PIT_MARGIN = 5
PIT_SYMBOLS = 64  # symbols re-run by a per-symbol stage, besides those held on the cut dates

# (date, symbol, check, value), as in qpipe.validation.audit
Violation = tuple[dt.date | None, str | None, str, float | None]


@dataclass(frozen=True)
class StageProof:
    """What the point-in-time check did for one step.

    ``rows`` counts the input rows it re-ran on (over all cuts); ``reused`` means the step's
    digest was proven causal earlier and it was not re-run.
    """

    step: str
    digest: str
    shard: str | None
    rows: int
    violations: int
    seconds: float
    reused: bool = False

    @property
    def passed(self) -> bool:
        return self.violations == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "digest": self.digest,
            "shard": self.shard,
            "rows": self.rows,
            "violations": self.violations,
            "seconds": round(self.seconds, 6),
            "reused": self.reused,
        }


# --------------------------------------------------------------------------- step digest


def _source(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):  # no file (e.g. defined in a REPL): the bytecode stands in
        code = getattr(obj, "__code__", None)
        return repr((code.co_code, code.co_consts)) if code is not None else repr(obj)


def _code_digest(fn: Any) -> str:
    """Digest of the stage function's module and of the modules of the same package it uses.

    One level deep: a helper imported from another module of the package (``ordered_sum`` in
    the allocation) is covered by its module's source.
    """
    top = (fn.__module__ or "").split(".")[0]
    modules = {fn.__module__}
    for value in getattr(fn, "__globals__", {}).values():
        name = getattr(value, "__module__", None) or getattr(value, "__name__", None)
        if isinstance(name, str) and name.split(".")[0] == top:
            modules.add(name)
    h = hashlib.sha256()
    for name in sorted(m for m in modules if m):
        module = sys.modules.get(name)
        h.update(name.encode())
        h.update(_source(module if module is not None else fn).encode("utf-8", "replace"))
    return h.hexdigest()


def step_digest(step: Step, schemas: Sequence[Mapping[str, pl.DataType]]) -> str:
    """The identity of a step for a causality proof: code, params, I/O names, input schemas."""
    body = {
        "stage": f"{step.stage.fn.__module__}.{step.stage.fn.__qualname__}",
        "code": _code_digest(step.stage.fn),
        "params": {k: repr(v) for k, v in sorted(dict(step.params).items())},
        "inputs": list(step.inputs),
        "outputs": list(step.outputs),
        "shard": step.stage.shard,
        "schemas": [[[c, str(t)] for c, t in s.items()] for s in schemas],
        "polars": pl.__version__,
    }
    return canonical_digest(body)


# --------------------------------------------------------------------------- windows


# --------------------------------------------------------------------------- comparison


def _weights_diff(full: pl.LazyFrame, again: pl.LazyFrame) -> pl.LazyFrame:
    """Audited minus recomputed weight per (date, symbol); a missing row counts as 0."""
    given = full.select("date", "symbol", pl.col("weight").alias("_a"))
    got = again.select(
        pl.col("date").cast(pl.Date), "symbol", pl.col("weight").cast(pl.Float64).alias("_b")
    )
    both = given.join(got, on=["date", "symbol"], how="full", coalesce=True).with_columns(
        (pl.col("_a").fill_null(0.0) - pl.col("_b").fill_null(0.0)).alias("diff")
    )
    return both.filter(~(pl.col("diff").abs() <= PIT_TOL)).select("date", "symbol", "diff")


def _frame_diff(full: pl.LazyFrame, again: pl.LazyFrame) -> pl.LazyFrame:
    """Rows that differ: present on one side only, or any shared numeric column differs."""
    have, got = full.collect_schema(), again.collect_schema()
    keys = [k for k in ("date", "symbol") if k in have and k in got]
    values = [
        c
        for c, t in have.items()
        if c not in keys and c in got and t.is_numeric() and got[c].is_numeric()
    ]
    if not keys:
        return pl.LazyFrame(schema={"date": pl.Date, "symbol": pl.String, "diff": pl.Float64})
    a = full.select(*keys, *[pl.col(c).cast(pl.Float64) for c in values], pl.lit(1).alias("_l"))
    b = again.select(*keys, *[pl.col(c).cast(pl.Float64) for c in values], pl.lit(1).alias("_l"))
    if "date" in keys:
        b = b.with_columns(pl.col("date").cast(have["date"]))
    j = a.join(b, on=keys, how="full", coalesce=True, suffix="_r")
    missing = pl.col("_l").is_null() | pl.col("_l_r").is_null()
    bad = [missing]
    diffs = []
    for c in values:
        x, y = pl.col(c), pl.col(f"{c}_r")
        close = (x - y).abs() <= RTOL * pl.max_horizontal(x.abs(), y.abs()) + ATOL
        same = (x.is_null() & y.is_null()) | (x.is_nan() & y.is_nan()) | close
        bad.append(~same.fill_null(False))
        diffs.append(pl.when(~same.fill_null(False)).then(x - y))
    first_diff = pl.coalesce([*diffs, pl.lit(float("nan"))]) if diffs else pl.lit(float("nan"))
    out = j.filter(pl.any_horizontal(bad)).with_columns(first_diff.alias("diff"))
    if "symbol" not in keys:
        out = out.with_columns(pl.lit(None, pl.String).alias("symbol"))
    if "date" not in keys:
        out = out.with_columns(pl.lit(None, pl.Date).alias("date"))
    return out.select("date", "symbol", "diff")


def _violations(diff: pl.DataFrame) -> list[Violation]:
    if diff.height == 0:  # the usual case: nothing to sort
        return []
    rows = diff.sort("date", "symbol", nulls_last=True)
    return [
        (d, s, "point_in_time", float("nan") if v is None else float(v))
        for d, s, v in rows.iter_rows()
    ]


# --------------------------------------------------------------------------- the check


def _check_step(step: Step, plan: Plan, weights_name: str) -> tuple[list[Violation], int]:
    """Re-run ``step`` for every cut and compare; all cuts' comparisons are planned lazily and
    collected together (one Polars call per step instead of one per filter, join and cut)."""
    diffs: list[pl.LazyFrame] = []
    rows = 0
    for cut in plan.cuts:
        inputs = plan.inputs(step, cut)
        rows += sum(f.height for f in inputs)
        again = step.call(*(f.lazy() for f in inputs))
        for name, got in zip(step.outputs, again, strict=True):
            full = plan.expected(step, name, cut)
            got = plan.restrict(step, got, cut)
            diffs.append(
                _weights_diff(full, got) if name == weights_name else _frame_diff(full, got)
            )
    found: list[Violation] = []
    for diff in pl.collect_all(diffs):
        found.extend(_violations(diff))
    return found, rows


def check_point_in_time(
    pipeline: Pipeline,
    frames: Mapping[str, pl.DataFrame],
    cuts: Sequence[dt.date],
    *,
    warm: int,
    warm_all: int | None = None,
    window: int = 3,
    every_k: int | None = None,
    proven: frozenset[str] = frozenset(),
    weights_name: str = "weights",
    symbols: int = PIT_SYMBOLS,
    source_runs: pl.DataFrame | None = None,
) -> tuple[list[Violation], list[StageProof]]:
    """Check every step of ``pipeline`` for look-ahead (see the module docstring).

    Parameters
    ----------
    pipeline
        The strategy; its source (``prices``) and every output must be in ``frames``.
    frames
        The full run's frames by name: the sources and every step's output. ``weights_name``
        holds the audited weights (`date` Date, `symbol` String, `weight` Float64).
    cuts
        Cut dates r: rebalance dates; the last ``window`` rebalance dates up to each are compared.
    warm
        Rows of history per symbol a re-run keeps before the compared dates (the strategy's
        warm-up plus a margin).
    warm_all
        Price dates of history a step with no shard (the allocation) keeps before the compared
        dates; default ``warm``.
    every_k
        The k of an ``every_k`` schedule (window starts stay on it), else ``None``.
    proven
        Step digests already proven causal: those steps are not re-run.
    symbols
        How many symbols a per-symbol step re-runs on, besides as many held on the cut dates.
    source_runs
        Each symbol's run of rows in the source (``symbol``, ``_start``, ``_end``), when the
        source is in the store's (symbol, date) order: the sample is then sliced by position.

    Returns
    -------
    (violations, proofs)
        ``(date, symbol, "point_in_time", full minus re-run value)`` for every differing row,
        step by step; and one :class:`StageProof` per step.
    """
    if not cuts:
        return [], []
    plan = make_plan(
        pipeline,
        frames,
        cuts,
        weights_name=weights_name,
        warm=warm,
        warm_all=warm if warm_all is None else warm_all,
        window=window,
        every_k=every_k,
        symbols=symbols,
        source_runs=source_runs,
    )
    violations: list[Violation] = []
    proofs: list[StageProof] = []
    for step in pipeline.steps:
        t0 = time.perf_counter()
        digest = step_digest(step, [frames[name].schema for name in step.inputs])
        shard = step.stage.shard
        if digest in proven:
            proofs.append(StageProof(step.name, digest, shard, 0, 0, 0.0, reused=True))
            continue
        found, rows = _check_step(step, plan, weights_name)
        violations.extend(found)
        proofs.append(
            StageProof(step.name, digest, shard, rows, len(found), time.perf_counter() - t0)
        )
    return violations, proofs
