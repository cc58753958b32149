"""Columns and types: the required columns are present, and every known column gets its
contract type (``date`` Date, ``symbol`` String, prices Float64, ``volume`` Int64 or Float64).

Every bad column is reported at once, with a count and the first examples, as one
:class:`~qpipe.errors.SchemaValidationError` whose ``failures`` are ``kind="column"`` (a column
is missing or of the wrong type) or ``kind="type"`` (values that do not parse).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl

from qpipe.errors import DataFormatError, SchemaFailure, SchemaValidationError
from qpipe.ingest.spec import EXAMPLES, Names, Spec

__all__ = ["TypeProblems", "check_columns", "normalise", "raise_types"]

_ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
_DELIMITERS = (";", "\t", "|")
_SYNONYMS = {
    "date": ("day", "dt", "time", "timestamp", "datetime", "trade_date"),
    "symbol": ("ticker", "sym", "asset", "security", "instrument", "permno", "isin", "id", "code"),
    "close": ("price", "px", "last", "adj_close", "adjclose", "prc"),
    "weight": ("w", "wt", "target", "target_weight", "allocation"),
}


def _suggestion(col: str, columns: Sequence[str]) -> str | None:
    # A found name containing the wanted one (`px_close`), then a usual vendor synonym, whole or
    # as a word of the name (`ticker` for `symbol`, `px_last` for `close`), then spelling
    # neighbours (a synonym first: `low` is spelt like `close` but is another price).
    synonyms = _SYNONYMS.get(col, ())
    close = (
        [c for c in columns if col in c]
        or [c for c in columns if c.lower() in synonyms]
        or [c for c in columns if set(re.split(r"[\W_]+", c.lower())) & set(synonyms)]
        or difflib.get_close_matches(col, columns, n=1, cutoff=0.5)
    )
    return close[0] if close else None


def check_columns(columns: Sequence[str], spec: Spec, label: str) -> None:
    """Raise if a required column is missing (naming what was found and the closest names)."""
    if len(columns) == 1 and any(d in columns[0] for d in _DELIMITERS):
        delim = next(d for d in _DELIMITERS if d in columns[0])
        msg = (
            f"{spec.what} file `{label}` has a single column `{columns[0]}`: wrong delimiter? "
            f"(it looks separated by {delim!r}; qpipe reads comma-separated CSV)"
        )
        raise DataFormatError(msg)
    missing = [c for c in spec.required if c not in columns]
    if not missing:
        return
    parts = []
    for col in missing:
        close = _suggestion(col, columns)
        parts.append(f"`{col}`" + (f" (did you mean `{close}`?)" if close else ""))
    found = ", ".join(f"`{c}`" for c in columns) or "none"
    plural = "s" if len(missing) > 1 else ""
    msg = f"{spec.what} file `{label}` is missing column{plural} {', '.join(parts)}; found {found}"
    if _looks_wide(columns, missing, spec):
        found = ", ".join(f"`{c}`" for c in columns[:4]) + (", ..." if len(columns) > 4 else "")
        msg = (
            f"{spec.what} file `{label}` looks wide (a `date` column, then one column per "
            f"symbol: {found}); qpipe expects the long format `date`, `symbol`, `close`: "
            f"convert it with `python -m qpipe data import {label} --name NAME` and run with "
            "`--data store:NAME`"
        )
    failures = [SchemaFailure(f"missing column `{c}`", c, kind="column") for c in missing]
    raise SchemaValidationError(msg, failures)


def _looks_wide(columns: Sequence[str], missing: list[str], spec: Spec) -> bool:
    """A `date` column, then at least two others, none of them a symbol or close by any name."""

    def named_like(col: str) -> bool:
        return any(col in c or c in _SYNONYMS[col] for c in columns)

    return (
        spec.what == "prices"
        and set(missing) == {"symbol", "close"}
        and len(columns) >= 3
        and columns[0] == "date"
        and not named_like("symbol")
        and not named_like("close")
    )


@dataclass
class _TypeProblem:
    column: str
    problem: str
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, count: int, examples: list[str]) -> None:
        self.count += count
        room = EXAMPLES - len(self.examples)
        self.examples.extend(examples[: max(room, 0)])

    def failure(self) -> SchemaFailure:
        return SchemaFailure(self.problem, self.column, self.count, tuple(self.examples), "type")


class TypeProblems(dict[str, _TypeProblem]):
    """Type problems by column, accumulated over one frame or many batches."""

    def problem(self, col: str, text: str) -> _TypeProblem:
        return self.setdefault(col, _TypeProblem(col, text))


@dataclass
class _Plan:
    """The casts to apply and the "bad value" flags to count, built column by column."""

    exprs: list[pl.Expr] = field(default_factory=list)
    flags: list[tuple[str, pl.Expr, str]] = field(default_factory=list)  # (column, bad, wrong)


def _plan_date(c: pl.Expr, dtype: pl.DataType, plan: _Plan, problems: TypeProblems) -> None:
    col = "date"
    if dtype == pl.Date:
        return
    if dtype == pl.String:
        text = c.str.strip_chars()
        parsed = text.str.strptime(pl.Date, "%Y-%m-%d", strict=False)
        ok = (text.str.contains(_ISO_DATE) & parsed.is_not_null()).fill_null(False)
        plan.flags.append((col, c.is_not_null() & ~ok, "that are not ISO dates YYYY-MM-DD"))
        plan.exprs.append(pl.when(ok).then(parsed).alias(col))
    elif isinstance(dtype, pl.Datetime):
        bad = c.is_not_null() & (c.dt.truncate("1d") != c)
        plan.flags.append((col, bad, "with a time of day (dates must be whole days)"))
        plan.exprs.append(c.dt.date().alias(col))
    elif dtype.is_numeric():
        problems.problem(col, f"is numeric ({dtype}); write dates as ISO YYYY-MM-DD")
    else:
        problems.problem(col, f"has type {dtype}; expected dates as ISO YYYY-MM-DD")


def _plan_symbol(c: pl.Expr, dtype: pl.DataType, plan: _Plan, problems: TypeProblems) -> None:
    if dtype == pl.String:
        return
    if isinstance(dtype, pl.Categorical | pl.Enum) or dtype.is_integer():
        plan.exprs.append(c.cast(pl.String).alias("symbol"))
    else:
        problems.problem("symbol", f"has type {dtype}; expected text")


def _plan_number(
    col: str, c: pl.Expr, dtype: pl.DataType, plan: _Plan, problems: TypeProblems
) -> None:
    target = pl.Int64 if col == "volume" and dtype.is_integer() else pl.Float64
    if dtype == pl.String:
        parsed = c.str.strip_chars().cast(pl.Float64, strict=False)
        plan.flags.append((col, c.is_not_null() & parsed.is_null(), "that are not numbers"))
        plan.exprs.append(parsed.alias(col))
    elif dtype.is_numeric():
        if dtype != target:
            plan.exprs.append(c.cast(target).alias(col))
    else:
        problems.problem(col, f"has type {dtype}; expected numbers")


def normalise(
    frame: pl.DataFrame, spec: Spec, problems: TypeProblems, names: Names
) -> pl.DataFrame:
    """Cast the known columns to their contract types; record every bad column in ``problems``.

    ``frame`` carries the ``names.row`` column. Values that do not parse become null here; the
    caller stops before validation when ``problems`` is non-empty. All columns are parsed in one
    parallel pass (each parse shared by its value and its "bad" flag).
    """
    plan = _Plan()
    schema = frame.schema
    for col in [*spec.required, *spec.optional]:
        if col not in schema:
            continue
        if col == "date":
            _plan_date(pl.col(col), schema[col], plan, problems)
        elif col == "symbol":
            _plan_symbol(pl.col(col), schema[col], plan, problems)
        else:  # prices, weight, volume
            _plan_number(col, pl.col(col), schema[col], plan, problems)
    if not plan.exprs:
        return frame
    flag_names = [names.temp(f"__bad_{col}", frame.columns) for col, _, _ in plan.flags]
    flags = (bad.alias(n) for (_, bad, _), n in zip(plan.flags, flag_names, strict=True))
    out = frame.lazy().with_columns(*plan.exprs, *flags).collect()
    if plan.flags:
        counts = out.select(pl.col(flag_names).sum()).row(0)
        for (col, _, wrong), flag, count in zip(plan.flags, flag_names, counts, strict=True):
            if count:
                bad_rows = frame.filter(out.get_column(flag)).select(col, names.row)
                first = bad_rows.bottom_k(EXAMPLES, by=names.row)
                examples = [f"{v!r} on row {r}" for v, r in first.iter_rows()]
                problems.problem(col, wrong).add(count, examples)
    return out.drop(flag_names)


def raise_types(problems: TypeProblems, spec: Spec, label: str) -> None:
    """Raise one error listing every column with wrong types (nothing if there are none)."""
    if not problems:
        return
    failures = [p.failure() for p in problems.values()]
    parts = [f.describe() for f in failures]
    msg = f"{spec.what} file `{label}` has wrong types: {'; '.join(parts)}"
    raise SchemaValidationError(msg, failures)
