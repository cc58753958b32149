"""Named datasets: ``data import`` stores a validated dataset under a name; ``--data store:NAME``
runs on it.

A name is a pointer file ``<store>/datasets/<NAME>.json`` (written atomically, last, so a name
only ever points at a complete, validated entry) holding the entry's digest and what the import
recorded. Re-importing under the same name moves the pointer; the old entry stays in the store
(and in the ledger) until ``store gc`` finds nothing referencing it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl

from qpipe._fs import write_bytes_atomic
from qpipe.errors import DataFormatError, PathSafetyError, SchemaValidationError, StoreError
from qpipe.ingest.importers import (
    CloseChoice,
    ImportFormat,
    Report,
    check_pieces,
    detect_format,
    load_pieces,
    source_digest,
)
from qpipe.ingest.order import sort_frame
from qpipe.ingest.quarantine import quarantine_path, write_quarantine
from qpipe.ingest.spec import IngestResult
from qpipe.store.arrow import ArrowStore

__all__ = [
    "STORE_PREFIX",
    "ImportResult",
    "check_name",
    "dataset_names",
    "import_dataset",
    "is_store_source",
    "open_named",
]

STORE_PREFIX = "store:"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_FOLDER = "datasets"
_SHOW = 5  # bad files named in the one-line message (all are in `failures`)


@dataclass(frozen=True, slots=True)
class ImportResult:
    """A dataset imported under a name (what the pointer file and the ledger record hold)."""

    name: str
    digest: str
    path: str
    rows: int
    symbols: int
    first_date: str
    last_date: str
    files: int
    format: str
    close: str | None
    source: str
    source_digest: str
    import_id: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_name(name: str) -> str:
    """A dataset name: letters, digits, ``.``, ``_``, ``-``; at most 64 characters."""
    if not isinstance(name, str) or not _NAME.match(name):
        msg = (
            f"dataset name `{name}` is not allowed: use letters, digits, `.`, `_` and `-` "
            "(at most 64, starting with a letter or digit)"
        )
        raise PathSafetyError(msg)
    return name


def is_store_source(source: str) -> bool:
    """Whether ``source`` names a stored dataset (``store:NAME``) rather than a file."""
    return isinstance(source, str) and source.startswith(STORE_PREFIX)


def _pointer(store: ArrowStore, name: str) -> Path:
    return store.subfolder(_FOLDER) / f"{check_name(name)}.json"


def dataset_names(store: ArrowStore) -> list[dict[str, Any]]:
    """Every named dataset in ``store`` (the pointer files' contents), sorted by name."""
    folder = store.root / _FOLDER
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            found.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue  # a damaged pointer is reported when it is used
    return found


def _load_pointer(store: ArrowStore, name: str) -> dict[str, Any]:
    path = _pointer(store, name)
    if not path.is_file():
        known = ", ".join(f"`{d['name']}`" for d in dataset_names(store)) or "none"
        msg = (
            f"no dataset named `{name}` in the store `{store.root}` (known: {known}); import "
            f"one with `python -m qpipe data import SOURCE --name {name}`"
        )
        raise DataFormatError(msg)
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return dict(info) | {"digest": str(info["digest"])}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        msg = f"dataset pointer `{path}` is damaged ({exc}); import `{name}` again"
        raise StoreError(msg) from None


def open_named(source: str, store: ArrowStore) -> IngestResult:
    """The stored dataset ``store:NAME`` as an ingestion result (validated when imported).

    The entry is verified (digest) before it is used; ``validated`` is False because Tier 1 is
    not run again (it ran at import, recorded in the ledger with the same digest).
    """
    started = time.perf_counter()
    name = source.removeprefix(STORE_PREFIX)
    info = _load_pointer(store, name)
    ref = store.ref_for(info["digest"])
    if ref is None:
        msg = f"dataset `{name}` points at store entry {info['digest'][:12]}, which is missing"
        raise StoreError(msg)
    store.verify(ref)
    return IngestResult(
        ref=ref,
        source=source,
        source_digest=ref.digest,
        rows=ref.rows,
        symbols=int(info.get("symbols") or store.open(ref).get_column("symbol").n_unique()),
        seconds=time.perf_counter() - started,
        validated=False,
    )


def _import_id() -> str:
    now = dt.datetime.now(dt.UTC)
    return f"import-{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def _refuse(report: Report, source: Path, qpath: Path | None) -> SchemaValidationError:
    by_file: dict[str, list[str]] = {}
    for f in report.failures:
        by_file.setdefault(f.source or str(source), []).append(f.describe())
    bad = list(by_file)
    shown = " | ".join(f"`{file}`: {'; '.join(by_file[file])}" for file in bad[:_SHOW])
    more = f"; and {len(bad) - _SHOW} more files" if len(bad) > _SHOW else ""
    rows = sum(q.height for q in report.quarantine)
    where = f"; {rows} failing rows written to `{qpath}`" if qpath is not None and rows else ""
    msg = (
        f"import of `{source}` refused, nothing imported: {len(bad)} bad "
        f"file{'s' if len(bad) != 1 else ''}: {shown}{more}{where}"
    )
    return SchemaValidationError(msg, report.failures)


def import_dataset(
    source: str | Path,
    store: ArrowStore,
    *,
    name: str,
    close: CloseChoice | None = None,
    fmt: ImportFormat = "auto",
    quarantine_dir: Path | None = None,
    today: dt.date | None = None,
    record: Callable[[ImportResult], None] | None = None,
) -> ImportResult:
    """Import ``source`` into ``store`` under ``name``, all or nothing.

    Every file is read and checked first; if any file, column, value or row is bad, every
    problem is listed in one :class:`~qpipe.errors.SchemaValidationError` (its ``failures`` name
    each file in ``source``), the failing rows go to ``<quarantine_dir>/<name>.quarantine.arrow``,
    and nothing is stored or named. Otherwise the dataset is stored, ``record(result)`` is called
    (the ledger record), and only then the name is pointed at it.
    """
    started = time.perf_counter()
    check_name(name)
    src = Path(source)
    kind = detect_format(src, fmt)
    pieces, unreadable, files = load_pieces(src, kind)
    report = check_pieces(pieces, close, today=today)
    report.failures[:0] = unreadable
    if report.failures:
        frame = pl.concat(report.quarantine, how="diagonal_relaxed") if report.quarantine else None
        qpath = None
        if frame is not None:
            qpath = write_quarantine(quarantine_path(quarantine_dir, name), frame)
        raise _refuse(report, src, qpath)
    frame = sort_frame(pl.concat(report.good, how="diagonal_relaxed"), ("symbol", "date"))
    ref = store.put(frame)
    dates = frame.get_column("date")
    result = ImportResult(
        name=name,
        digest=ref.digest,
        path=ref.path,
        rows=ref.rows,
        symbols=frame.get_column("symbol").n_unique(),
        first_date=str(dates.min()),
        last_date=str(dates.max()),
        files=len(files),
        format=kind,
        close=close,
        source=str(src),
        source_digest=source_digest(files),
        import_id=_import_id(),
        seconds=round(time.perf_counter() - started, 6),
    )
    if record is not None:
        record(result)
    write_bytes_atomic(_pointer(store, name), json.dumps(result.to_json(), indent=2).encode())
    return result


def ledger_recorder(ledger_path: str | Path) -> Callable[[ImportResult], None]:
    """``record`` for :func:`import_dataset`: one ``data_import`` record per import.

    The record's ``run_id`` is the import id; its data is the :class:`ImportResult` (the digest
    keeps the entry safe from ``store gc``).
    """
    from qpipe.ledger import Ledger, RunRecorder
    from qpipe.ledger.imports import DataImport

    ledger = Ledger(Path(ledger_path))

    def record(result: ImportResult) -> None:
        RunRecorder(ledger, result.import_id).data_import(DataImport(**result.to_json()))

    return record
