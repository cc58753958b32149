"""Typed payloads: one frozen dataclass per record kind, the single definition of each ``data``.

Each payload has a ``KIND`` (the record's ``kind``) and :meth:`Payload.to_data`, which gives the
exact JSON object written as the record's ``data``. Fields named in ``OMIT_NONE`` are left out
when they are None (they are optional in the format). The table of kinds and fields in
``docs/ledger.md`` is generated from these classes by :func:`qpipe.ledger.kinds.kinds_table`
(a test checks it).

Records are written by :class:`~qpipe.ledger.recorder.RunRecorder`, one method per kind.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

__all__ = [
    "PAYLOADS",
    "AllocationAudit",
    "Artifact",
    "Checkpoint",
    "Dataset",
    "Exported",
    "Metrics",
    "Payload",
    "Recovered",
    "ResearchFailed",
    "ResearchFinished",
    "ResearchStarted",
    "RunFailed",
    "RunFinished",
    "RunStarted",
    "Stage",
    "StageOutput",
    "TrialStats",
    "Validation",
    "ValidationFailure",
]

ValidationTier = Literal["tier1", "tier2", "per_step"]


def _plain(value: Any) -> Any:
    """Nested payload parts as plain data (dataclasses to dicts, tuples to lists)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class Payload:
    """Base of every payload: ``KIND`` names the record kind, :meth:`to_data` gives ``data``."""

    KIND: ClassVar[str] = ""
    OMIT_NONE: ClassVar[frozenset[str]] = frozenset()
    DATA_DOC: ClassVar[str] = ""  # describes ``data`` when it is not one key per field
    OPENS: ClassVar[bool] = False  # the writer checks the whole ledger before writing it
    ENDS: ClassVar[bool] = False  # a signed checkpoint follows it (the end of a run or task)

    def to_data(self) -> dict[str, Any]:
        """The record's ``data`` object (plain JSON values; the writer makes them canonical)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in self.OMIT_NONE:
                continue
            out[f.name] = _plain(value)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted(Payload):
    """A run began: what it runs (config), on what code, where."""

    KIND: ClassVar[str] = "run_started"
    OPENS: ClassVar[bool] = True
    OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"phase"})

    config: Mapping[str, Any] | None = field(
        metadata={"doc": "the resolved config; null when the config failed"}
    )
    config_digest: str | None = field(metadata={"doc": "SHA-256 of the canonical config"})
    code_version: str = field(metadata={"doc": "qpipe version"})
    git_commit: str | None = field(
        default=None, metadata={"doc": "commit of the code, when it is a git checkout"}
    )
    git_dirty: bool | None = field(
        default=None, metadata={"doc": "the checkout had uncommitted changes"}
    )
    packages: Mapping[str, str] | None = field(
        default=None, metadata={"doc": "{name: version} of the key packages"}
    )
    engine: str | None = field(metadata={"doc": "engine name (`local`, `ray`, ...)"})
    host: str = field(metadata={"doc": "host name"})
    argv: list[str] | None = field(metadata={"doc": "command line, when run from one"})
    out_dir: str | None = field(metadata={"doc": "the run folder"})
    phase: str | None = field(
        default=None, metadata={"doc": '`"config"` for a run that failed on its config'}
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Dataset(Payload):
    """An input was ingested into the store."""

    KIND: ClassVar[str] = "dataset"
    OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"point_in_time"})

    name: str = field(metadata={"doc": "`prices`, `benchmark`, `weights` or `membership`"})
    path: str = field(metadata={"doc": "its store entry"})
    digest: str = field(metadata={"doc": "SHA-256 of the stored Arrow file"})
    rows: int = field(metadata={"doc": "row count"})
    schema: list[list[str]] = field(metadata={"doc": "[[column, dtype], ...]"})
    source: str = field(metadata={"doc": 'the input file, or `"builtin"`'})
    source_digest: str | None = field(metadata={"doc": "SHA-256 of the input file"})
    point_in_time: bool | None = field(
        default=None, metadata={"doc": "prices: point-in-time universe"}
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidationFailure:
    """One failed check: which check, on which column, how many rows, one example value."""

    check: str
    column: str | None = None
    count: int = 1
    example: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Validation(Payload):
    """A validation tier ran on one target (tier 1 schema, tier 2 audit, or a per-step check)."""

    KIND: ClassVar[str] = "validation"
    OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"source_digest"})

    tier: ValidationTier = field(
        metadata={"doc": "`tier1` (schema), `tier2` (allocation audit) or `per_step`"}
    )
    target: str = field(
        metadata={"doc": "what was checked: an input name, `weights`, or a stage output"}
    )
    passed: bool = field(metadata={"doc": "true when no check failed"})
    skipped: bool = field(
        metadata={"doc": "true when validation was skipped (this input already passed)"}
    )
    seconds: float = field(metadata={"doc": "time taken"})
    failures: tuple[ValidationFailure, ...] = field(
        default=(), metadata={"doc": "[{check, column, count, example}, ...]"}
    )
    source_digest: str | None = field(
        default=None, metadata={"doc": "digest of the validated input"}
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class StageOutput:
    """One output of a stage: its store digest, row count and store path."""

    digest: str
    rows: int
    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Stage(Payload):
    """A pipeline stage ran (or was reused from a sweep's step cache)."""

    KIND: ClassVar[str] = "stage"

    stage: str = field(metadata={"doc": "stage name"})
    inputs: Mapping[str, str] = field(metadata={"doc": "{name: digest}"})
    outputs: Mapping[str, StageOutput] = field(metadata={"doc": "{name: {digest, rows, path}}"})
    seconds: float = field(metadata={"doc": "time taken"})
    shards: int = field(metadata={"doc": "how many shards it ran in"})
    retries: int = field(metadata={"doc": "retries it needed"})
    cached: bool = field(metadata={"doc": "reused from a sweep's `StepCache`"})

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Stage:
        """From a ``stage`` record's data (e.g. ``StageRecord.to_json()``)."""
        outputs = {k: StageOutput(**v) for k, v in data["outputs"].items()}
        return cls(**{**data, "outputs": outputs})


@dataclass(frozen=True, slots=True, kw_only=True)
class AllocationAudit(Payload):
    """Tier 2: the audit of the final allocation (limits, prices, point-in-time)."""

    KIND: ClassVar[str] = "allocation_audit"
    OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"skipped", "certificate"})

    passed: bool = field(metadata={"doc": "true when no check found a violation"})
    checks: list[str] = field(metadata={"doc": "the checks that ran"})
    n_violations: int = field(metadata={"doc": "how many violations were found"})
    violations: list[list[Any]] = field(
        metadata={"doc": "[[date, symbol, check, value], ...] (first 100)"}
    )
    seconds: float = field(metadata={"doc": "time taken"})
    pit_cuts: list[str] = field(metadata={"doc": "dates of the point-in-time look-ahead check"})
    pit_seconds: float = field(metadata={"doc": "time the point-in-time check took"})
    warnings: list[str] = field(metadata={"doc": "allocation warnings (see strategies.md)"})
    pit_stages: list[dict[str, Any]] = field(default_factory=list, metadata={"doc": "PIT per step"})
    skipped: bool | None = field(default=None, metadata={"doc": "a certificate stood in"})
    certificate: dict[str, Any] | None = field(default=None, metadata={"doc": "see strategies.md"})


@dataclass(frozen=True, slots=True)
class Metrics(Payload):
    """The run's metrics, as in `metrics.json`."""

    KIND: ClassVar[str] = "metrics"
    DATA_DOC: ClassVar[str] = "{name: number or null} (the keys of `metrics.json`)"

    values: Mapping[str, float | int | None] = field(
        metadata={"doc": "{name: number or null}, as the data itself"}
    )

    def to_data(self) -> dict[str, Any]:
        return dict(self.values)


@dataclass(frozen=True, slots=True, kw_only=True)
class Artifact(Payload):
    """An output file of the run."""

    KIND: ClassVar[str] = "artifact"

    name: str = field(metadata={"doc": "`equity.arrow`, `report.html`, ..."})
    path: str = field(metadata={"doc": "where it was written"})
    digest: str = field(metadata={"doc": "SHA-256 of the file"})
    bytes: int = field(metadata={"doc": "its size"})


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFinished(Payload):
    """The run ended well."""

    KIND: ClassVar[str] = "run_finished"
    ENDS: ClassVar[bool] = True

    seconds: float = field(metadata={"doc": "wall time of the run"})
    out_dir: str = field(metadata={"doc": "the run folder"})


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFailed(Payload):
    """The run ended with an error."""

    KIND: ClassVar[str] = "run_failed"
    ENDS: ClassVar[bool] = True
    OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"phase"})

    error: str = field(metadata={"doc": "error class name"})
    message: str = field(metadata={"doc": "its first line"})
    phase: str | None = field(default=None, metadata={"doc": '`"config"` for a config error'})


@dataclass(frozen=True, slots=True, kw_only=True)
class Exported(Payload):
    """A finished run was exported to a view (its `run_id` is the exported run's)."""

    KIND: ClassVar[str] = "exported"

    target: str = field(metadata={"doc": "`mlflow`"})
    tracking_uri: str = field(metadata={"doc": "where it went"})
    mlflow_run_id: str = field(metadata={"doc": "the MLflow run id"})
    exported_run_id: str = field(metadata={"doc": "the qpipe run exported"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Recovered(Payload):
    """A torn final line found by an append, kept verbatim (written by the ledger itself)."""

    KIND: ClassVar[str] = "recovered"

    offset: int = field(metadata={"doc": "byte offset of the torn line"})
    bytes: int = field(metadata={"doc": "its length"})
    encoding: str = field(metadata={"doc": "`utf-8` or `base64`"})
    torn: str = field(metadata={"doc": "its bytes, as text or base64"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ResearchStarted(Payload):
    """An out-of-sample study began: a walk-forward or a CPCV of a grid (see research.md)."""

    KIND: ClassVar[str] = "research_started"
    OPENS: ClassVar[bool] = True

    method: str = field(metadata={"doc": "`walk_forward` or `cpcv`"})
    params: Mapping[str, Any] = field(metadata={"doc": "split parameters as given"})
    grid: Mapping[str, list[Any]] = field(metadata={"doc": "{`section.key`: [values]}"})
    metric: str = field(metadata={"doc": "the ranking metric"})
    config_digest: str = field(metadata={"doc": "SHA-256 of the canonical base config"})
    data_digest: str = field(metadata={"doc": "digest of the stored prices"})
    argv: list[str] = field(metadata={"doc": "command line, when run from one"})
    results_config_digest: str = field(
        default="",
        metadata={"doc": "digest of the sections deciding results, as a sweep's `config_digest`"},
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ResearchFinished(Payload):
    """An out-of-sample study ended well: its splits (by digest) and what it found."""

    KIND: ClassVar[str] = "research_finished"
    ENDS: ClassVar[bool] = True
    OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"run_id"})

    method: str = field(metadata={"doc": "`walk_forward` or `cpcv`"})
    splits_digest: str = field(metadata={"doc": "SHA-256 of the canonical splits"})
    splits: Mapping[str, Any] = field(metadata={"doc": "{method, params, folds, ...}"})
    result: Mapping[str, Any] = field(metadata={"doc": "folds table or paths, PBO"})
    out_dir: str = field(metadata={"doc": "the folder holding the study's tables"})
    run_id: str | None = field(default=None, metadata={"doc": "walk-forward's stitched run"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ResearchFailed(Payload):
    """An out-of-sample study stopped with an error (bad windows, a failed audit...)."""

    KIND: ClassVar[str] = "research_failed"
    ENDS: ClassVar[bool] = True

    error: str = field(metadata={"doc": "error class name"})
    message: str = field(metadata={"doc": "its first line"})


@dataclass(frozen=True, slots=True, kw_only=True)
class TrialStats(Payload):
    """Trial-aware statistics of a sweep's best trial: DSR with the honest number of trials."""

    KIND: ClassVar[str] = "trial_stats"
    OPENS: ClassVar[bool] = True
    ENDS: ClassVar[bool] = True

    sweep_id: str = field(metadata={"doc": "the sweep whose best trial is judged"})
    trial: int = field(metadata={"doc": "that trial's index"})
    trials_from: str = field(metadata={"doc": "`ledger`, `sweep` or a number given by the user"})
    n_trials: int = field(metadata={"doc": "N, the number of trials counted"})
    sweeps_counted: list[Mapping[str, Any]] = field(metadata={"doc": "[{sweep_id, n_trials}]"})
    values: Mapping[str, Any] = field(metadata={"doc": "sr, sr0, dsr, min_trl, pbo, ..."})


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint(Payload):
    """A signed checkpoint over the chain, written at the end of every run (by the ledger)."""

    KIND: ClassVar[str] = "checkpoint"

    seq: int = field(metadata={"doc": "seq of the last record it covers (the one before it)"})
    head: str = field(metadata={"doc": "that record's hash"})
    count: int = field(metadata={"doc": "how many records it covers"})
    bytes: int = field(metadata={"doc": "ledger size in bytes before the checkpoint line"})
    prev_checkpoint: int = field(metadata={"doc": "seq of the previous checkpoint (0: none)"})
    legacy: int = field(metadata={"doc": "leading records written before the ledger was signed"})
    unvouched: list[int] = field(
        metadata={"doc": "seqs since the previous checkpoint no qpipe writer appended (forged)"}
    )
    key_id: str = field(metadata={"doc": "first 16 hex of the SHA-256 of the Ed25519 public key"})
    signature: str = field(
        metadata={"doc": "Ed25519 signature (hex) of the canonical JSON of the other fields"}
    )


PAYLOADS: tuple[type[Payload], ...] = (
    RunStarted,
    Dataset,
    Validation,
    Stage,
    AllocationAudit,
    Metrics,
    Artifact,
    RunFinished,
    RunFailed,
    Exported,
    Recovered,
    ResearchStarted,
    ResearchFinished,
    ResearchFailed,
    TrialStats,
    Checkpoint,
)
