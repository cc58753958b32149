"""One error root, focused subclasses.

Every failure a user can cause is a :class:`QpipeError`. Messages are one line, lowercase, and
name the file, column or key at fault (in backticks) and, where it helps, the fix. Errors are
picklable so they cross process boundaries (Ray tasks) intact.
"""

from __future__ import annotations

__all__ = [
    "AllocationAuditError",
    "BacktestError",
    "ConfigError",
    "DataFormatError",
    "EngineError",
    "LedgerError",
    "OptionalDependencyError",
    "PathSafetyError",
    "QpipeError",
    "ReplayError",
    "ResearchError",
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


class SchemaValidationError(QpipeError):
    """Tier 1: a price or weights file failed its schema; every failing check is listed."""

    def __init__(self, message: str, failures: tuple = ()) -> None:
        super().__init__(message)
        self.failures = tuple(failures)

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
