"""What every engine shares: the result of running a pipeline and the per-step hook."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import polars as pl

from qpipe.context import RunContext
from qpipe.stages.base import Pipeline, Step
from qpipe.store import ArrowStore, DatasetRef

__all__ = ["Engine", "EngineRun", "OutputCheck", "StageRecord"]

# Called with (step, output name, collected frame) before the output is stored; per-step
# validation mode uses it. It must not modify the frame.
OutputCheck = Callable[[Step, str, pl.DataFrame], None]


@dataclass(frozen=True)
class StageRecord:
    """What one step did: the digests it read, the refs it wrote, rows and wall time."""

    name: str
    inputs: dict[str, str]  # input name -> digest
    outputs: dict[str, DatasetRef]
    seconds: float
    shards: int = 1
    retries: int = 0

    def to_json(self) -> dict:
        return {
            "stage": self.name,
            "inputs": dict(self.inputs),
            "outputs": {k: {"digest": r.digest, "rows": r.rows, "path": r.path} for k, r in self.outputs.items()},
            "seconds": round(self.seconds, 6),
            "shards": self.shards,
            "retries": self.retries,
        }


@dataclass(frozen=True)
class EngineRun:
    """The context after a pipeline ran (every output as a ref) and one record per step."""

    context: RunContext
    records: tuple[StageRecord, ...] = field(default_factory=tuple)


class Engine(Protocol):
    """Runs a :class:`Pipeline` over a :class:`RunContext` of refs, writing outputs to a store."""

    name: str

    def run(
        self,
        pipeline: Pipeline,
        context: RunContext,
        store: ArrowStore,
        *,
        check: OutputCheck | None = None,
        on_record: Callable[[StageRecord], None] | None = None,
    ) -> EngineRun: ...

    def close(self) -> None: ...
