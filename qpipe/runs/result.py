"""What a run hands back to a notebook user: frames, metrics, paths, the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from qpipe.config import ThreadSafeConfig
from qpipe.engines.base import StageRecord
from qpipe.store import ArrowStore, DatasetRef
from qpipe.validation.audit import AuditReport

__all__ = ["RunResult"]


@dataclass
class RunResult:
    """Everything a run produced: frames, metrics, paths, the report.

    Frames are opened from the store on access (memory-mapped, no copy).
    """

    run_id: str
    config: ThreadSafeConfig
    out_dir: Path
    ledger_path: Path
    store: ArrowStore
    refs: dict[str, DatasetRef]
    metrics: dict[str, Any]
    audit: AuditReport | None
    stages: tuple[StageRecord, ...]
    artifacts: dict[str, str] = field(default_factory=dict)  # name -> digest
    seconds: float = 0.0
    warnings: tuple[str, ...] = ()  # legal but probably unintended allocations (see the audit)

    def frame(self, name: str) -> pl.DataFrame:
        return self.store.open(self.refs[name])

    @property
    def equity(self) -> pl.DataFrame:
        return self.frame("equity")

    @property
    def weights(self) -> pl.DataFrame:
        return self.frame("weights")

    @property
    def trades(self) -> pl.DataFrame:
        return self.frame("trades")

    @property
    def prices(self) -> pl.DataFrame:
        return self.frame("prices")

    @property
    def report_path(self) -> Path:
        return self.out_dir / "report.html"

    def report(self) -> str:
        """The HTML report (the text of ``report.html``)."""
        return self.report_path.read_text(encoding="utf-8")

    def _repr_html_(self) -> str:  # notebooks show the report inline
        return self.report() if self.report_path.exists() else f"<pre>{self!r}</pre>"
