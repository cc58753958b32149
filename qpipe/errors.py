"""One error root, focused subclasses.

Every failure a user can cause is a :class:`QpipeError`. Messages are one line, lowercase, and
name the file, column or key at fault (in backticks) and, where it helps, the fix. Errors are
picklable so they cross process boundaries (Ray tasks) intact.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "AllocationAuditError",
    "BacktestError",
    "ConfigError",
    "DataFormatError",
    "EngineError",
    "ExportError",
    "LedgerError",
    "OptionalDependencyError",
    "OutOfMemoryError",
    "PathSafetyError",
    "QpipeError",
    "ReplayError",
    "ResearchError",
    "SchemaFailure",
    "SchemaValidationError",
    "StageError",
    "StoreError",
]


class QpipeError(Exception):
    """Root of every error qpipe raises on purpose."""

    def __reduce__(self):  # keep subclass and message across pickling (Ray)
        return (self.__class__, self.args)


class ConfigError(QpipeError, AttributeError):
    """A config file, key, type, value or override is wrong, or a config was mutated.

    It is also an ``AttributeError`` so that ``setattr``/``getattr`` protocols behave.
    """


class DataFormatError(QpipeError):
    """An input file cannot be read as what it claims to be (missing, empty, corrupt...)."""


FailureKind = Literal["file", "column", "type", "row"]


@dataclass(frozen=True, slots=True)
class SchemaFailure:
    """One failed schema check, as carried by ``SchemaValidationError.failures``.

    Attributes
    ----------
    check
        The check's label: ``"`close` finite and > 0"``, ``"missing column"``, ``"type"``...
    column
        The column at fault, or None for a check across columns.
    count
        How many rows (``kind="row"``) or values (``kind="type"``) fail; 0 for a column
        failure, which has no rows to point at.
    examples
        A few failing rows or values rendered as text (``"2020-01-02 AAA close=-1.0 (row 1)"``).
    kind
        ``"file"`` (the file cannot be read), ``"column"`` (a column is missing, duplicated or
        of the wrong type), ``"type"`` (values that do not parse; ``check`` says what is wrong
        with them, e.g. ``"that are not numbers"``) or ``"row"`` (rows fail a data check; these
        are the rows that are quarantined).
    source
        The file at fault when several are checked at once (``data import`` of a folder),
        else None.
    """

    check: str
    column: str | None
    count: int = 0
    examples: tuple[str, ...] = ()
    kind: FailureKind = "row"
    source: str | None = None

    def describe(self) -> str:
        """``"`close` finite and > 0 (3 rows, e.g. 2020-01-02 AAA close=-1.0)"``."""
        if self.kind in ("file", "column"):
            return self.check
        if self.kind == "type":
            if not self.count:
                return f"`{self.column}` {self.check}"
            unit, check = "values", self.check
            if self.count == 1:  # "1 value that is not a number", not "... that are not numbers"
                unit, check = "value", _singular(check)
            shown = ", ".join(self.examples)
            return f"`{self.column}` has {self.count} {unit} {check} (e.g. {shown})"
        unit = "row" if self.count == 1 else "rows"
        if self.check == "(date, symbol) unique":
            unit = "duplicate" if self.count == 1 else "duplicates"
        shown = "; ".join(self.examples)
        return f"{self.check} ({self.count} {unit}, e.g. {shown})" if shown else self.check

    def to_json(self) -> dict[str, Any]:
        """A plain mapping for the ledger's validation record."""
        return {
            "check": self.check,
            "column": self.column,
            "count": self.count,
            "examples": list(self.examples),
            "kind": self.kind,
            "source": self.source,
        }


def _singular(check: str) -> str:
    """``"that are not numbers"`` -> ``"that is not a number"`` (the checks' plural phrasing)."""
    words = check.split()
    if words[:2] != ["that", "are"]:
        return check
    rest = " ".join(words[2:])
    for plural, one in (("not numbers", "not a number"), ("not ISO dates", "not an ISO date")):
        rest = rest.replace(plural, one)
    return f"that is {rest}"


class SchemaValidationError(QpipeError):
    """Tier 1: a price or weights file failed its schema; every failing check is listed.

    ``failures`` is a tuple of :class:`SchemaFailure`, one per failed check, never anything else.
    """

    def __init__(self, message: str, failures: Iterable[SchemaFailure] = ()) -> None:
        super().__init__(message)
        self.failures = tuple(failures)
        for failure in self.failures:
            if not isinstance(failure, SchemaFailure):  # a bug in qpipe, not a user error
                msg = f"failures must be SchemaFailure records, got {type(failure).__name__}"
                raise TypeError(msg)

    def __reduce__(self):
        return (self.__class__, (self.args[0], self.failures))


class AllocationAuditError(QpipeError):
    """Tier 2: the final target weights violate a limit, a price rule or point-in-time.

    ``violations`` holds ``(date, symbol, check, value)`` tuples, every one found.
    """

    def __init__(self, message: str, violations: tuple = ()) -> None:
        super().__init__(message)
        self.violations = tuple(violations)

    def __reduce__(self):
        return (self.__class__, (self.args[0], self.violations))


class StoreError(QpipeError):
    """The Arrow store cannot write, find or trust an entry (digest mismatch, unsafe path)."""


class StageError(QpipeError):
    """A stage raised or broke its contract; the message names the stage."""


class BacktestError(QpipeError):
    """The accounting cannot run on the given prices and weights."""


class EngineError(QpipeError):
    """An engine cannot start, reach its cluster, or finish a task."""


class ExportError(QpipeError):
    """An export target (MLflow) cannot be reached or refused the write; the ledger is intact."""


class LedgerError(QpipeError):
    """The ledger cannot be appended to, read, or verified."""


class ReplayError(QpipeError):
    """A recorded run cannot be replayed (unknown run id, changed input digest)."""


class ResearchError(QpipeError):
    """Out-of-sample research cannot run as asked: a split, window or statistic's input is out
    of its limits (windows longer than the data, purge >= train, fewer than 2 trials...)."""


class PathSafetyError(QpipeError):
    """A name taken from config or data would escape the folder it belongs in."""


class OptionalDependencyError(QpipeError):
    """An optional extra (ray, mlflow, prefect) is needed but not installed."""


class OutOfMemoryError(QpipeError, MemoryError):
    """Reading or mapping a file needed more memory than the process may use.

    The message names the file and how much was needed (the allocation that failed, or the
    file's size for a memory map), so the fix (free memory, raise the limit, smaller batches)
    is clear.
    """


def size_text(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``: a byte count for a message."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - the loop always returns


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the run ends with ``run_failed`` and the CLI exits 143.

    Not a :class:`QpipeError`: it is not the user's input at fault, and it must not be caught by
    handlers of user errors.
    """
