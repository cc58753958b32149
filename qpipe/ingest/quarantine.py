"""Failing rows: counted per check for the error message, and written to a quarantine file.

The quarantine file ``<quarantine_dir>/<stem>.quarantine.arrow`` holds every failing row with
its typed columns, its 1-based source row (``row``) and every check it fails (``failed_check``,
``; ``-separated). It is written to a temp file and renamed into place only when complete.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO

import polars as pl
import pyarrow.ipc as ipc

from qpipe._fs import fsync_dir
from qpipe.errors import DataFormatError, SchemaFailure, SchemaValidationError, StoreError
from qpipe.ingest.spec import EXAMPLES, Names, Spec
from qpipe.store.arrow import write_ipc_atomic
from qpipe.validation.schema import UNIQUE_CHECK

__all__ = ["Failures", "QuarantineWriter", "quarantine_path", "write_quarantine"]

_CHECK_COLUMN = re.compile(r"^`([^`]+)`")


def _render_row(row: dict, check: str, row_col: str) -> str:
    date = row.get("date")
    symbol = row.get("symbol")
    head = f"{date if date is not None else 'null'} {symbol if symbol is not None else 'null'}"
    if check == UNIQUE_CHECK:
        return head
    shown = [c for c in ("close", "open", "high", "low", "volume", "weight") if c in row]
    for col in shown:
        if check.startswith(f"`{col}`"):
            shown = [col]
            break
    else:
        if "`symbol`" in check or "`date`" in check:
            shown = []
    values = " ".join(f"{c}={row[c]}" for c in shown)
    return f"{head} {values} (row {row[row_col]})".replace("  ", " ")


def _column_of(check: str) -> str | None:
    """The column a check's label names first (`close` for "`close` finite and > 0")."""
    found = _CHECK_COLUMN.match(check)
    return found.group(1) if found else None


class Failures:
    """Accumulates failing checks (counts and examples) over one or many batches."""

    def __init__(self, names: Names) -> None:
        self.names = names
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list[str]] = {}
        self.rows = 0

    def add(self, frame: pl.DataFrame, masks: pl.DataFrame) -> pl.DataFrame:
        """Record the failures of one batch; return its quarantine rows."""
        row_col = self.names.row
        for name in masks.columns:
            failing = frame.filter(masks.get_column(name))
            if name == UNIQUE_CHECK:
                keys = failing.select("symbol", "date").unique(maintain_order=True)
                count = failing.height - keys.height
                rendered = [f"{d} {s}" for s, d in keys.head(EXAMPLES).iter_rows()]
            else:
                count = failing.height
                first = failing.bottom_k(EXAMPLES, by=row_col).iter_rows(named=True)
                rendered = [_render_row(r, name, row_col) for r in first]
            self._note(name, count, rendered)
        failed = pl.concat_str(
            [pl.when(masks.get_column(n)).then(pl.lit(n)) for n in masks.columns],
            separator="; ",
            ignore_nulls=True,
        )
        any_failed = pl.any_horizontal([masks.get_column(n) for n in masks.columns])
        quarantine = self.for_quarantine(
            frame.with_columns(failed.alias(self.names.out_check)).filter(any_failed)
        )
        self.rows += quarantine.height
        return quarantine

    def for_quarantine(self, rows: pl.DataFrame) -> pl.DataFrame:
        """``rows`` (with the internal row column) as the quarantine file shows them."""
        return rows.rename({self.names.row: self.names.out_row})

    def add_duplicates(self, count: int, examples: list[str]) -> None:
        self._note(UNIQUE_CHECK, count, examples)

    def _note(self, check: str, count: int, examples: list[str]) -> None:
        self.counts[check] = self.counts.get(check, 0) + count
        shown = self.examples.setdefault(check, [])
        shown.extend(examples[: EXAMPLES - len(shown)])

    def __bool__(self) -> bool:
        return bool(self.counts)

    def records(self) -> list[SchemaFailure]:
        """One typed record per failed check, in the order the checks first failed."""
        return [
            SchemaFailure(
                name,
                None if name == UNIQUE_CHECK else _column_of(name),
                self.counts[name],
                tuple(self.examples.get(name, ())),
                "row",
            )
            for name in self.counts
        ]

    def error(self, spec: Spec, label: str, quarantine: Path | None) -> SchemaValidationError:
        failures = self.records()
        n = len(failures)
        parts = "; ".join(f.describe() for f in failures)
        where = (
            f"; {self.rows} failing rows written to `{quarantine}`"
            if quarantine is not None
            else "; pass a quarantine folder to keep the failing rows"
        )
        msg = f"{spec.what} `{label}` failed {n} check{'s' if n > 1 else ''}: {parts}{where}"
        return SchemaValidationError(msg, failures)


def _safe_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip(".") or "data"
    return stem[:100]


def quarantine_path(quarantine_dir: Path | None, stem: str) -> Path | None:
    """``<quarantine_dir>/<stem>.quarantine.arrow`` with a sanitised stem, or None."""
    if quarantine_dir is None:
        return None
    return Path(quarantine_dir) / f"{_safe_stem(stem)}.quarantine.arrow"


class QuarantineWriter:
    """Appends quarantine rows to a temp file; renamed into place only when complete."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._tmp: Path | None = None
        self._file: BinaryIO | None = None
        self._writer: ipc.RecordBatchFileWriter | None = None

    def write(self, frame: pl.DataFrame) -> None:
        try:
            self._write(frame)
        except OSError as exc:
            msg = f"cannot write quarantine file `{self.path}`: {exc.strerror or exc}"
            raise DataFormatError(msg) from None

    def _write(self, frame: pl.DataFrame) -> None:
        if self.path is None or frame.height == 0:
            return
        table = frame.to_arrow(compat_level=pl.CompatLevel.newest())
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
            )
            self._tmp = Path(name)
            self._file = os.fdopen(fd, "wb")
            self._writer = ipc.new_file(self._file, table.schema)
            self._schema = table.schema
        self._writer.write_table(
            table.cast(self._schema) if table.schema != self._schema else table
        )

    def close(self) -> Path | None:
        if self._writer is None or self._file is None or self._tmp is None or self.path is None:
            return None
        try:
            return self._close()
        except OSError as exc:
            msg = f"cannot write quarantine file `{self.path}`: {exc.strerror or exc}"
            raise DataFormatError(msg) from None

    def _close(self) -> Path | None:
        assert self._writer is not None and self._file is not None and self._tmp is not None
        assert self.path is not None
        self._writer.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self.path)
        fsync_dir(self.path.parent)  # the rename survives a crash, as every atomic write's does
        self._tmp = self._file = self._writer = None
        return self.path

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)


def write_quarantine(path: Path | None, frame: pl.DataFrame) -> Path | None:
    """Write a whole quarantine frame atomically (the in-memory path); None writes nothing."""
    if path is None:
        return None
    try:
        write_ipc_atomic(frame, path)
    except StoreError as exc:
        msg = f"cannot write quarantine file `{path}`: {exc}"
        raise DataFormatError(msg) from None
    return path
