"""The public entry points: a price or weights file, or a price frame already in memory.

A file is sniffed (:mod:`~qpipe.ingest.read`), hashed, and its size estimated; above
``batch_rows`` rows it takes the batched path (:mod:`~qpipe.ingest.batched`), otherwise it is read
whole and goes through the in-memory path here: columns, types (:mod:`~qpipe.ingest.normalise`),
sort (:mod:`~qpipe.ingest.order`), the Tier 1 checks (:mod:`qpipe.validation.schema`), quarantine
(:mod:`~qpipe.ingest.quarantine`) and ``ArrowStore.put``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from qpipe.errors import DataFormatError
from qpipe.ingest import batched
from qpipe.ingest.normalise import TypeProblems, check_columns, normalise, raise_types
from qpipe.ingest.order import sort_frame
from qpipe.ingest.quarantine import Failures, quarantine_path, write_quarantine
from qpipe.ingest.read import ReadGuard, file_digest, normalise_names, read_table, sniff
from qpipe.ingest.spec import PRICES, WEIGHTS, IngestResult, Names, Spec
from qpipe.store.arrow import ArrowStore

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "Checked",
    "check_frame",
    "ingest_frame",
    "ingest_prices",
    "ingest_weights",
]

DEFAULT_BATCH_ROWS = 5_000_000


@dataclass(frozen=True)
class Checked:
    """A frame after columns, types, sort and the Tier 1 checks (see :func:`check_frame`).

    ``frame`` still carries the source-row column ``names.row``; ``failures`` and
    ``quarantine`` (the failing rows as the quarantine file shows them) are None when every
    check passed.
    """

    frame: pl.DataFrame
    names: Names
    failures: Failures | None = None
    quarantine: pl.DataFrame | None = None


def check_frame(
    frame: pl.DataFrame,
    spec: Spec,
    *,
    label: str,
    today: dt.date | None,
    validate: bool,
    adjust: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
    rows: pl.Series | None = None,
) -> Checked:
    """Columns, types, sort and Tier 1 checks on a loaded frame, without storing it.

    Missing columns, no rows and wrong types raise (every bad column at once); failing rows are
    returned, not raised, so a caller checking many files can report them all. ``adjust`` runs
    on the typed frame before the checks (the importer's adjusted close); ``rows`` gives each
    row's source row number when it is not its position (a wide file turned long).
    """
    check_columns(frame.columns, spec, label)
    if frame.height == 0:
        msg = f"{spec.what} file `{label}` has a header but no rows"
        raise DataFormatError(msg)
    names = Names.for_columns(frame.columns)
    if rows is None:
        frame = frame.with_row_index(names.row, offset=1)
    else:
        frame = frame.with_columns(rows.cast(pl.UInt32).alias(names.row))
    problems = TypeProblems()
    frame = normalise(frame, spec, problems, names)
    raise_types(problems, spec, label)
    if adjust is not None:
        frame = adjust(frame)
    frame = sort_frame(frame, spec.sort_by)
    masks = spec.validate(frame, today, True) if validate else None
    if masks is None:
        return Checked(frame, names)
    failures = Failures(names)
    return Checked(frame, names, failures, failures.add(frame, masks))


def _ingest_loaded(
    frame: pl.DataFrame,
    store: ArrowStore,
    spec: Spec,
    *,
    label: str,
    stem: str,
    digest: str | None,
    quarantine_dir: Path | None,
    today: dt.date | None,
    validate: bool,
    started: float,
) -> IngestResult:
    checked = check_frame(frame, spec, label=label, today=today, validate=validate)
    if checked.failures is not None and checked.quarantine is not None:
        qpath = write_quarantine(quarantine_path(quarantine_dir, stem), checked.quarantine)
        raise checked.failures.error(spec, label, qpath)
    frame = checked.frame.drop(checked.names.row)
    ref = store.put(frame)
    return IngestResult(
        ref=ref,
        source=label,
        source_digest=digest or ref.digest,
        rows=ref.rows,
        symbols=frame.get_column("symbol").n_unique(),
        seconds=time.perf_counter() - started,
        validated=validate,
        quarantine=None,
    )


def ingest_frame(
    frame: pl.DataFrame,
    store: ArrowStore,
    *,
    name: str = "builtin",
    quarantine_dir: Path | None = None,
    today: dt.date | None = None,
    validate: bool = True,
) -> IngestResult:
    """Normalise, validate and store a price frame already in memory (e.g. the built-in data).

    The same column, type and Tier 1 rules as :func:`ingest_prices` apply; ``name`` stands for
    the file name in messages and names the quarantine file (``<name>.quarantine.arrow``).

    Raises
    ------
    SchemaValidationError
        Missing columns, wrong types, or failed checks (every one listed).
    DataFormatError
        The frame has no rows.
    """
    started = time.perf_counter()
    if not isinstance(frame, pl.DataFrame):
        msg = f"`ingest_frame` needs a polars DataFrame for `{name}`, got {type(frame).__name__}"
        raise DataFormatError(msg)
    frame = normalise_names(frame, name, "prices")
    return _ingest_loaded(
        frame,
        store,
        PRICES,
        label=name,
        stem=name,
        digest=None,
        quarantine_dir=quarantine_dir,
        today=today,
        validate=validate,
        started=started,
    )


def _ingest_file(
    path: str | Path,
    store: ArrowStore,
    spec: Spec,
    *,
    quarantine_dir: Path | None,
    today: dt.date | None,
    validate: bool,
    batch_rows: int,
    digest: str | None = None,
) -> IngestResult:
    started = time.perf_counter()
    p = Path(path)
    kind = sniff(p, spec.what)
    if batch_rows < 1:
        msg = f"`batch_rows` must be positive, got {batch_rows}"
        raise DataFormatError(msg)
    digest = digest or file_digest(p)
    with ReadGuard(p, kind, spec.what):
        estimate = batched.estimated_rows(p, kind)
    if spec is PRICES and estimate > batch_rows:
        return batched.ingest_batched(
            p,
            kind,
            store,
            spec,
            digest=digest,
            quarantine_dir=quarantine_dir,
            today=today,
            validate=validate,
            batch_rows=batch_rows,
            started=started,
        )
    frame = read_table(p, what=spec.what)
    return _ingest_loaded(
        frame,
        store,
        spec,
        label=str(p),
        stem=p.stem,
        digest=digest,
        quarantine_dir=quarantine_dir,
        today=today,
        validate=validate,
        started=started,
    )


def ingest_prices(
    path: str | Path,
    store: ArrowStore,
    *,
    quarantine_dir: Path | None = None,
    today: dt.date | None = None,
    validate: bool = True,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    source_digest: str | None = None,
) -> IngestResult:
    """Ingest a CSV, Parquet or Arrow IPC price file into ``store`` (Tier 1).

    Parameters
    ----------
    path
        The file; its extension picks the reader and its magic bytes must agree.
    store
        Where the validated, sorted prices are written.
    quarantine_dir
        Where failing rows go (``<stem>.quarantine.arrow``); None writes no quarantine file.
    today
        Dates after this day fail (default: today's local date).
    validate
        False skips the Tier 1 checks (for a file whose digest already passed); types are
        still normalised and rows sorted.
    batch_rows
        Files estimated above this many rows are converted and validated in batches of this
        size, with bounded memory.
    source_digest
        The file's :func:`file_digest`, when the caller has just computed it (a run looks it up
        in the ledger first): the file is then not hashed a second time.

    Returns
    -------
    IngestResult

    Raises
    ------
    DataFormatError
        The file is missing, empty, header-only, corrupt, truncated, not UTF-8, not what its
        extension says, or uses another delimiter.
    SchemaValidationError
        Missing columns, wrong types, or failed checks (every one listed, failing rows
        quarantined).

    Examples
    --------
    >>> result = ingest_prices("prices.csv", ArrowStore("store"))  # doctest: +SKIP
    >>> result.ref.rows, result.symbols  # doctest: +SKIP
    (2520, 10)
    """
    return _ingest_file(
        path,
        store,
        PRICES,
        quarantine_dir=quarantine_dir,
        today=today,
        validate=validate,
        batch_rows=batch_rows,
        digest=source_digest,
    )


def ingest_weights(
    path: str | Path,
    store: ArrowStore,
    *,
    quarantine_dir: Path | None = None,
    validate: bool = True,
) -> IngestResult:
    """Ingest an external weights file (``date``, ``symbol``, ``weight``) into ``store``.

    Same reading rules as :func:`ingest_prices`. Tier 1 checks only the format: column types,
    non-null keys and weights. NaN or infinite weights, duplicates, unknown symbols and dates
    without prices are left to the Tier 2 audit. Rows are sorted by ``(date, symbol)``.
    """
    return _ingest_file(
        path,
        store,
        WEIGHTS,
        quarantine_dir=quarantine_dir,
        today=None,
        validate=validate,
        batch_rows=1 << 62,
    )
