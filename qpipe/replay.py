"""Replay: re-run a recorded run from the ledger alone and compare its data outputs by digest.

The ledger holds everything needed: the resolved config (``run_started``) and each input's source
and digest (``dataset``). Replay refuses to run when an input file's digest changed, runs the
config again as a new run (recorded in the ledger like any other, with ``argv`` naming the replay),
and compares the digests of ``equity.arrow``, ``weights.arrow``, ``trades.arrow`` and
``metrics.json``. ``report.html`` is not compared: it shows the run id and time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qpipe.config import ThreadSafeConfig
from qpipe.errors import ReplayError
from qpipe.ledger import Ledger, verify
from qpipe.runs import RunResult, run
from qpipe.runs.outputs import DATA_OUTPUTS

__all__ = ["ReplayReport", "replay"]


@dataclass(frozen=True)
class ReplayReport:
    """Per data output: (recorded digest, replayed digest)."""

    run_id: str
    replay_run_id: str
    outputs: dict[str, tuple[str | None, str | None]]

    @property
    def identical(self) -> bool:
        return all(a is not None and a == b for a, b in self.outputs.values())


def _records_of(ledger: Ledger, run_id: str) -> list[dict]:
    if not ledger.path.exists():
        msg = f"ledger `{ledger.path}` does not exist"
        raise ReplayError(msg)
    report = verify(ledger.path, check_artifacts=False, allow_open_runs=True)
    if not report.ok:  # never re-run a config or trust digests from an edited ledger
        msg = f"ledger `{ledger.path}` failed verification: {report.reason}; refusing to replay"
        raise ReplayError(msg)
    recs = [r for r in ledger.records() if r["run_id"] == run_id]
    if not recs:
        msg = f"run `{run_id}` is not in the ledger `{ledger.path}`"
        raise ReplayError(msg)
    return recs


def _not_a_run(run_id: str, recs: list[dict]) -> str:
    """Why ``run_id`` (in the ledger, but not a run) cannot be replayed, and what can be."""
    started = next((r for r in recs if r["kind"] == "research_started"), None)
    if started is None:
        return f"`{run_id}` is in the ledger but is not a run; replay re-runs runs and sweeps"
    method = str(started["data"].get("method", "research")).replace("_", "-")
    finished = next((r for r in recs if r["kind"] == "research_finished"), None)
    stitched = finished["data"].get("run_id") if finished is not None else None
    hint = f"; its out-of-sample run `{stitched}` can be replayed" if stitched else ""
    return (
        f"`{run_id}` is a {method} study, not a run: replay re-runs runs and sweeps "
        f"(re-run the study with the same command to reproduce it){hint}"
    )


def replay(run_id: str, ledger_path: str | Path) -> ReplayReport:
    """Re-run ``run_id`` and compare its data outputs' digests with the recorded ones."""
    from qpipe.ingest import file_digest
    from qpipe.ingest.named import is_store_source

    ledger = Ledger(Path(ledger_path))
    recs = _records_of(ledger, run_id)
    kinds = {r["kind"] for r in recs}
    if "run_started" not in kinds:
        raise ReplayError(_not_a_run(run_id, recs))
    if "run_finished" not in kinds:
        msg = f"run `{run_id}` did not finish; only finished runs can be replayed"
        raise ReplayError(msg)
    started = next(r for r in recs if r["kind"] == "run_started")["data"]
    cfg = ThreadSafeConfig.from_mapping(started["config"])
    for rec in recs:
        if rec["kind"] != "dataset":
            continue
        source = rec["data"].get("source")
        # A `store:NAME` input is checked after the replay: its stored digest must match.
        if source and source != "builtin" and not is_store_source(source):
            if not Path(source).exists():
                msg = f"input `{source}` of run `{run_id}` no longer exists"
                raise ReplayError(msg)
            if file_digest(source) != rec["data"]["source_digest"]:
                msg = f"input `{source}` changed since run `{run_id}`; refusing to replay"
                raise ReplayError(msg)
    recorded = {r["data"]["name"]: r["data"]["digest"] for r in recs if r["kind"] == "artifact"}
    out = Path(started["out_dir"]).parent if started.get("out_dir") else None
    result: RunResult = run(cfg, out=out, ledger=ledger.path, argv=["replay", run_id], report=False)
    new_prices = next(
        (r["data"]["digest"] for r in _records_of(ledger, result.run_id) if r["kind"] == "dataset"),
        None,
    )
    old_prices = next((r["data"]["digest"] for r in recs if r["kind"] == "dataset"), None)
    if old_prices != new_prices:
        old, new = str(old_prices)[:12], str(new_prices)[:12]
        msg = f"the prices of run `{run_id}` changed (stored digest {old} != {new})"
        raise ReplayError(msg)
    outputs = {name: (recorded.get(name), result.artifacts.get(name)) for name in DATA_OUTPUTS}
    return ReplayReport(run_id, result.run_id, outputs)
