"""Running a backtest: a small graph of phases, executed once per run.

Step by step (each phase records itself in the ledger before the next begins):

1. :func:`run` resolves the config and paths, makes the run folder and records ``run_started``
   (resolved config and digest, code and package versions, engine, host).
2. ``ingest`` (:mod:`.ingest`): prices, benchmark and external weights into the store, Tier 1 →
   ``dataset``, ``validation``.
3. ``strategy`` (:mod:`.phases`): target weights from the strategy pipeline on the engine →
   ``stage`` records.
4. ``audit``: Tier 2 (limits, prices, point in time) → ``allocation_audit``, ``validation``.
5. ``backtest``: accounting and metrics on the engine → ``stage``, ``metrics``.
6. ``outputs`` (:mod:`.outputs`): the run folder, atomically → ``artifact`` per file.
7. ``run_finished``; any failure, Ctrl-C and SIGTERM included, ends with ``run_failed``.

Only refs travel between phases. Local and Ray run this same graph; the engine is chosen at the
edge and reached through :class:`~qpipe.runs.env.RunEnv`.
"""

from qpipe.runs.lifecycle import RUN_GRAPH, record_config_failure, run
from qpipe.runs.paths import RunPaths, new_run_id, resolve_paths
from qpipe.runs.result import RunResult

__all__ = [
    "RUN_GRAPH",
    "RunPaths",
    "RunResult",
    "new_run_id",
    "record_config_failure",
    "resolve_paths",
    "run",
]
