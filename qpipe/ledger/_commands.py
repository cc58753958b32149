"""Terminal output of ``qpipe ledger verify|show``: to move into ``qpipe/cli/ledger.py``.

Temporary home until the ``qpipe/cli/`` package exists; the ledger itself only returns values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from qpipe._canonical import canonical_json
from qpipe.ledger.reader import KEY_METRICS, run_records, runs
from qpipe.ledger.verify import VerifyReport, verify

__all__ = ["show_command", "verify_command", "verify_lines"]


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def verify_lines(path: Path, report: VerifyReport) -> list[str]:
    """The lines ``ledger verify`` prints for ``report``."""
    if report.ok:
        return [
            f"ok: {_count(report.records, 'record')}, {_count(report.runs, 'run')}, "
            f"chain intact, {_count(report.artifacts, 'artifact')} verified"
        ]
    if report.reason is not None:
        lines = [f"FAILED: `{path}` {report.reason}"]
    else:
        lines = [
            f"FAILED: `{path}`: {_count(report.records, 'record')}, "
            f"{_count(report.runs, 'run')}, chain intact, but {len(report.bad_artifacts)} of "
            f"{_count(report.artifacts, 'artifact')} do not match their digest"
        ]
    for a in report.bad_artifacts:
        lines.append(
            f"  artifact `{a.name}` of run {a.run_id} (line {a.line}): {a.problem} at `{a.path}`"
        )
    return lines


def verify_command(path: Path) -> int:
    """``qpipe ledger verify [FILE]``: print a one-line summary; exit 0 if intact, else 1."""
    report = verify(path)
    for line in verify_lines(path, report):
        print(line)
    return 0 if report.ok else 1


def _fmt_metric(name: str, value: Any) -> str:
    from qpipe.report import format_metric  # one formatting for summary, report and listings

    if isinstance(value, int | float) or value is None:
        return format_metric(name, value)
    return str(value)


def _summarize_started(data: dict[str, Any]) -> str:
    return f"config {str(data.get('config_digest', ''))[:12]} engine={data.get('engine')} " + (
        f"code {data.get('code_version')} @ {str(data.get('git_commit', ''))[:10]}"
        + (" (dirty)" if data.get("git_dirty") else "")
    )


def _summarize_stage(data: dict[str, Any]) -> str:
    outs = ", ".join(
        f"{n}={o.get('rows')} rows"
        for n, o in (data.get("outputs") or {}).items()
        if isinstance(o, dict)
    )
    return f"{data.get('stage')}: {outs} in {_fmt_metric('seconds', data.get('seconds'))}s"


def summarize(kind: str, data: dict[str, Any]) -> str:
    """A short one-line view of a record's data for ``ledger show RUN_ID``."""
    if kind == "run_started":
        return _summarize_started(data)
    if kind == "dataset":
        return (
            f"{data.get('name')}: {data.get('rows')} rows, {str(data.get('digest', ''))[:12]} "
            f"from {data.get('source')}"
        )
    if kind == "stage":
        return _summarize_stage(data)
    if kind == "validation":
        verdict = "passed" if data.get("passed") else "FAILED"
        return f"{data.get('tier')} {data.get('target')}: {verdict}"
    if kind == "allocation_audit":
        n = data.get("n_violations", len(data.get("violations", [])))
        return "passed" if data.get("passed") else f"FAILED ({n} violations)"
    if kind == "metrics":
        return " ".join(f"{k}={_fmt_metric(k, v)}" for k, v in data.items())
    if kind == "artifact":
        return f"{data.get('name')}: {str(data.get('digest', ''))[:12]} {data.get('bytes')} bytes"
    text = canonical_json(data)
    return text if len(text) <= 100 else text[:97] + "..."


def _console() -> Any:
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:  # piped or captured: do not squeeze run ids into 80 columns
        console = Console(highlight=False, width=max(console.width, 160))
    return console


def _runs_table(path: Path) -> Any:
    from rich.table import Table

    table = Table(title=f"runs in {path}")
    for col in ("run id", "started", "config", "status", *KEY_METRICS):
        justify: Literal["left", "right"] = "right" if col in KEY_METRICS else "left"
        table.add_column(col, no_wrap=col in ("run id", "started"), justify=justify)
    for s in runs(path):
        table.add_row(
            s.run_id,
            s.started.replace("T", " ")[:19],
            (s.config_digest or "")[:12],
            s.status,
            *(_fmt_metric(k, s.metrics.get(k)) for k in KEY_METRICS),
        )
    return table


def _run_table(path: Path, run_id: str) -> Any:
    from rich.table import Table

    rid, recs = run_records(path, run_id)
    table = Table(title=f"run {rid}")
    table.add_column("seq", justify="right")
    table.add_column("time", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("data")
    for rec in recs:
        table.add_row(
            str(rec["seq"]),
            rec["ts"].replace("T", " ")[:23],
            rec["kind"],
            summarize(rec["kind"], rec["data"]),
        )
    return table


def show_command(path: Path, run_id: str | None = None) -> int:
    """``qpipe ledger show [RUN_ID]``: a table of runs, or of one run's records. Returns 0.

    ``run_id`` may be a unique prefix of a run id.
    """
    table = _runs_table(path) if run_id is None else _run_table(path, run_id)
    _console().print(table)
    return 0
