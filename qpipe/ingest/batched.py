"""The batched path: files estimated above ``batch_rows`` rows, with bounded memory.

1. Pass 1 streams the file in batches that are normalised, row-checked and appended to a
   staging Arrow file (failing rows go to the quarantine writer), noting whether the input is
   already sorted.
2. If it was not, the staging file is sorted by Polars' streaming engine on the packed key.
3. Pass 2 streams the sorted file, checks uniqueness within each batch and across batch
   boundaries, and writes the store entry in the store's own batch layout, so both paths give the
   same digest for the same data.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc

from qpipe.errors import DataFormatError, StoreError
from qpipe.ingest.normalise import TypeProblems, check_columns, normalise, raise_types
from qpipe.ingest.order import is_sorted, key_le, sort_key
from qpipe.ingest.quarantine import Failures, QuarantineWriter, quarantine_path
from qpipe.ingest.read import FileKind, ReadGuard, normalise_names
from qpipe.ingest.spec import EXAMPLES, PRICES, IngestResult, Names, Spec
from qpipe.store.arrow import BATCH_ROWS, ArrowStore
from qpipe.validation.schema import UNIQUE_CHECK, duplicate_mask, has_duplicates

__all__ = ["estimated_rows", "ingest_batched"]


def estimated_rows(path: Path, kind: FileKind) -> int:
    """Row count from metadata (Parquet, Arrow) or from the size and mean line length (CSV)."""
    if kind == "parquet":
        return int(pl.scan_parquet(path).select(pl.len()).collect().item())
    if kind == "ipc":
        with pa.memory_map(str(path), "r") as source:
            reader = ipc.open_file(source)
            return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
    size = path.stat().st_size
    with path.open("rb") as f:
        sample = f.read(1 << 16)
    lines = max(sample.count(b"\n"), 1)
    return int(size / (len(sample) / lines))


def _scan(path: Path, kind: FileKind) -> pl.LazyFrame:
    if kind == "csv":
        return pl.scan_csv(path, infer_schema=False)
    if kind == "parquet":
        return pl.scan_parquet(path)
    return pl.scan_ipc(path)


def _batches(path: Path, kind: FileKind, batch_rows: int) -> Iterator[pl.DataFrame]:
    yield from _scan(path, kind).collect_batches(chunk_size=batch_rows)


class _StagingWriter:
    """Writes typed batches into one Arrow IPC file (unsorted staging or the final entry)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sink: BinaryIO | None = None
        self._writer: ipc.RecordBatchFileWriter | None = None

    def write(self, frame: pl.DataFrame) -> None:
        if frame.height == 0:
            return
        # The store's own layout (string_view, one chunk), so both paths give equal digests.
        table = frame.rechunk().to_arrow(compat_level=pl.CompatLevel.newest())
        if self._writer is None:
            self._sink = self.path.open("wb")
            self._writer = ipc.new_file(self._sink, table.schema)
            self._schema = table.schema
        elif table.schema != self._schema:
            table = table.cast(self._schema)
        self._writer.write_table(table, max_chunksize=BATCH_ROWS)

    def abort(self) -> None:
        if self._sink is not None and not self._sink.closed:
            self._sink.close()

    def close(self) -> bool:
        if self._writer is None or self._sink is None:
            return False
        self._writer.close()
        self._sink.flush()
        os.fsync(self._sink.fileno())
        self._sink.close()
        return True


@dataclass
class _Job:
    """One batched ingestion: its inputs, its scratch folder and what the passes found."""

    path: Path
    kind: FileKind
    spec: Spec
    work: Path
    quarantine: QuarantineWriter
    today: dt.date | None
    validate: bool
    batch_rows: int
    writers: list[_StagingWriter] = field(default_factory=list)
    names: Names = field(default_factory=Names)
    failures: Failures = field(default_factory=lambda: Failures(Names()))
    sorted_input: bool = True
    symbols_seen: set[str] = field(default_factory=set)

    @property
    def label(self) -> str:
        return str(self.path)

    def writer(self, name: str) -> _StagingWriter:
        w = _StagingWriter(self.work / name)
        self.writers.append(w)
        return w


def _make_work_dir(store: ArrowStore, label: str) -> Path:
    staging_dir = store.subfolder("tmp")  # never through a symlink
    try:
        return Path(tempfile.mkdtemp(prefix="ingest.", dir=staging_dir))
    except OSError as exc:
        msg = f"cannot stage `{label}` in the store `{store.root}`: {exc.strerror or exc}"
        raise StoreError(msg) from None


def ingest_batched(
    path: Path,
    kind: FileKind,
    store: ArrowStore,
    spec: Spec,
    *,
    digest: str,
    quarantine_dir: Path | None,
    today: dt.date | None,
    validate: bool,
    batch_rows: int,
    started: float,
) -> IngestResult:
    """Ingest ``path`` batch by batch (see the module docstring); same result as in memory."""
    work = _make_work_dir(store, str(path))
    quarantine = QuarantineWriter(quarantine_path(quarantine_dir, path.stem))
    job = _Job(path, kind, spec, work, quarantine, today, validate, batch_rows)
    try:
        with ReadGuard(path, kind, spec.what):
            entry, rows, symbols = _run_passes(job)
        if job.failures:
            raise job.failures.error(spec, job.label, quarantine.close())
        quarantine.abort()
        assert entry is not None
        ref = store.adopt(entry)
    except BaseException:
        quarantine.abort()
        raise
    finally:
        for writer in job.writers:
            writer.abort()
        for leftover in work.glob("*"):
            leftover.unlink(missing_ok=True)
        work.rmdir()
    return IngestResult(
        ref=ref,
        source=job.label,
        source_digest=digest,
        rows=rows,
        symbols=symbols,
        seconds=time.perf_counter() - started,
        validated=validate,
        quarantine=None,
    )


def _run_passes(job: _Job) -> tuple[Path | None, int, int]:
    staged = _pass_one(job)
    if not job.sorted_input:
        staged = _sort_staged(job, staged)
    return _pass_two(job, staged)


def _first_batch(job: _Job, batch: pl.DataFrame) -> None:
    check_columns(batch.columns, job.spec, job.label)
    job.names = Names.for_columns(batch.columns)
    job.failures = Failures(job.names)


def _pass_one(job: _Job) -> Path:
    """Normalise, row-check and stage every batch; return the staging file."""
    problems = TypeProblems()
    staging = job.writer("staging.arrow")
    offset = 1
    last_key: tuple | None = None
    by = list(job.spec.sort_by)
    columns: list[str] | None = None
    for raw in _batches(job.path, job.kind, job.batch_rows):
        batch = normalise_names(raw, job.label, job.spec.what)
        if columns is None:
            columns = batch.columns
            _first_batch(job, batch)
        batch = batch.with_row_index(job.names.row, offset=offset)
        offset += batch.height
        batch = normalise(batch, job.spec, problems, job.names)
        if problems:
            continue  # keep counting type problems; nothing else is trustworthy
        if job.sorted_input:
            first = tuple(batch.row(0)[batch.columns.index(c)] for c in by)
            job.sorted_input = is_sorted(batch, by) and (
                last_key is None or key_le(last_key, first)
            )
            last_key = tuple(batch.row(-1)[batch.columns.index(c)] for c in by)
        if job.validate:
            masks = job.spec.validate(batch, job.today, False)
            if masks is not None:
                job.quarantine.write(job.failures.add(batch, masks))
        job.symbols_seen.update(batch.get_column("symbol").drop_nulls().unique().to_list())
        staging.write(batch)
    if columns is None:
        _no_rows(job)
    raise_types(problems, job.spec, job.label)
    staging.close()
    return staging.path


def _no_rows(job: _Job) -> None:
    with job.path.open("rb") as f:
        header = f.readline().decode("utf-8", "replace")
    cols = [c.strip().lower() for c in header.split(",")] if job.kind == "csv" else []
    if cols:
        check_columns(cols, job.spec, job.label)
    msg = f"{job.spec.what} file `{job.label}` has a header but no rows"
    raise DataFormatError(msg)


def _sort_staged(job: _Job, source: Path) -> Path:
    """Sort the staging file out of core (only when the input was not already sorted)."""
    sorted_path = job.work / "sorted.arrow"
    categories = pl.Series(sorted(job.symbols_seen), dtype=pl.String)
    key = job.names.temp("__qpipe_key", pl.scan_ipc(source).collect_schema().names())
    (
        pl.scan_ipc(source)
        .with_columns(sort_key(job.spec.sort_by, categories).alias(key))
        .sort([key, job.names.row])
        .drop(key)
        .sink_ipc(sorted_path, compression="uncompressed", engine="streaming")
    )
    source.unlink()
    return sorted_path


def _pass_two(job: _Job, source: Path) -> tuple[Path | None, int, int]:
    """Check uniqueness across batches on the sorted keys; write the store entry."""
    out = job.writer("entry.arrow")
    buffer: list[pl.DataFrame] = []
    buffered = rows = symbols = 0
    carry: pl.DataFrame | None = None  # last row of the previous batch
    carry_flagged = False
    last_symbol: str | None = None
    for batch in pl.scan_ipc(source).collect_batches(chunk_size=job.batch_rows):
        if batch.height == 0:
            continue
        if job.validate and job.spec is PRICES:
            carry_flagged = _check_boundary_duplicates(job, batch, carry, carry_flagged)
            carry = batch.tail(1)
        symbol_col = batch.get_column("symbol")
        symbols += symbol_col.n_unique() - (
            1 if last_symbol is not None and symbol_col[0] == last_symbol else 0
        )
        last_symbol = symbol_col[-1]
        rows += batch.height
        if job.failures:
            continue  # nothing will be stored; only keep finding duplicates
        buffer.append(batch.drop(job.names.row))
        buffered += batch.height
        while buffered >= BATCH_ROWS:  # the store's batch layout, so digests match `put`
            joined = pl.concat(buffer)
            out.write(joined.head(BATCH_ROWS))
            rest = joined.slice(BATCH_ROWS)
            buffer, buffered = ([rest] if rest.height else []), rest.height
    if buffer and not job.failures:
        out.write(pl.concat(buffer))
    written = out.close()
    return (out.path if written and not job.failures else None), rows, symbols


def _check_boundary_duplicates(
    job: _Job, batch: pl.DataFrame, carry: pl.DataFrame | None, carry_flagged: bool
) -> bool:
    """Find duplicates in a sorted batch and across its boundary with the previous one.

    ``carry`` is the previous batch's last row and ``carry_flagged`` whether it was already
    quarantined. Returns whether this batch's last row is a duplicate (quarantined).
    """
    both = batch if carry is None else pl.concat([carry, batch])
    if not has_duplicates(both):  # one aggregate; the mask only when there is something to mark
        return False
    dup = duplicate_mask(both)
    same = (
        (both.get_column("symbol") == both.get_column("symbol").shift(1))
        & (both.get_column("date") == both.get_column("date").shift(1))
    ).fill_null(False)
    flagged = both.filter(dup)
    if carry is not None and dup[0] and carry_flagged:
        flagged = flagged.slice(1)  # the previous batch already quarantined its last row
    keys = both.filter(dup).select("symbol", "date").unique(maintain_order=True)
    job.failures.add_duplicates(
        int(same.sum()), [f"{d} {s}" for s, d in keys.head(EXAMPLES).iter_rows()]
    )
    rows = job.failures.for_quarantine(
        flagged.with_columns(pl.lit(UNIQUE_CHECK).alias(job.names.out_check))
    )
    job.quarantine.write(rows)
    job.failures.rows += rows.height
    return bool(dup[-1])
