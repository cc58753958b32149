"""Reading inputs: a price or weights file (or a frame), normalised, validated and stored.

The steps, in order, the module that does each, and what fails where:

1. **Open** (:mod:`~qpipe.ingest.read`): the file must exist, be a non-empty *regular* file (a
   FIFO or device is refused before it is opened: it would block), have a supported extension
   (``.csv``, ``.parquet``/``.pq``, ``.arrow``/``.ipc``/``.feather``) and *be* what the extension
   says: the magic bytes (``PAR1``, ``ARROW1``) are sniffed at both ends, so a renamed or
   truncated file is caught before a reader sees it. Failures are
   :class:`~qpipe.errors.DataFormatError`.
2. **Read**: CSV as text only (every column a string, so no type is guessed), UTF-8 only, and a
   header that names no column twice; Parquet and Arrow as typed. An unreadable file, a wrong
   encoding or delimiter, a file with a header and no rows, running out of memory:
   ``DataFormatError``.
3. **Columns** (:mod:`~qpipe.ingest.normalise`): names are trimmed and lower-cased; a missing
   required column is reported with what was found and the closest names:
   :class:`~qpipe.errors.SchemaValidationError`.
4. **Types**: dates must be ISO ``YYYY-MM-DD`` (or a Date / midnight Datetime column); prices
   must parse as numbers and become Float64; ``volume`` becomes Int64 (integer input) or
   Float64. Every bad column is reported at once, with a count and examples.
5. **Sort** (:mod:`~qpipe.ingest.order`) by ``(symbol, date)`` (unsorted input is fine).
6. **Validate** (:mod:`qpipe.validation.schema`): the pandera checks plus the one-pass
   uniqueness check on the sorted keys. Every failing check is one
   :class:`~qpipe.errors.SchemaFailure` in a ``SchemaValidationError``, and every failing row
   is written to ``<quarantine_dir>/<stem>.quarantine.arrow`` (:mod:`~qpipe.ingest.quarantine`).
7. **Store**: ``ArrowStore.put`` (content-addressed, atomic).

Files estimated above ``batch_rows`` rows take the batched path (:mod:`~qpipe.ingest.batched`)
with bounded memory and the same digest. :mod:`~qpipe.ingest.core` holds the entry points.
"""

from __future__ import annotations

from qpipe.ingest.core import DEFAULT_BATCH_ROWS, ingest_frame, ingest_prices, ingest_weights
from qpipe.ingest.read import SUPPORTED_EXTENSIONS, file_digest, read_table
from qpipe.ingest.spec import IngestResult

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "SUPPORTED_EXTENSIONS",
    "IngestResult",
    "file_digest",
    "ingest_frame",
    "ingest_prices",
    "ingest_weights",
    "read_table",
]
