"""The public API of a run, kept at its historical address: ``qpipe.api.run`` and friends.

The work lives in :mod:`qpipe.runs` (a run as a graph of phases); this module only re-exports it.
"""

from qpipe.runs import (
    RUN_GRAPH,
    RunPaths,
    RunResult,
    new_run_id,
    record_config_failure,
    resolve_paths,
    run,
)
from qpipe.runs.ingest import builtin_dataset
from qpipe.runs.outputs import DATA_OUTPUTS

__all__ = [
    "DATA_OUTPUTS",
    "RUN_GRAPH",
    "RunPaths",
    "RunResult",
    "builtin_dataset",
    "new_run_id",
    "record_config_failure",
    "resolve_paths",
    "run",
]
