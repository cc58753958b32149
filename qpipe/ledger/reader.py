"""Reading the ledger: whole records in file order, and one summary per run.

Readers take a shared lock on ``<ledger>.lock`` while reading, so they never see a half-written
line of a live writer. Hashes are not checked here; :func:`~qpipe.ledger.verify.verify` does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from qpipe.errors import LedgerError
from qpipe.ledger.chain import parse_record
from qpipe.ledger.lock import shared_lock

__all__ = [
    "KEY_METRICS",
    "RunSummary",
    "find_run",
    "iter_records",
    "read_ledger_bytes",
    "records",
    "require_ledger",
    "run_records",
    "runs",
]

T = TypeVar("T")
KEY_METRICS = ("sharpe", "cagr", "max_drawdown", "total_return")


def require_ledger(path: str | Path) -> Path:
    """``path`` as a Path, or a LedgerError when it is not an existing file."""
    p = Path(path)
    if not p.is_file():
        what = "is not a file" if p.exists() else "does not exist"
        msg = f"ledger `{p}` {what} (pass `--ledger FILE`, or run something first)"
        raise LedgerError(msg)
    return p


def read_ledger_bytes(p: Path, also: Callable[[], T] | None = None) -> Any:
    """The whole file, read under the shared lock; with ``also``, ``(bytes, also())`` where
    ``also`` runs under the same lock (a consistent view of the key folder's journal)."""
    with shared_lock(p):
        try:
            blob = p.read_bytes()
        except OSError as exc:
            msg = f"cannot read ledger `{p}`: {exc.strerror or exc}"
            raise LedgerError(msg) from None
        return blob if also is None else (blob, also())


def iter_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield every whole record in file order; a torn final line is skipped.

    A line other than the last that is not JSON raises :class:`~qpipe.errors.LedgerError`
    (nothing built on the ledger should silently skip a record). Hashes are not checked here;
    use :func:`~qpipe.ledger.verify.verify` for that.
    """
    p = require_ledger(path)
    lines = read_ledger_bytes(p).split(b"\n")
    trailing = lines.pop()
    for i, raw in enumerate(lines, 1):
        record, problem = parse_record(raw)
        if record is not None:
            yield record
        elif i == len(lines) and not trailing:
            return  # an unparsable final line is a torn write, not a record
        else:
            msg = f"ledger `{p}` line {i} {problem}; run `qpipe ledger verify`"
            raise LedgerError(msg)


def records(path: str | Path) -> list[dict[str, Any]]:
    """Every whole record of the ledger at ``path``, in file order."""
    return list(iter_records(path))


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What the ledger says about one run."""

    run_id: str
    started: str
    config_digest: str | None
    status: str  # "finished" | "failed" | "running"
    metrics: dict[str, float | None] = field(default_factory=dict)
    ended: str | None = None
    error: str | None = None
    records: int = 0


def _fold(state: dict[str, Any], rec: dict[str, Any]) -> None:
    """Update one run's summary state with one of its records."""
    kind, data = rec["kind"], rec["data"]
    if kind == "metrics":
        state["metrics"] = {k: data.get(k) for k in KEY_METRICS if k in data}
    elif kind == "run_finished" and state["status"] != "failed":
        state["status"], state["ended"] = "finished", rec["ts"]
    elif kind == "run_failed":
        state["status"], state["ended"] = "failed", rec["ts"]
        state["error"] = f"{data.get('error', '')}: {data.get('message', '')}".strip(": ")


def runs(path: str | Path) -> list[RunSummary]:
    """One summary per run that has a ``run_started`` record, in the order runs started.

    ``status`` is ``failed`` if the run wrote ``run_failed``, ``finished`` if it wrote
    ``run_finished``, else ``running`` (still going, or killed before it could say).
    ``metrics`` holds the key metrics (sharpe, cagr, max_drawdown, total_return) of its
    ``metrics`` record.
    """
    state: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    for rec in iter_records(path):
        rid = rec["run_id"]
        counts[rid] = counts.get(rid, 0) + 1
        if rec["kind"] == "run_started" and rid not in state:
            state[rid] = {
                "run_id": rid,
                "started": rec["ts"],
                "config_digest": rec["data"].get("config_digest"),
                "status": "running",
                "metrics": {},
            }
        elif rid in state:
            _fold(state[rid], rec)
    return [RunSummary(**s, records=counts[rid]) for rid, s in state.items()]


def find_run(all_records: list[dict[str, Any]], run_id: str, path: str | Path) -> str:
    """The one run id in ``all_records`` equal to ``run_id`` or starting with it."""
    ids = list(dict.fromkeys(r["run_id"] for r in all_records))
    matches = [rid for rid in ids if rid == run_id]
    matches = matches or [rid for rid in ids if rid.startswith(run_id)]
    if not matches:
        msg = f"no run `{run_id}` in ledger `{path}`"
        raise LedgerError(msg)
    if len(matches) > 1:  # name them, so the user can pick one
        shown = ", ".join(f"`{m}`" for m in matches[:5]) + (", ..." if len(matches) > 5 else "")
        msg = (
            f"{len(matches)} runs match `{run_id}` in ledger `{path}`: {shown}; give more of the id"
        )
        raise LedgerError(msg)
    return matches[0]


def run_records(path: str | Path, run_id: str) -> tuple[str, list[dict[str, Any]]]:
    """``(full run id, its records)`` for a run id or a unique prefix of one."""
    all_records = records(path)
    rid = find_run(all_records, run_id, path)
    return rid, [r for r in all_records if r["run_id"] == rid]
