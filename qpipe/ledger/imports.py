"""The ``data_import`` record: a dataset stored under a name by ``python -m qpipe data import``.

Kept apart from :mod:`qpipe.ledger.payloads` (the run's records) only for size; it is written by
:meth:`~qpipe.ledger.recorder.RunRecorder.data_import`. :data:`LATER_PAYLOADS` lists the kinds
kept in modules of their own (this one and :mod:`~qpipe.ledger.payloads_sweep`) for the docs'
kinds table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from qpipe.ledger.payloads import Payload
from qpipe.ledger.payloads_sweep import SWEEP_PAYLOADS

__all__ = ["LATER_PAYLOADS", "DataImport"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DataImport(Payload):
    """`data import` stored a validated dataset under a name (its `run_id` is the import id)."""

    KIND: ClassVar[str] = "data_import"
    OPENS: ClassVar[bool] = True
    ENDS: ClassVar[bool] = True
    OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"close"})

    name: str = field(metadata={"doc": "the dataset name (`--data store:NAME`)"})
    digest: str = field(metadata={"doc": "SHA-256 of the stored Arrow file"})
    path: str = field(metadata={"doc": "its store entry"})
    rows: int = field(metadata={"doc": "row count"})
    symbols: int = field(metadata={"doc": "distinct symbols"})
    first_date: str = field(metadata={"doc": "first price date"})
    last_date: str = field(metadata={"doc": "last price date"})
    files: int = field(metadata={"doc": "input files read"})
    format: str = field(metadata={"doc": "`vendor`, `wide` or `long`"})
    close: str | None = field(
        default=None, metadata={"doc": "`adjusted` or `raw`, when the input had both closes"}
    )
    source: str = field(metadata={"doc": "the input folder or file"})
    source_digest: str = field(
        metadata={"doc": "SHA-256 of the input file, or of `<digest>  <name>` lines of a folder's"}
    )
    import_id: str = field(metadata={"doc": "the import's id (also the record's `run_id`)"})
    seconds: float = field(metadata={"doc": "time taken"})


LATER_PAYLOADS: tuple[type[Payload], ...] = (DataImport, *SWEEP_PAYLOADS)
