"""Tier 1 schemas: what a price or weights frame must look like before it enters the store.

The schemas are ``pandera.polars`` schemas over a *collected* ``pl.DataFrame``: pandera validates
a ``LazyFrame`` against its schema only (names and dtypes) and silently skips data checks, so
:func:`validate_prices` always hands it a ``DataFrame``, with ``lazy=True`` so every failure is
collected rather than the first one.

Every data check is a Polars expression that is true for a good row. The same expressions build
the pandera checks and, when validation fails, find the failing rows for the error message and
the quarantine file, so the two can never disagree. Two points the checks get right:

- ``NaN > 0`` is true in Polars and pandera's ``gt(0)`` lets ``+inf`` through, so positivity is
  always checked together with ``is_finite()``.
- Uniqueness of ``(date, symbol)`` is *not* a pandera check (it was measured at 98 % of pandera's
  cost at 1e7 rows); :func:`has_duplicates` looks for one in one pass over keys sorted by
  ``(symbol, date)``, which the ingestion sorts anyway, and only then :func:`duplicate_mask`
  marks them.

**One pass per check, and only a bool back.** Each pandera check reduces its expression to one
boolean (``expr.all()``) inside Polars, so pandera never collects a million-row boolean column
per check; the failing rows are found afterwards, only when something failed. A check on one
column whose result depends only on the value (``symbol`` not empty) is evaluated once per run
of equal values (:attr:`RowCheck.per_value`): a row equal to the row before it has the same
outcome, so checking the first row of every run checks every distinct value, in any row order;
sorted by symbol that is one row per symbol (measured in docs/benchmarks.md, "validation").
Calling a schema's ``validate`` directly therefore names the failing checks but not the failing
rows (pandera shows the frame's first row as its "failure case"); :func:`validate_prices` and
:func:`validate_weights` return the failing rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from qpipe.errors import SchemaFailure, SchemaValidationError

if TYPE_CHECKING:
    import pandera.polars as pa

__all__ = [
    "KEY_COLUMNS",
    "OPTIONAL_PRICE_COLUMNS",
    "PRICE_COLUMNS",
    "REQUIRED_PRICE_COLUMNS",
    "UNIQUE_CHECK",
    "WEIGHT_COLUMNS",
    "RowCheck",
    "duplicate_mask",
    "has_duplicates",
    "price_checks",
    "price_schema",
    "validate_prices",
    "validate_weights",
    "weight_checks",
    "weights_schema",
]

KEY_COLUMNS = ("date", "symbol")
REQUIRED_PRICE_COLUMNS = ("date", "symbol", "close")
OPTIONAL_PRICE_COLUMNS = ("open", "high", "low", "volume")
PRICE_COLUMNS = REQUIRED_PRICE_COLUMNS + OPTIONAL_PRICE_COLUMNS
WEIGHT_COLUMNS = ("date", "symbol", "weight")
UNIQUE_CHECK = "(date, symbol) unique"


@dataclass(frozen=True, slots=True)
class RowCheck:
    """One row-level Tier 1 check.

    Attributes
    ----------
    name
        The label used in error messages, e.g. ``"`close` finite and > 0"``.
    column
        The column the check belongs to, or ``None`` for a check across columns.
    valid
        A Polars expression that is true for a good row. It may be null where the check does
        not apply (an optional value that is missing): null counts as *passing* unless
        ``null_fails``.
    null_fails
        Whether a null result is a failure (``close`` must be present; ``open`` need not).
    per_value
        For a check of ``column`` alone whose outcome depends only on the value: ``valid``
        as a function of the column expression. :meth:`passes` then evaluates it on the first
        row of each run of equal values only (same outcome, see the module docstring).
    """

    name: str
    column: str | None
    valid: pl.Expr
    null_fails: bool = False
    per_value: Callable[[pl.Expr], pl.Expr] | None = None

    def ok(self) -> pl.Expr:
        """The check as a plain boolean expression (null resolved)."""
        return self.valid.fill_null(not self.null_fails)

    def passes(self) -> pl.Expr:
        """One boolean for the whole frame: does every row pass? (== ``ok().all()``)"""
        if self.per_value is None or self.column is None:
            return self.ok().all()
        col = pl.col(self.column)
        # a row equal to its predecessor has its outcome; nulls are grouped the same way
        firsts = col.filter(col.ne_missing(col.shift()))
        return self.per_value(firsts).fill_null(not self.null_fails).all()


def _not_blank(symbol: pl.Expr) -> pl.Expr:
    return symbol.str.strip_chars().str.len_bytes() > 0


def _symbol_not_empty() -> RowCheck:
    return RowCheck(
        "`symbol` not empty", "symbol", _not_blank(pl.col("symbol")), per_value=_not_blank
    )


def _finite_positive(col: str) -> pl.Expr:
    c = pl.col(col)
    return c.is_finite() & (c > 0)


def price_checks(columns: Sequence[str], *, today: dt.date | None = None) -> tuple[RowCheck, ...]:
    """The row-level checks that apply to a price frame with ``columns``.

    Parameters
    ----------
    columns
        The frame's (lower-case) column names; checks on absent optional columns are left out.
    today
        Dates after this day are rejected as future dates (default: the local date today).

    Returns
    -------
    tuple of RowCheck
        In a fixed order, so messages list failures in the same order every time.
    """
    today = today or dt.date.today()
    present = set(columns)
    checks = [
        RowCheck("`date` not null", "date", pl.col("date").is_not_null(), null_fails=True),
        RowCheck(f"`date` not after {today.isoformat()}", "date", pl.col("date") <= today),
        RowCheck("`symbol` not null", "symbol", pl.col("symbol").is_not_null(), null_fails=True),
        _symbol_not_empty(),
        RowCheck("`close` finite and > 0", "close", _finite_positive("close"), null_fails=True),
    ]
    for col in ("open", "high", "low"):
        if col in present:
            checks.append(RowCheck(f"`{col}` finite and > 0", col, _finite_positive(col)))
    if "volume" in present:
        vol = pl.col("volume").cast(pl.Float64)
        checks.append(RowCheck("`volume` finite and >= 0", "volume", vol.is_finite() & (vol >= 0)))
    if "high" in present:
        others = [pl.col(c) for c in ("open", "close", "low") if c in present]
        checks.append(
            RowCheck(
                "`high` >= max(open, close, low)", None, pl.col("high") >= pl.max_horizontal(others)
            )
        )
    if "low" in present:
        others = [pl.col(c) for c in ("open", "close", "high") if c in present]
        checks.append(
            RowCheck(
                "`low` <= min(open, close, high)", None, pl.col("low") <= pl.min_horizontal(others)
            )
        )
    return tuple(checks)


def weight_checks(columns: Sequence[str]) -> tuple[RowCheck, ...]:
    """Tier 1 checks on a weights frame: keys and weight present.

    NaN or infinite weights, duplicates and unknown symbols are the Tier 2 audit's job; a
    *missing* (null) weight is a format problem and fails here.
    """
    del columns  # every weights check applies to the three required columns
    return (
        RowCheck("`date` not null", "date", pl.col("date").is_not_null(), null_fails=True),
        RowCheck("`symbol` not null", "symbol", pl.col("symbol").is_not_null(), null_fails=True),
        _symbol_not_empty(),
        RowCheck("`weight` not null", "weight", pl.col("weight").is_not_null(), null_fails=True),
    )


def _pandera_check(check: RowCheck) -> pa.Check:
    import pandera.polars as pa  # lazy: pandera (and pandas) cost ~0.7 s to import

    expr = check.passes()

    def fn(data: pa.PolarsData) -> pl.LazyFrame:
        # One row, one boolean, computed inside Polars: pandera collects no per-row column (a
        # plain Python bool would do too, but pandera 0.35 cannot then summarise a lazy failure).
        # The expression has already decided what a null means.
        return data.lazyframe.select(expr)

    return pa.Check(fn, name=check.name, ignore_na=False)


def _schema(
    dtypes: dict[str, pl.DataType | None],
    required: Sequence[str],
    checks: Sequence[RowCheck],
    name: str,
) -> pa.DataFrameSchema:
    import pandera.polars as pa  # lazy: pandera (and pandas) cost ~0.7 s to import

    per_column: dict[str, list[pa.Check]] = {c: [] for c in dtypes}
    frame_checks: list[pa.Check] = []
    for check in checks:
        target = per_column.get(check.column) if check.column else None
        (target if target is not None else frame_checks).append(_pandera_check(check))
    columns = {
        col: pa.Column(
            dtype,
            checks=per_column[col],
            # Nulls are judged by the checks above (NaN is not null for us, unlike pandera).
            nullable=True,
            required=col in required,
        )
        for col, dtype in dtypes.items()
    }
    return pa.DataFrameSchema(columns, checks=frame_checks, strict=False, name=name)


def price_schema(
    *,
    today: dt.date | None = None,
    columns: Sequence[str] = PRICE_COLUMNS,
    volume_dtype: pl.DataType | None = None,
) -> pa.DataFrameSchema:
    """The pandera schema for prices (DESIGN.md "Data conventions").

    Parameters
    ----------
    today
        The last allowed date (default: today's local date); injectable for tests.
    columns
        The columns the frame has; cross-column checks use only the optional columns present.
    volume_dtype
        ``pl.Int64`` or ``pl.Float64`` (default ``pl.Float64``).

    Returns
    -------
    pandera.polars.DataFrameSchema
        Required ``date`` (Date), ``symbol`` (String), ``close`` (Float64); optional ``open``,
        ``high``, ``low`` (Float64) and ``volume``. Uniqueness of ``(date, symbol)`` is not part
        of it: see :func:`duplicate_mask`.
    """
    volume_dtype = volume_dtype or pl.Float64()
    dtypes: dict[str, pl.DataType | None] = {
        "date": pl.Date(),
        "symbol": pl.String(),
        "close": pl.Float64(),
        "open": pl.Float64(),
        "high": pl.Float64(),
        "low": pl.Float64(),
        "volume": volume_dtype,
    }
    checks = price_checks(columns, today=today)
    return _schema(dtypes, REQUIRED_PRICE_COLUMNS, checks, "prices")


def weights_schema() -> pa.DataFrameSchema:
    """The pandera schema for weights: ``date`` Date, ``symbol`` String, ``weight`` Float64."""
    dtypes: dict[str, pl.DataType | None] = {
        "date": pl.Date(),
        "symbol": pl.String(),
        "weight": pl.Float64(),
    }
    return _schema(dtypes, WEIGHT_COLUMNS, weight_checks(WEIGHT_COLUMNS), "weights")


def has_duplicates(frame: pl.DataFrame) -> bool:
    """Whether some ``(symbol, date)`` occurs twice, for a frame sorted by ``(symbol, date)``.

    One aggregate: dates are compared first (integers), symbols only where the date repeats
    (in that order, mostly at a change of symbol). Same answer as ``duplicate_mask(frame).any()``.
    """
    if frame.height < 2:
        return False
    date = frame.get_column("date")
    again = (date == date.shift()).fill_null(False).arg_true()  # rows whose date repeats
    if again.len() == 0:
        return False
    symbol = frame.get_column("symbol")
    return bool((symbol.gather(again) == symbol.gather(again - 1)).any())


def duplicate_mask(frame: pl.DataFrame) -> pl.Series:
    """Rows whose ``(symbol, date)`` also occurs in a neighbouring row, in one pass.

    ``frame`` must already be sorted by ``(symbol, date)`` (ingestion sorts it), so duplicates
    are adjacent; every copy is marked, not only the second. Rows with a null key are never
    marked (the not-null checks report them).
    """
    if frame.height == 0:
        return pl.Series("duplicate", [], dtype=pl.Boolean)
    same = (pl.col("symbol") == pl.col("symbol").shift(1)) & (
        pl.col("date") == pl.col("date").shift(1)
    )
    same = same.fill_null(False)
    return frame.select((same | same.shift(-1, fill_value=False)).alias("duplicate")).to_series()


def _run(
    frame: pl.DataFrame, schema: pa.DataFrameSchema, checks: tuple[RowCheck, ...]
) -> pl.DataFrame | None:
    """Validate with pandera; on failure, a frame of per-check failure masks (else None)."""
    from pandera.errors import SchemaError, SchemaErrors

    try:
        schema.validate(frame, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases
    except SchemaError as exc:  # pragma: no cover - lazy=True collects into SchemaErrors
        cases = exc.failure_cases if isinstance(exc.failure_cases, pl.DataFrame) else None
    else:
        return None
    names = {check.name for check in checks}
    structural: list[SchemaFailure] = []
    if cases is not None:
        for column, check, case in (
            cases.select("column", "check", "failure_case").unique(maintain_order=True).iter_rows()
        ):
            if check not in names:  # a dtype or missing-column failure: no rows to point at
                text = f"`{column or case}` {check} (found {case})"
                structural.append(SchemaFailure(text, column or case, kind="column"))
    if structural:
        msg = f"{schema.name} failed the schema: {'; '.join(f.check for f in structural)}"
        raise SchemaValidationError(msg, structural)
    # Recompute the failing rows from the same expressions: one pass, exact masks, and no
    # dependence on how pandera renders or truncates its failure cases.
    masks = frame.select([(~check.ok()).alias(check.name) for check in checks])
    return masks


def validate_prices(
    frame: pl.DataFrame, *, today: dt.date | None = None, check_unique: bool = True
) -> pl.DataFrame | None:
    """Run the Tier 1 price checks on a collected, typed frame.

    Parameters
    ----------
    frame
        Prices with normalised dtypes, sorted by ``(symbol, date)`` if ``check_unique``.
    today
        Dates after this are future dates.
    check_unique
        Also check ``(date, symbol)`` uniqueness on the sorted keys.

    Returns
    -------
    polars.DataFrame or None
        None when every check passes; otherwise one boolean column per check (named by its label,
        true where the row fails), with only the checks that failed somewhere.
    """
    volume_dtype = frame.schema.get("volume") if "volume" in frame.columns else None
    if volume_dtype not in (None, pl.Int64, pl.Float64):
        volume_dtype = pl.Float64()
    schema = price_schema(today=today, columns=frame.columns, volume_dtype=volume_dtype)
    checks = price_checks(frame.columns, today=today)
    masks = _run(frame, schema, checks)
    if check_unique and has_duplicates(frame):
        dup = duplicate_mask(frame).alias(UNIQUE_CHECK)
        masks = dup.to_frame() if masks is None else masks.with_columns(dup)
    return _only_failing(masks)


def validate_weights(frame: pl.DataFrame) -> pl.DataFrame | None:
    """Run the Tier 1 weights checks (types, non-null keys and weight); see `validate_prices`."""
    checks = weight_checks(frame.columns)
    return _only_failing(_run(frame, weights_schema(), checks))


def _only_failing(masks: pl.DataFrame | None) -> pl.DataFrame | None:
    if masks is None:
        return None
    failing = [name for name, n in zip(masks.columns, masks.sum().row(0), strict=True) if n]
    return masks.select(failing) if failing else None
