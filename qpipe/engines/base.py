"""What every engine shares: the result of running a pipeline and the per-step hook."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import polars as pl

from qpipe._canonical import canonical_digest, jsonable
from qpipe.context import RunContext
from qpipe.stages.base import Pipeline, Step
from qpipe.store import ArrowStore, DatasetRef

__all__ = ["Engine", "EngineRun", "OutputCheck", "StageRecord", "StepCache", "step_key"]

# Called with (step, output name, collected frame) before the output is stored; per-step
# validation mode uses it. It must not modify the frame; what it returns is ignored.
OutputCheck = Callable[[Step, str, pl.DataFrame], object]


@dataclass(frozen=True)
class StageRecord:
    """What one step did: the digests it read, the refs it wrote, rows and wall time."""

    name: str
    inputs: dict[str, str]  # input name -> digest
    outputs: dict[str, DatasetRef]
    seconds: float
    shards: int = 1
    retries: int = 0
    cached: bool = False

    def to_json(self) -> dict:
        return {
            "stage": self.name,
            "inputs": dict(self.inputs),
            "outputs": {
                k: {"digest": r.digest, "rows": r.rows, "path": r.path}
                for k, r in self.outputs.items()
            },
            "seconds": round(self.seconds, 6),
            "shards": self.shards,
            "retries": self.retries,
            "cached": self.cached,
        }


def step_key(step: Step, input_digests: dict[str, str]) -> str:
    """Identity of a step's work: stage, params and the digests of what it reads.

    Stages are pure, so equal keys mean equal outputs: a sweep computes the features its trials
    share once, and every trial reads them by reference.
    """
    payload = {
        "stage": f"{step.stage.fn.__module__}.{step.stage.fn.__qualname__}",
        "params": step.params.to_dict(),
        "inputs": input_digests,
        "outputs": list(step.outputs),
    }
    return canonical_digest(jsonable(payload))


class StepCache:
    """Step key -> output refs, shared by the runs of a sweep. Thread-safe; holds refs only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, DatasetRef]] = {}
        self.hits = 0

    def get(self, key: str) -> dict[str, DatasetRef] | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self.hits += 1
            return found

    def put(self, key: str, outputs: dict[str, DatasetRef]) -> None:
        with self._lock:
            self._entries.setdefault(key, dict(outputs))

    def __len__(self) -> int:
        return len(self._entries)

    def __getstate__(self) -> dict:
        return {"entries": self._entries, "hits": self.hits}

    def __setstate__(self, state: dict) -> None:
        self._lock = threading.Lock()
        self._entries = state["entries"]
        self.hits = state["hits"]


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
        cache: StepCache | None = None,
    ) -> EngineRun: ...

    def map_chunks(
        self,
        fn: Callable[[Any, Any], Any],
        shared: Any,
        chunks: Iterable[Any],
        on_result: Callable[[Any, Any], None],
    ) -> None:
        """Call ``on_result(chunk, fn(shared, chunk))`` for every chunk, in any order.

        ``fn`` must be a module-level function (it may run in another process); ``shared``
        is what every call shares (sent once per engine call, not once per chunk); ``chunks``
        is read lazily. A sweep evaluates its trials through this.
        """
        ...

    def close(self) -> None: ...
