"""What every phase of a run may use: the choices made at the edge, and the one recorder.

Phases never reach for globals: the config, the store, the engine, the ledger and the event
callback all arrive here, so a phase is a function of its inputs and this environment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from qpipe.config import ThreadSafeConfig
from qpipe.engines.base import Engine, OutputCheck, StageRecord, StepCache
from qpipe.errors import SchemaFailure, SchemaValidationError
from qpipe.ledger import Ledger, RunRecorder
from qpipe.ledger import payloads as p
from qpipe.runs.paths import RunPaths
from qpipe.stages.base import Step
from qpipe.store import ArrowStore

__all__ = ["EventSink", "ReportResearch", "RunEnv", "failure_records"]

EventSink = Callable[[str, dict[str, Any]], None]
# the run's equity frame -> research sections for report.html (a walk-forward's stitched run)
ReportResearch = Callable[[pl.DataFrame], Any]


def failure_records(
    failures: Iterable[SchemaFailure], limit: int = 100
) -> tuple[p.ValidationFailure, ...]:
    """Schema failures as the ledger's typed failure records (the first ``limit``)."""
    return tuple(
        p.ValidationFailure(
            check=f.check,
            column=f.column,
            count=f.count,
            example=f.examples[0] if f.examples else None,
        )
        for f in list(failures)[:limit]
    )


@dataclass
class RunEnv:
    """The environment of one run; created by :func:`qpipe.runs.run` and shared by its phases."""

    run_id: str
    cfg: ThreadSafeConfig
    paths: RunPaths
    run_dir: Path
    store: ArrowStore
    engine: Engine
    recorder: RunRecorder
    emit: EventSink
    cache: StepCache | None = None
    report: bool = True
    report_research: ReportResearch | None = None
    stages: list[StageRecord] = field(default_factory=list)

    @property
    def ledger(self) -> Ledger:
        return self.recorder.ledger

    def on_stage(self, rec: StageRecord) -> None:
        self.stages.append(rec)
        self.recorder.stage(p.Stage.from_data(rec.to_json()))
        self.emit("stage", rec.to_json())

    @property
    def check(self) -> OutputCheck | None:
        """Per-step validation hook (only in ``validation.mode = "per_step"``), recorded."""
        if self.cfg.validation.mode != "per_step":
            return None
        return self._checked_step

    def _checked_step(self, step: Step, name: str, frame: pl.DataFrame) -> None:
        import time

        from qpipe.validation.steps import check_step_output

        start = time.perf_counter()
        try:
            check_step_output(step, name, frame)
        except SchemaValidationError as exc:
            self._record_step(f"{step.name}.{name}", start, failure_records(exc.failures))
            raise
        self._record_step(f"{step.name}.{name}", start, ())

    def _record_step(
        self, target: str, start: float, failures: tuple[p.ValidationFailure, ...]
    ) -> None:
        import time

        seconds = round(time.perf_counter() - start, 6)
        self.recorder.validation(
            p.Validation(
                tier="per_step",
                target=target,
                passed=not failures,
                skipped=False,
                seconds=seconds,
                failures=failures,
            )
        )
