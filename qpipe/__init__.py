"""qpipe: quant research pipelines.

Pure stages over lazy Polars frames backed by memory-mapped Arrow IPC files; only references
travel between stages and processes; a frozen config; a tamper-evident ledger; Ray optional.
"""

from qpipe._versions import qpipe_version
from qpipe.config import ThreadSafeConfig
from qpipe.context import RunContext
from qpipe.engines.local import LocalEngine
from qpipe.errors import (
    AllocationAuditError,
    BacktestError,
    ConfigError,
    DataFormatError,
    EngineError,
    LedgerError,
    OptionalDependencyError,
    PathSafetyError,
    QpipeError,
    ReplayError,
    SchemaValidationError,
    StageError,
    StoreError,
)
from qpipe.runs import RunResult, run
from qpipe.stages.base import Pipeline, Stage, Step, stage
from qpipe.store import ArrowStore, DatasetRef

__version__ = qpipe_version()

__all__ = [
    "AllocationAuditError",
    "ArrowStore",
    "BacktestError",
    "ConfigError",
    "DataFormatError",
    "DatasetRef",
    "EngineError",
    "LedgerError",
    "LocalEngine",
    "OptionalDependencyError",
    "PathSafetyError",
    "Pipeline",
    "QpipeError",
    "ReplayError",
    "RunContext",
    "RunResult",
    "SchemaValidationError",
    "Stage",
    "StageError",
    "Step",
    "StoreError",
    "ThreadSafeConfig",
    "__version__",
    "run",
    "stage",
]
