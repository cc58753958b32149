"""``data import``: what users actually have, turned into one long, validated price table.

Three shapes are read (:func:`load_pieces`), each into one or more *pieces* (one per file):

- **vendor**: a folder of per-symbol CSV exports with ``Date, Open, High, Low, Close,
  Adj Close, Volume`` (any case; ``Adj Close`` optional); the symbol is the file name's stem.
- **wide**: one CSV or Parquet file, a date column and one close column per symbol; an empty
  cell means "no price that day" (not listed, or a holiday for that market).
- **long**: one CSV, Parquet or Arrow file in qpipe's own format (``date, symbol, close``...).

Where a file has both a close and an adjusted close, the user must say which is the close
(``close="adjusted"`` or ``"raw"``): an adjusted close also scales ``open``/``high``/``low`` by
``adj close / close`` on that row, so the bar stays consistent; volume is left as reported.

Every piece goes through the same columns, types, sort and Tier 1 checks as ``--data``
(:func:`~qpipe.ingest.core.check_frame`); every bad file and row of every piece is collected
before anything is decided, so one error lists them all (:func:`check_pieces`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl

from qpipe.errors import DataFormatError, QpipeError, SchemaFailure, SchemaValidationError
from qpipe.ingest.core import Checked, check_frame
from qpipe.ingest.read import ReadGuard, file_digest, normalise_names, read_table, sniff
from qpipe.ingest.spec import PRICES, Spec

__all__ = [
    "CLOSE_CHOICES",
    "FORMATS",
    "CloseChoice",
    "ImportFormat",
    "Piece",
    "check_pieces",
    "detect_format",
    "load_pieces",
    "source_digest",
]

CloseChoice = Literal["adjusted", "raw"]
ImportFormat = Literal["auto", "vendor", "wide", "long"]
CLOSE_CHOICES: tuple[CloseChoice, ...] = ("adjusted", "raw")
FORMATS: tuple[ImportFormat, ...] = ("auto", "vendor", "wide", "long")
ADJ = "adj_close"
_ADJ_NAMES = ("adj close", "adj_close", "adjclose", "adjusted close", "adjusted_close")
_DATE_NAMES = ("date", "day", "dt", "timestamp", "datetime", "trade_date", "")
# The import's table: prices, with the adjusted close parsed as a number too.
IMPORT = Spec(
    PRICES.what, PRICES.required, PRICES.sort_by, PRICES.validate, (*PRICES.optional, ADJ)
)


@dataclass(frozen=True)
class Piece:
    """One input file loaded as a long frame (names normalised, values as read)."""

    label: str
    frame: pl.DataFrame
    rows: pl.Series | None = None  # source row numbers, when not the frame's positions


def detect_format(source: Path, fmt: ImportFormat) -> ImportFormat:
    """``auto``: a folder is vendor exports; a file with a `symbol` column is long, else wide."""
    if fmt != "auto":
        return fmt
    if source.is_dir():
        return "vendor"
    kind = sniff(source, "prices")
    with ReadGuard(source, kind, "prices"):
        if kind == "csv":
            columns = pl.read_csv(source, n_rows=0, infer_schema=False).columns
        elif kind == "parquet":
            columns = list(pl.read_parquet_schema(source))
        else:
            columns = list(pl.read_ipc_schema(source))
    return "long" if "symbol" in {c.strip().lower() for c in columns} else "wide"


def source_digest(files: list[Path]) -> str:
    """SHA-256 of the inputs: one file's digest, or of ``<digest>  <name>`` lines for several."""
    if len(files) == 1:
        return file_digest(files[0])
    lines = "".join(f"{file_digest(f)}  {f.name}\n" for f in sorted(files))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


# ------------------------------------------------------------------------------- loading


def load_pieces(
    source: Path, fmt: ImportFormat
) -> tuple[list[Piece], list[SchemaFailure], list[Path]]:
    """Read ``source`` as ``fmt`` into pieces; unreadable files become failures, not errors."""
    if fmt == "vendor":
        return _vendor_pieces(source)
    if not source.is_file():
        msg = f"`{source}` is not a file; a folder is imported with `--format vendor`"
        raise DataFormatError(msg)
    piece = _wide_piece(source) if fmt == "wide" else Piece(str(source), read_table(source))
    return [piece], [], [source]


def _vendor_pieces(folder: Path) -> tuple[list[Piece], list[SchemaFailure], list[Path]]:
    if not folder.is_dir():
        msg = f"`{folder}` is not a folder of per-symbol CSV files"
        raise DataFormatError(msg)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".csv")
    if not files:
        msg = f"folder `{folder}` has no `.csv` files (one per symbol, named after it)"
        raise DataFormatError(msg)
    pieces: list[Piece] = []
    bad: list[SchemaFailure] = []
    for path in files:
        try:
            frame = read_table(path)
        except QpipeError as exc:
            bad.append(SchemaFailure(str(exc), None, kind="file", source=str(path)))
            continue
        symbol = pl.lit(path.stem, dtype=pl.String).alias("symbol")
        pieces.append(Piece(str(path), frame.with_columns(symbol)))
    return pieces, bad, files


def _wide_piece(path: Path) -> Piece:
    """Read a wide file (date x symbols) and turn it long: one row per non-empty cell."""
    kind = sniff(path, "prices")
    with ReadGuard(path, kind, "prices"):
        if kind == "csv":
            frame = pl.read_csv(path, infer_schema=False, raise_if_empty=True)
        elif kind == "parquet":
            frame = pl.read_parquet(path)
        else:
            frame = pl.read_ipc(path)
    date_col = frame.columns[0]
    if date_col.strip().lower() not in _DATE_NAMES:
        msg = (
            f"wide file `{path}` must have the dates in its first column (named `date`); "
            f"found `{date_col}`"
        )
        raise DataFormatError(msg)
    symbols = frame.columns[1:]
    if not symbols:
        msg = f"wide file `{path}` has no symbol columns after `{date_col}`"
        raise DataFormatError(msg)
    values = frame.select(symbols)
    numeric = all(dtype.is_numeric() for dtype in values.schema.values())
    cast = pl.Float64 if numeric else pl.String
    long = (
        frame.with_row_index("__row", offset=1)
        .rename({date_col: "date"})
        .with_columns(pl.col(symbols).cast(cast))
        .unpivot(index=["__row", "date"], variable_name="symbol", value_name="close")
        .filter(pl.col("close").is_not_null())
        .sort("__row", maintain_order=True)
    )
    return Piece(str(path), long.drop("__row"), long.get_column("__row"))


# ------------------------------------------------------------------------------- checking


def _adj_column(columns: list[str]) -> str | None:
    return next((c for c in columns if c.strip().lower() in _ADJ_NAMES), None)


def _require_close_choice(pieces: list[Piece], close: CloseChoice | None) -> None:
    """Both a close and an adjusted close, and no choice made: the user must decide."""
    if close is not None:
        return
    for piece in pieces:
        adj = _adj_column(piece.frame.columns)
        if adj is not None:
            msg = (
                f"prices file `{piece.label}` has both a close and an adjusted close (`{adj}`): "
                "say which is the close with `--close adjusted` or `--close raw`"
            )
            raise DataFormatError(msg)


def _with_adjustment(piece: Piece, close: CloseChoice | None) -> tuple[Piece, Callable | None]:
    """Resolve the close column of ``piece`` as the user chose; the adjustment to apply."""
    frame = normalise_names(piece.frame, piece.label, "prices")
    adj = _adj_column(frame.columns)
    if adj is None:
        if close == "adjusted":
            msg = (
                f"prices file `{piece.label}` has no adjusted close column (`Adj Close`) "
                "for `--close adjusted`"
            )
            raise DataFormatError(msg)
        return Piece(piece.label, frame, piece.rows), None
    if close == "raw":
        return Piece(piece.label, frame.drop(adj), piece.rows), None
    return Piece(piece.label, frame.rename({adj: ADJ}), piece.rows), _adjust


def _adjust(frame: pl.DataFrame) -> pl.DataFrame:
    """Close := adjusted close; open/high/low scaled by the same factor on each row."""
    factor = pl.col(ADJ) / pl.col("close")
    scaled = [(pl.col(c) * factor).alias(c) for c in ("open", "high", "low") if c in frame.columns]
    return frame.with_columns(*scaled, pl.col(ADJ).alias("close")).drop(ADJ)


@dataclass
class Report:
    """What checking every piece found: good frames, failures, the failing rows."""

    good: list[pl.DataFrame]
    failures: list[SchemaFailure]
    quarantine: list[pl.DataFrame]


def check_pieces(
    pieces: list[Piece], close: CloseChoice | None, *, today: dt.date | None
) -> Report:
    """Check every piece; collect every bad file, column, value and row (nothing raised for them).

    A close choice that is missing or impossible raises at once: it is the user's decision, and
    every file would report it.
    """
    _require_close_choice(pieces, close)
    report = Report([], [], [])
    for raw in pieces:
        try:
            piece, adjust = _with_adjustment(raw, close)
            checked = check_frame(
                piece.frame,
                IMPORT,
                label=piece.label,
                today=today,
                validate=True,
                adjust=adjust,
                rows=piece.rows,
            )
        except (SchemaValidationError, DataFormatError) as exc:
            report.failures.extend(_file_failures(exc, raw.label))
            continue
        _note(report, checked, raw.label)
    return report


def _file_failures(exc: QpipeError, label: str) -> list[SchemaFailure]:
    found = getattr(exc, "failures", ()) or (SchemaFailure(str(exc), None, kind="file"),)
    return [_from(f, label) for f in found]


def _from(f: SchemaFailure, label: str) -> SchemaFailure:
    return SchemaFailure(f.check, f.column, f.count, f.examples, f.kind, label)


def _note(report: Report, checked: Checked, label: str) -> None:
    if checked.failures is None or checked.quarantine is None:
        report.good.append(checked.frame.drop(checked.names.row))
        return
    report.failures.extend(_from(f, label) for f in checked.failures.records())
    file_col = "file" if "file" not in checked.quarantine.columns else "source_file"
    report.quarantine.append(checked.quarantine.with_columns(pl.lit(label).alias(file_col)))
