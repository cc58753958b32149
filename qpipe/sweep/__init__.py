"""Parameter sweeps at research scale: trials are rows of one Arrow table, not runs.

- :mod:`~qpipe.sweep.grid`: the grid, checked in full before any work (:func:`grid_from_config`).
- :mod:`~qpipe.sweep.plan`: chunks of trials, sized from measured speed.
- :mod:`~qpipe.sweep.task`: one task evaluates a chunk and writes its rows (Arrow, atomic).
- :mod:`~qpipe.sweep.run`: :func:`run_sweep` streams chunks through the engine's
  ``map_chunks`` and writes ``summary.arrow`` and ``sweep.html``.
- :mod:`~qpipe.sweep.resume`: the sweep folder; an interrupted sweep runs only what is missing.
- :mod:`~qpipe.sweep.promote`: a trial as a full run; replay of a whole sweep.
- :mod:`~qpipe.sweep.record`: the ledger's records of a sweep.
"""

from __future__ import annotations

from qpipe.sweep.grid import MAX_TRIALS, Grid, grid_from_config
from qpipe.sweep.promote import ReplaySweepReport, promote, replay_sweep
from qpipe.sweep.record import trials_tried
from qpipe.sweep.run import SweepResult, run_sweep, sweep_metric
from qpipe.sweep.summary import KEY_METRICS, LOWER_IS_BETTER, results_digest

__all__ = [
    "KEY_METRICS",
    "LOWER_IS_BETTER",
    "MAX_TRIALS",
    "Grid",
    "ReplaySweepReport",
    "SweepResult",
    "grid_from_config",
    "promote",
    "replay_sweep",
    "results_digest",
    "run_sweep",
    "sweep_metric",
    "trials_tried",
]
