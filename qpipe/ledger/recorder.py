"""The one writer of ledger records: a :class:`RunRecorder` per run, one method per kind.

Every record qpipe writes goes through a recorder method that takes the kind's typed payload
(:mod:`qpipe.ledger.payloads`), so the format is defined in one place. Each method returns the
record as written (a dict: read its ``seq`` or ``hash``).

>>> import tempfile, pathlib
>>> from qpipe.ledger import Ledger, RunRecorder, payloads as p
>>> rec = RunRecorder(Ledger(pathlib.Path(tempfile.mkdtemp()) / "audit.jsonl"), "run-1")
>>> rec.metrics(p.Metrics({"sharpe": float("nan")}))["data"]
{'sharpe': None}
"""

from __future__ import annotations

from typing import Any

from qpipe.errors import LedgerError
from qpipe.ledger import payloads as p
from qpipe.ledger import payloads_sweep as ps
from qpipe.ledger.imports import DataImport
from qpipe.ledger.writer import Ledger

__all__ = ["RunRecorder"]


class RunRecorder:
    """Writes the records of one run (``run_id``) to ``ledger``.

    Parameters
    ----------
    ledger
        The ledger (or its path).
    run_id
        The run every record belongs to. An ``exported`` record carries the exported run's id.
    """

    def __init__(self, ledger: Ledger | str, run_id: str) -> None:
        self.ledger = ledger if isinstance(ledger, Ledger) else Ledger(ledger)
        self.run_id = run_id
        self.written: list[dict[str, Any]] = []  # this recorder's records, as written (the report)
        self.last_checkpoint: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"RunRecorder({self.ledger!r}, {self.run_id!r})"

    def write(self, payload: p.Payload) -> dict[str, Any]:
        """Append ``payload`` as a record of its ``KIND``; the methods below all call this."""
        if not isinstance(payload, p.Payload) or not payload.KIND:
            msg = f"ledger payload must be a typed record kind, got {type(payload).__name__}"
            raise LedgerError(msg)
        if isinstance(payload, p.Recovered | p.Checkpoint):
            msg = f"`{payload.KIND}` records are written by the ledger itself"
            raise LedgerError(msg)
        # a run (or task) opening the ledger checks it first; one that ends signs it
        record = self.ledger._append(
            self.run_id, payload.KIND, payload.to_data(), check=payload.OPENS
        )
        self.written.append(record)
        if payload.ENDS:
            self.checkpoint()
        return record

    def checkpoint(self) -> dict[str, Any]:
        """Sign everything written so far: append a ``checkpoint`` record and keep its head in
        the key folder. Every payload that ``ENDS`` a run or task (``run_finished``,
        ``run_failed``, ``research_finished``/``failed``, ``trial_stats``, ``data_import``) is
        followed by one; call it yourself after other records that end work (``exported``)."""
        record = self.ledger._checkpoint(self.run_id)
        self.last_checkpoint = record
        return record

    def run_started(self, payload: p.RunStarted) -> dict[str, Any]:
        """A run began. The ledger is checked first: a LedgerError if any record before it was
        edited, cut, reordered or forged (see :func:`~qpipe.ledger.signing.scan_tail`)."""
        return self.write(_expect(payload, p.RunStarted))

    def dataset(self, payload: p.Dataset) -> dict[str, Any]:
        """An input was ingested."""
        return self.write(_expect(payload, p.Dataset))

    def validation(self, payload: p.Validation) -> dict[str, Any]:
        """A validation tier ran (tier1, tier2 or per_step)."""
        return self.write(_expect(payload, p.Validation))

    def stage(self, payload: p.Stage) -> dict[str, Any]:
        """A stage ran."""
        return self.write(_expect(payload, p.Stage))

    def allocation_audit(self, payload: p.AllocationAudit) -> dict[str, Any]:
        """The final allocation was audited."""
        return self.write(_expect(payload, p.AllocationAudit))

    def metrics(self, payload: p.Metrics) -> dict[str, Any]:
        """The run's metrics."""
        return self.write(_expect(payload, p.Metrics))

    def artifact(self, payload: p.Artifact) -> dict[str, Any]:
        """An output file was written."""
        return self.write(_expect(payload, p.Artifact))

    def run_finished(self, payload: p.RunFinished) -> dict[str, Any]:
        """The run ended well; a signed checkpoint follows at once (see :meth:`checkpoint`)."""
        return self.write(_expect(payload, p.RunFinished))

    def run_failed(self, payload: p.RunFailed) -> dict[str, Any]:
        """The run ended with an error; a signed checkpoint follows at once."""
        return self.write(_expect(payload, p.RunFailed))

    def data_import(self, payload: DataImport) -> dict[str, Any]:
        """A dataset was imported under a name (construct the recorder with the import id)."""
        return self.write(_expect(payload, DataImport))

    def exported(self, payload: p.Exported) -> dict[str, Any]:
        """The run was exported to a view (construct the recorder with the exported run's id)."""
        return self.write(_expect(payload, p.Exported))

    def research_started(self, payload: p.ResearchStarted) -> dict[str, Any]:
        """An out-of-sample study began (its id is the recorder's ``run_id``)."""
        return self.write(_expect(payload, p.ResearchStarted))

    def research_finished(self, payload: p.ResearchFinished) -> dict[str, Any]:
        """An out-of-sample study ended well."""
        return self.write(_expect(payload, p.ResearchFinished))

    def research_failed(self, payload: p.ResearchFailed) -> dict[str, Any]:
        """An out-of-sample study stopped with an error."""
        return self.write(_expect(payload, p.ResearchFailed))

    def trial_stats(self, payload: p.TrialStats) -> dict[str, Any]:
        """Trial-aware statistics were computed (its ``run_id`` is a new id)."""
        return self.write(_expect(payload, p.TrialStats))

    def trial_stats_failed(self, payload: ps.TrialStatsFailed) -> dict[str, Any]:
        """Trial-aware statistics could not be computed (its ``run_id`` is a new id)."""
        return self.write(_expect(payload, ps.TrialStatsFailed))

    def sweep_started(self, payload: ps.SweepStarted) -> dict[str, Any]:
        """A sweep began (construct the recorder with the sweep id)."""
        return self.write(_expect(payload, ps.SweepStarted))

    def sweep_resumed(self, payload: ps.SweepResumed) -> dict[str, Any]:
        """An interrupted sweep was picked up again."""
        return self.write(_expect(payload, ps.SweepResumed))

    def sweep_chunk(self, payload: ps.SweepChunk) -> dict[str, Any]:
        """A chunk of a sweep's trials finished."""
        return self.write(_expect(payload, ps.SweepChunk))

    def sweep_finished(self, payload: ps.SweepFinished) -> dict[str, Any]:
        """The sweep ended well."""
        return self.write(_expect(payload, ps.SweepFinished))

    def sweep_failed(self, payload: ps.SweepFailed) -> dict[str, Any]:
        """The sweep stopped before every trial had a result."""
        return self.write(_expect(payload, ps.SweepFailed))


def _expect(payload: Any, cls: type[p.Payload]) -> Any:
    if type(payload) is not cls:
        msg = f"ledger `{cls.KIND}` record needs a {cls.__name__}, got {type(payload).__name__}"
        raise LedgerError(msg)
    return payload
