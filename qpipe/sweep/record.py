"""The ledger's view of a sweep: one unit, recorded under the sweep id.

``sweep_started`` (grid, digests, code version, number of trials), one ``sweep_chunk`` per
finished chunk (its trial indices, counts, the digest and path of its Arrow file), then
``sweep_finished`` or ``sweep_failed``. Every trial tried, failed ones included, is in exactly
one ``sweep_chunk`` record's ``trials``: :func:`trials_tried` counts them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from qpipe.ledger import Ledger, RunRecorder, iter_records
from qpipe.ledger import payloads_sweep as ps

__all__ = ["SweepRecorder", "recorded_chunks", "trials_tried"]


class SweepRecorder:
    """Writes one sweep's records through the ledger's :class:`RunRecorder` (typed payloads)."""

    def __init__(self, ledger: Ledger, sweep_id: str) -> None:
        self.ledger = ledger
        self.sweep_id = sweep_id

    @property
    def _rec(self) -> RunRecorder:
        return RunRecorder(self.ledger, self.sweep_id)

    def started(self, **data: Any) -> None:
        """grid, grid_digest, config_digest, data_digest, code_version, n_trials, metric, ..."""
        self._rec.sweep_started(ps.SweepStarted(**data))

    def resumed(self, *, n_done: int, next_chunk: int) -> None:
        self._rec.sweep_resumed(ps.SweepResumed(n_done=n_done, next_chunk=next_chunk))

    def chunk(
        self,
        *,
        index: int,
        trials: Iterable[int],
        n_ok: int,
        n_failed: int,
        digest: str,
        path: str,
        seconds: float,
        recovered: bool = False,
    ) -> None:
        """A finished chunk; ``recovered`` when its file was found on resume, not seen live."""
        listed = sorted(trials)
        payload = ps.SweepChunk(
            chunk=index, trials=listed, n_trials=len(listed), n_ok=n_ok, n_failed=n_failed,
            digest=digest, path=path, seconds=round(seconds, 6), recovered=recovered,
        )  # fmt: skip
        self._rec.sweep_chunk(payload)

    def finished(self, **data: Any) -> None:
        self._rec.sweep_finished(ps.SweepFinished(**data))

    def failed(self, *, error: str, message: str, **data: Any) -> None:
        self._rec.sweep_failed(ps.SweepFailed(error=error, message=message, **data))


def recorded_chunks(ledger_path: str | Path, sweep_id: str) -> dict[int, dict[str, Any]]:
    """The ``sweep_chunk`` records of ``sweep_id``, by chunk index."""
    path = Path(ledger_path)
    if not path.exists():
        return {}
    return {
        int(r["data"]["chunk"]): r["data"]
        for r in iter_records(path)
        if r["run_id"] == sweep_id and r["kind"] == "sweep_chunk"
    }


def trials_tried(ledger_path: str | Path, sweep_id: str) -> int:
    """How many trials the sweep tried (ok and failed), from its ``sweep_chunk`` records."""
    return sum(int(c["n_trials"]) for c in recorded_chunks(ledger_path, sweep_id).values())
