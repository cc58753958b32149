"""What is being ingested (prices or weights), what an ingestion returns, and internal names.

Every module of :mod:`qpipe.ingest` shares these definitions; none of them does any I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import polars as pl

from qpipe.store.arrow import DatasetRef
from qpipe.validation.schema import (
    OPTIONAL_PRICE_COLUMNS,
    REQUIRED_PRICE_COLUMNS,
    WEIGHT_COLUMNS,
    validate_prices,
    validate_weights,
)

__all__ = ["EXAMPLES", "PRICES", "WEIGHTS", "IngestResult", "Names", "Spec", "fresh_name"]

EXAMPLES = 3  # failing rows or values shown per check in a message


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What an ingestion produced.

    Attributes
    ----------
    ref
        The stored, validated dataset.
    source
        The input path (or the frame's name for :func:`~qpipe.ingest.ingest_frame`).
    source_digest
        SHA-256 of the raw file bytes (for a frame: the stored dataset's digest). The ledger
        keys "already validated" on it.
    rows, symbols
        Row count and number of distinct symbols stored.
    seconds
        Wall time of the whole ingestion.
    validated
        Whether the Tier 1 checks ran (False with ``validate=False``).
    quarantine
        Path of a quarantine file written by this call, if any (a successful ingestion has no
        failing rows, so this is None; a failed one raises and names the file in its message).
    """

    ref: DatasetRef
    source: str
    source_digest: str
    rows: int
    symbols: int
    seconds: float
    validated: bool
    quarantine: str | None = None


@dataclass(frozen=True)
class Spec:
    """What kind of table is being ingested."""

    what: str  # "prices" | "weights" (used in messages)
    required: tuple[str, ...]
    sort_by: tuple[str, str]
    validate: Callable[[pl.DataFrame, dt.date | None, bool], pl.DataFrame | None]
    optional: tuple[str, ...] = field(default=())


def _validate_prices(frame: pl.DataFrame, today: dt.date | None, unique: bool):
    return validate_prices(frame, today=today, check_unique=unique)


def _validate_weights(frame: pl.DataFrame, today: dt.date | None, unique: bool):
    del today, unique  # duplicates and dates are the Tier 2 audit's job for weights
    return validate_weights(frame)


PRICES = Spec(
    "prices",
    REQUIRED_PRICE_COLUMNS,
    ("symbol", "date"),
    _validate_prices,
    OPTIONAL_PRICE_COLUMNS,
)
WEIGHTS = Spec("weights", WEIGHT_COLUMNS, ("date", "symbol"), _validate_weights)


def fresh_name(base: str, taken: Iterable[str]) -> str:
    """``base``, or ``base_1``, ``base_2``... : the first name not in ``taken``."""
    used = set(taken)
    name, n = base, 0
    while name in used:
        n += 1
        name = f"{base}_{n}"
    return name


@dataclass(frozen=True, slots=True)
class Names:
    """Names of the columns qpipe adds to a user's frame, chosen so that none collides.

    A user's file may have any column, including ``row``, ``failed_check`` or ``__qpipe_row``;
    an internal column must never overwrite or clash with it (that was a ``DuplicateError``, or
    a user column silently dropped).

    Attributes
    ----------
    row
        The 1-based source row number carried through the sort (``__qpipe_row`` normally).
    out_row, out_check
        The quarantine file's source-row and failed-check columns (``row``, ``failed_check``
        normally; ``row_1`` if the file has its own ``row`` column).
    """

    row: str = "__qpipe_row"
    out_row: str = "row"
    out_check: str = "failed_check"

    @classmethod
    def for_columns(cls, columns: Iterable[str]) -> Names:
        cols = list(columns)
        out_check = fresh_name("failed_check", cols)
        return cls(
            row=fresh_name("__qpipe_row", cols),
            out_row=fresh_name("row", [*cols, out_check]),
            out_check=out_check,
        )

    def temp(self, base: str, columns: Iterable[str]) -> str:
        """A scratch column name not in ``columns`` and not one of these names."""
        return fresh_name(base, [*columns, self.row, self.out_row, self.out_check])
