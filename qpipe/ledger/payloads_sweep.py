"""Typed payloads of a sweep's records (see :mod:`qpipe.ledger.payloads` for the pattern).

A sweep is one unit in the ledger, recorded under the sweep id: ``sweep_started``, one
``sweep_chunk`` per finished chunk of trials (``ledger verify`` re-hashes its Arrow file), then
``sweep_finished`` or ``sweep_failed``; ``sweep_resumed`` when an interrupted sweep continues.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from qpipe.ledger.payloads import Payload

__all__ = [
    "SWEEP_PAYLOADS",
    "SweepChunk",
    "SweepFailed",
    "SweepFinished",
    "SweepResumed",
    "SweepStarted",
    "TrialStatsFailed",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepStarted(Payload):
    """A sweep began (its `run_id` is the sweep id)."""

    KIND: ClassVar[str] = "sweep_started"
    OPENS: ClassVar[bool] = True

    sweep_id: str = field(metadata={"doc": "the sweep id (also the folder name)"})
    key: str = field(metadata={"doc": "digest of grid, config, data and evaluator (resume key)"})
    grid: list[list[Any]] = field(metadata={"doc": "[[`section.key`, [values]], ...]"})
    grid_digest: str = field(metadata={"doc": "SHA-256 of the grid's canonical JSON"})
    config_digest: str = field(
        metadata={"doc": "digest of the sections deciding results: data .. validation"}
    )
    data_digest: str = field(metadata={"doc": "store digest of the prices"})
    evaluator: str = field(metadata={"doc": "module that evaluates chunks"})
    n_trials: int = field(metadata={"doc": "trials in the grid"})
    code_version: str = field(metadata={"doc": "qpipe version"})
    metric: str = field(metadata={"doc": "the ranking metric"})
    config: Mapping[str, Any] = field(metadata={"doc": "the base config"})
    argv: list[str] = field(metadata={"doc": "command line"})


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepResumed(Payload):
    """An interrupted sweep was picked up again; only its missing trials run."""

    KIND: ClassVar[str] = "sweep_resumed"
    OPENS: ClassVar[bool] = True

    n_done: int = field(metadata={"doc": "trials already in chunk files"})
    next_chunk: int = field(metadata={"doc": "index of the next chunk"})


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepChunk(Payload):
    """A chunk of trials finished: its rows are an Arrow file (`ledger verify` re-hashes it)."""

    KIND: ClassVar[str] = "sweep_chunk"

    chunk: int = field(metadata={"doc": "chunk index"})
    trials: list[int] = field(metadata={"doc": "trial indices (every trial tried, ok or not)"})
    n_trials: int = field(metadata={"doc": "len(trials)"})
    n_ok: int = field(metadata={"doc": "trials with status ok"})
    n_failed: int = field(metadata={"doc": "trials with status failed"})
    digest: str = field(metadata={"doc": "SHA-256 of the chunk's Arrow file"})
    path: str = field(metadata={"doc": "the chunk's Arrow file"})
    seconds: float = field(metadata={"doc": "the task's wall time"})
    recovered: bool = field(metadata={"doc": "file found on resume, not recorded live"})


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepFinished(Payload):
    """The sweep ended well; `summary.arrow` holds every trial."""

    KIND: ClassVar[str] = "sweep_finished"
    ENDS: ClassVar[bool] = True

    n_trials: int = field(metadata={"doc": "rows of the summary"})
    n_ok: int = field(metadata={"doc": "trials with status ok"})
    n_failed: int = field(metadata={"doc": "trials with status failed"})
    results_digest: str = field(metadata={"doc": "digest of the summary without ids and times"})
    summary: str = field(metadata={"doc": "path of `summary.arrow`"})
    seconds: float = field(metadata={"doc": "wall time of this attempt"})


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepFailed(Payload):
    """The sweep stopped (bad grid, error, Ctrl-C); the finished trials are summarised."""

    KIND: ClassVar[str] = "sweep_failed"
    ENDS: ClassVar[bool] = True
    OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"phase", "n_done", "n_trials", "summary"})

    error: str = field(metadata={"doc": "error class name"})
    message: str = field(metadata={"doc": "its first line"})
    phase: str | None = field(
        default=None, metadata={"doc": '`"config"` (bad grid) or `"setup"`, before any trial'}
    )
    n_done: int | None = field(default=None, metadata={"doc": "trials with a result"})
    n_trials: int | None = field(default=None, metadata={"doc": "trials in the grid"})
    summary: str | None = field(default=None, metadata={"doc": "the partial `summary.arrow`"})


@dataclass(frozen=True, slots=True, kw_only=True)
class TrialStatsFailed(Payload):
    """The trial-aware statistics of a sweep could not be computed (N < 2, no finished trial,
    a bad `--trials-from`...): the one-line error, as `stats` or the end of the sweep met it."""

    KIND: ClassVar[str] = "trial_stats_failed"
    OPENS: ClassVar[bool] = True
    ENDS: ClassVar[bool] = True

    sweep_id: str = field(metadata={"doc": "the sweep that was to be judged"})
    trials_from: str = field(metadata={"doc": "`ledger`, `sweep` or the number, as given"})
    error: str = field(metadata={"doc": "error class name"})
    message: str = field(metadata={"doc": "its first line"})


SWEEP_PAYLOADS: tuple[type[Payload], ...] = (
    SweepStarted,
    SweepResumed,
    SweepChunk,
    SweepFinished,
    SweepFailed,
    TrialStatsFailed,
)
