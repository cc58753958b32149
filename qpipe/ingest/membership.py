"""The membership file of a point-in-time universe: ``symbol``, ``from``, ``to``.

One row per membership interval: the symbol was in the universe from ``from`` to ``to``
(inclusive; an empty ``to`` means it still is). A symbol may have several intervals (it left and
came back). CSV, Parquet or Arrow, read with the same rules as prices (UTF-8, ISO dates, names
trimmed and lower-cased; ``start``/``end`` are accepted for ``from``/``to``). Every bad row is
reported at once (and quarantined); the validated table is stored sorted by (symbol, from).
"""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl

from qpipe.errors import DataFormatError, SchemaFailure, SchemaValidationError
from qpipe.ingest.quarantine import quarantine_path, write_quarantine
from qpipe.ingest.read import file_digest, read_table
from qpipe.ingest.spec import EXAMPLES, IngestResult, Names
from qpipe.store.arrow import ArrowStore

__all__ = ["MEMBERSHIP_COLUMNS", "ingest_membership"]

MEMBERSHIP_COLUMNS = ("symbol", "from", "to")
_ALIASES = {"start": "from", "end": "to", "ticker": "symbol"}
_ISO = r"^\s*\d{4}-\d{2}-\d{2}\s*$"


def _columns(frame: pl.DataFrame, label: str) -> pl.DataFrame:
    renames = {
        c: _ALIASES[c] for c in frame.columns if c in _ALIASES and _ALIASES[c] not in frame.columns
    }
    frame = frame.rename(renames)
    missing = [c for c in MEMBERSHIP_COLUMNS if c not in frame.columns]
    if missing:
        found = ", ".join(f"`{c}`" for c in frame.columns)
        names = ", ".join(f"`{c}`" for c in missing)
        msg = (
            f"membership file `{label}` is missing {names} (needs `symbol`, `from`, `to`); "
            f"found {found}"
        )
        raise SchemaValidationError(
            msg, [SchemaFailure(f"missing column `{c}`", c, kind="column") for c in missing]
        )
    return frame.select(MEMBERSHIP_COLUMNS)


def _as_date(col: str, dtype: pl.DataType) -> tuple[pl.Expr, pl.Expr]:
    """The column as a Date, and a flag for values that are there but not dates."""
    c = pl.col(col)
    if dtype == pl.Date:
        return c, pl.lit(False)
    if isinstance(dtype, pl.Datetime):
        return c.dt.date(), c.is_not_null() & (c.dt.truncate("1d") != c)
    text = c.cast(pl.String).str.strip_chars()
    text = pl.when(text.str.len_chars() > 0).then(text)
    parsed = text.str.strptime(pl.Date, "%Y-%m-%d", strict=False)
    bad = text.is_not_null() & (parsed.is_null() | ~text.str.contains(_ISO).fill_null(False))
    return parsed, bad


CHECKS = (
    ("`symbol` not null or empty", "symbol"),
    ("`from` an ISO date", "from"),
    ("`to` empty or an ISO date", "to"),
    ("`to` not before `from`", "to"),
)


def _masks(frame: pl.DataFrame) -> pl.DataFrame:
    schema = frame.schema
    start, bad_start = _as_date("from", schema["from"])
    end, bad_end = _as_date("to", schema["to"])
    symbol = pl.col("symbol").cast(pl.String).str.strip_chars()
    return frame.select(
        (symbol.is_null() | (symbol.str.len_chars() == 0)).alias(CHECKS[0][0]),
        (bad_start | start.is_null()).alias(CHECKS[1][0]),
        bad_end.alias(CHECKS[2][0]),
        (end < start).fill_null(False).alias(CHECKS[3][0]),
        start.alias("_from"),
        end.alias("_to"),
    )


def ingest_membership(
    path: str | Path, store: ArrowStore, *, quarantine_dir: Path | None = None
) -> IngestResult:
    """Read, check and store a membership file (see the module docstring).

    Raises
    ------
    DataFormatError
        The file cannot be read (missing, a FIFO, not UTF-8, no rows...).
    SchemaValidationError
        Missing columns, or rows with no symbol, a bad date or ``to`` before ``from`` (every
        one listed; failing rows quarantined to ``<stem>.quarantine.arrow``).
    """
    started = time.perf_counter()
    p = Path(path)
    frame = _columns(read_table(p, what="membership"), str(p))
    if frame.height == 0:
        msg = f"membership file `{p}` has a header but no rows"
        raise DataFormatError(msg)
    names = Names.for_columns(frame.columns)
    frame = frame.with_row_index(names.row, offset=1)
    masks = _masks(frame)
    checks = [name for name, _ in CHECKS if masks.get_column(name).any()]
    if checks:
        _refuse(p, frame, masks, checks, names, quarantine_dir)
    table = pl.DataFrame(
        {
            "symbol": frame.get_column("symbol").cast(pl.String).str.strip_chars(),
            "from": masks.get_column("_from"),
            "to": masks.get_column("_to"),
        }
    ).sort("symbol", "from", "to", nulls_last=True)
    ref = store.put(table)
    return IngestResult(
        ref=ref,
        source=str(p),
        source_digest=file_digest(p),
        rows=ref.rows,
        symbols=table.get_column("symbol").n_unique(),
        seconds=time.perf_counter() - started,
        validated=True,
    )


def _refuse(
    path: Path,
    frame: pl.DataFrame,
    masks: pl.DataFrame,
    checks: list[str],
    names: Names,
    quarantine_dir: Path | None,
) -> None:
    failures = []
    for check in checks:
        rows = frame.filter(masks.get_column(check))
        shown = tuple(
            f"{r['symbol']} {r['from']} {r['to']} (row {r[names.row]})"
            for r in rows.head(EXAMPLES).iter_rows(named=True)
        )
        column = dict(CHECKS)[check]
        failures.append(SchemaFailure(check, column, rows.height, shown, "row"))
    failing = pl.any_horizontal([masks.get_column(c) for c in checks])
    labels = pl.concat_str(
        [pl.when(masks.get_column(c)).then(pl.lit(c)) for c in checks],
        separator="; ",
        ignore_nulls=True,
    )
    quarantine = (
        frame.with_columns(labels.alias(names.out_check))
        .filter(failing)
        .rename({names.row: names.out_row})
    )
    qpath = write_quarantine(quarantine_path(quarantine_dir, path.stem), quarantine)
    where = f"; {quarantine.height} rows written to `{qpath}`" if qpath else ""
    parts = "; ".join(f.describe() for f in failures)
    plural = "s" if len(failures) > 1 else ""
    msg = f"membership file `{path}` failed {len(failures)} check{plural}: {parts}{where}"
    raise SchemaValidationError(msg, failures)
