"""Per-step validation (``validation.mode = "per_step"``): a schema check after every stage.

:func:`check_step_output` is an engine :data:`~qpipe.engines.base.OutputCheck`: the engine calls it
with each collected output before storing it. The output's name picks a ``pandera.polars``
schema (:data:`KINDS`); the frame is validated eagerly with ``lazy=True`` so every failure is
reported at once, and a failure raises :class:`~qpipe.errors.SchemaValidationError` naming the
stage and the output. This mode is for debugging and for the benchmark that compares it with the
default two tiers; it is off by default.

===========  ======================================================================================
output       schema
===========  ======================================================================================
features     `date` Date, `symbol` String, both non-null, (date, symbol) unique; every other numeric
             column finite or null (null = window not full yet)
signals      as features, plus `signal` Float64 (finite or null)
weights      as features, plus `weight` Float64, non-null and finite
equity       `date` Date non-null and unique; `equity`, `turnover`, `cost` Float64 finite;
             `return` Float64 finite or null; other numeric columns finite or null
trades       `date`, `symbol` non-null; `shares`, `price`, `notional`, `cost` Float64 finite
metrics      every numeric column finite or null
other names  `date` (Date) and `symbol` (String) non-null where present; numeric columns not NaN/inf
===========  ======================================================================================
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from qpipe.errors import SchemaFailure, SchemaValidationError

if TYPE_CHECKING:
    import pandera.polars as pa
    from pandera.errors import SchemaError, SchemaErrors
from qpipe.stages.base import Step

__all__ = ["KINDS", "StepCheck", "check_step_output", "step_schema"]

KINDS = ("features", "signals", "weights", "equity", "trades", "metrics")
KEYS = ("date", "symbol")
SHOW = 5


def _finite(nullable: bool) -> pa.Check:
    import pandera.polars as pa  # lazy: pandera (and pandas) cost ~0.7 s to import

    def check(data: pa.PolarsData) -> pl.LazyFrame:
        c = pl.col(data.key)
        ok = c.is_finite() | c.is_null() if nullable else c.is_finite().fill_null(False)
        return data.lazyframe.select(ok)

    return pa.Check(check, name="finite_or_null" if nullable else "finite")


def _unique(keys: tuple[str, ...]) -> pa.Check:
    import pandera.polars as pa  # lazy: pandera (and pandas) cost ~0.7 s to import

    # one pass over the keys; a row is bad if its key appears twice
    def check(data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(~pl.struct(list(keys)).is_duplicated().alias("unique"))

    return pa.Check(check, name=f"({', '.join(keys)}) unique")


def _numeric(dtype: pl.DataType) -> bool:
    return dtype.is_numeric()


def step_schema(name: str, columns: dict[str, pl.DataType] | pl.Schema) -> pa.DataFrameSchema:
    """The pandera schema for an output called ``name`` with the given column types.

    Extra numeric columns are checked to be finite or null; non-numeric extras are left alone.
    """
    import pandera.polars as pa  # lazy: pandera (and pandas) cost ~0.7 s to import

    cols: dict[str, pa.Column] = {}
    checks: list[pa.Check] = []
    kind = name if name in KINDS else "other"

    def key(col: str, dtype: type[pl.DataType]) -> None:
        cols[col] = pa.Column(dtype, nullable=False)

    def value(col: str, nullable: bool) -> None:
        cols[col] = pa.Column(pl.Float64, nullable=nullable, checks=[_finite(nullable)])

    if kind in ("features", "signals", "weights"):
        key("date", pl.Date)
        key("symbol", pl.String)
        checks.append(_unique(KEYS))
        if kind == "signals":
            value("signal", nullable=True)
        if kind == "weights":
            value("weight", nullable=False)
    elif kind == "equity":
        key("date", pl.Date)
        checks.append(_unique(("date",)))
        for col in ("equity", "turnover", "cost"):
            value(col, nullable=False)
        value("return", nullable=True)
    elif kind == "trades":
        key("date", pl.Date)
        key("symbol", pl.String)
        for col in ("shares", "price", "notional", "cost"):
            value(col, nullable=False)
    elif kind == "other":
        if "date" in columns:
            key("date", pl.Date)
        if "symbol" in columns:
            key("symbol", pl.String)
    for col, dtype in columns.items():
        if col not in cols and _numeric(dtype):
            cols[col] = pa.Column(dtype, nullable=True, checks=[_finite(True)])
    return pa.DataFrameSchema(cols, checks=checks, strict=False, name=f"{name} output")


def _failures(exc: SchemaErrors | SchemaError) -> list[SchemaFailure]:
    """One typed record per failing (column, check), with its count and first failure cases."""
    cases = getattr(exc, "failure_cases", None)
    if not isinstance(cases, pl.DataFrame) or cases.is_empty():
        text = str(exc).strip().splitlines()[0]
        return [SchemaFailure("schema", None, 1, (text,), kind="column")]
    rows: Iterable[dict] = cases.select(
        pl.col("column").cast(pl.String).fill_null(""),
        pl.col("check").cast(pl.String),
        pl.col("failure_case").cast(pl.String).fill_null("null"),
    ).iter_rows(named=True)
    grouped: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        grouped.setdefault((r["column"], r["check"]), []).append(r["failure_case"])
    return [
        SchemaFailure(check, col or None, len(found), tuple(found[:SHOW]))
        for (col, check), found in grouped.items()
    ]


@dataclass(frozen=True)
class StepCheck:
    """What :func:`check_step_output` found for one output (for a ``per_step`` record).

    ``failures`` holds one :class:`~qpipe.errors.SchemaFailure` per failing (column, check);
    ``message`` is the one-line error (empty when it passed).
    """

    step: str
    output: str
    rows: int
    passed: bool
    failures: tuple[SchemaFailure, ...]
    seconds: float
    message: str = ""

    def raise_for_failures(self) -> None:
        """Raise :class:`~qpipe.errors.SchemaValidationError` if the output failed."""
        if not self.passed:
            raise SchemaValidationError(self.message, list(self.failures))


def _summary(step: Step, name: str, failures: list[SchemaFailure]) -> str:
    parts = [
        f"`{f.column}` {f.check} ({f.count})" if f.column else f"{f.check} ({f.count})"
        for f in failures
    ]
    shown = "; ".join(parts[:SHOW]) + (
        f"; and {len(parts) - SHOW} more" if len(parts) > SHOW else ""
    )
    return f"stage `{step.name}` output `{name}` failed its schema: {shown}"


def check_step_output(
    step: Step, name: str, frame: pl.DataFrame, *, raise_on_failure: bool = True
) -> StepCheck:
    """Validate one collected stage output against its schema (an engine ``OutputCheck``).

    Parameters
    ----------
    step
        The step that produced the frame (named in the error).
    name
        The output name; picks the schema (:data:`KINDS`, else key columns only).
    frame
        The collected output; it is not modified.
    raise_on_failure
        Raise on a failure (the default, so an engine stops the run); with ``False`` the
        result says what failed.

    Returns
    -------
    StepCheck
        Passed or not, with every failure and the time the check took.

    Raises
    ------
    SchemaValidationError
        Naming the stage, the output and the failed checks; ``failures`` holds one
        :class:`~qpipe.errors.SchemaFailure` per failing (column, check), with its count and
        first failure cases.
    """
    from pandera.errors import SchemaError, SchemaErrors

    start = time.perf_counter()
    schema = step_schema(name, frame.schema)
    failures: list[SchemaFailure] = []
    try:
        schema.validate(frame, lazy=True)
    except (SchemaErrors, SchemaError) as exc:
        failures = _failures(exc)
    result = StepCheck(
        step.name,
        name,
        frame.height,
        not failures,
        tuple(failures),
        time.perf_counter() - start,
        _summary(step, name, failures) if failures else "",
    )
    if raise_on_failure:
        result.raise_for_failures()
    return result
