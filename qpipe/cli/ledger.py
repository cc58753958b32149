"""``python -m qpipe ledger verify|show``: the ledger, checked and listed."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal

from rich.table import Table

from qpipe.cli._app import out_console
from qpipe.cli._paths import command_paths
from qpipe.ledger import canonical_json

__all__ = ["register"]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    ledger = sub.add_parser("ledger", help="verify or show the ledger")
    lsub = ledger.add_subparsers(dest="ledger_command", required=True)
    v = lsub.add_parser("verify", parents=[common], help="check every hash, link and artifact")
    v.add_argument("file", nargs="?", help="ledger file (same as --ledger)")
    v.add_argument(
        "--allow-open-runs",
        action="store_true",
        help="accept records after the last checkpoint that qpipe wrote here (runs in progress)",
    )
    v.add_argument("--anchor", metavar="FILE", help="also check against an exported anchor")
    v.set_defaults(handler=verify_command)
    a = lsub.add_parser("anchor", parents=[common], help="print or export the signed head")
    a.add_argument("--output", metavar="FILE", help="write the anchor (JSON) to FILE")
    a.set_defaults(handler=anchor_command)
    f = lsub.add_parser(
        "forget", parents=[common], help="forget the signed head of a ledger you removed"
    )
    f.add_argument("file", nargs="?", help="ledger file (same as --ledger)")
    f.set_defaults(handler=forget_command)
    s = lsub.add_parser("show", parents=[common], help="list runs, or one run's records")
    s.add_argument("run_id", nargs="?")
    s.set_defaults(handler=show_command)


def _ledger_path(args: argparse.Namespace) -> Path:
    if getattr(args, "file", None):
        return Path(args.file)
    return command_paths(args).ledger


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _signing_note(report: Any) -> str:
    signing = report.signing
    if signing is None:
        return ""
    if signing.status == "signed":
        note = f", signed ({_count(signing.checkpoints, 'checkpoint')}, key {signing.key_id})"
    elif signing.status == "no key":
        note = ", signatures not checked (no signing key in the key folder)"
    else:
        note = ", unsigned ledger (no checkpoint: the chain alone is checked)"
    if signing.tail:
        note += f", open runs: {_count(len(signing.tail), 'record')} after the last checkpoint"
    return note


def verify_command(args: argparse.Namespace) -> int:
    """Print a one-line verdict (and any bad artifacts); exit 0 if intact, else 1."""
    from qpipe.ledger import read_anchor, verify

    path = _ledger_path(args)
    anchor = read_anchor(args.anchor) if args.anchor else None
    report = verify(path, allow_open_runs=args.allow_open_runs, anchor=anchor)
    if report.ok:
        print(
            f"ok: {_count(report.records, 'record')}, {_count(report.runs, 'run')}, "
            f"chain intact{_signing_note(report)}"
            f"{f', anchor (seq {anchor.seq}) held' if anchor else ''}, "
            f"{_count(report.artifacts, 'artifact')} verified"
        )
        return 0
    if report.reason is not None:
        print(f"FAILED: `{path}` {report.reason}")
    elif report.bad_artifacts:
        print(
            f"FAILED: `{path}`: {_count(report.records, 'record')}, "
            f"{_count(report.runs, 'run')}, chain intact, but {len(report.bad_artifacts)} of "
            f"{_count(report.artifacts, 'artifact')} do not match their digest"
        )
    else:
        print(
            f"FAILED: `{path}`: chain intact, but "
            f"{_count(len(report.bad_certificates), 'validation certificate')} do not hold"
        )
    for a in report.bad_artifacts:
        print(f"  artifact `{a.name}` of run {a.run_id} (line {a.line}): {a.problem} at `{a.path}`")
    for seq, problem in report.bad_certificates:
        print(f"  skipped audit (record {seq}): {problem}")
    return 1


def forget_command(args: argparse.Namespace) -> int:
    """Drop the key folder's head and journal for a ledger deleted or replaced on purpose."""
    from qpipe.ledger import forget_head

    path = _ledger_path(args)
    head = forget_head(path)
    if head is None:
        print(f"nothing to forget: the key folder holds no signed head for `{path}`")
    else:
        print(
            f"forgot the signed head of `{path}` (checkpoint seq {head.seq}, {head.hash[:12]}); "
            f"the next run starts a new one"
        )
    return 0


def anchor_command(args: argparse.Namespace) -> int:
    """Print the ledger's last signed head as JSON (or write it to ``--output``) to publish."""
    import json

    from qpipe._fs import write_bytes_atomic
    from qpipe.ledger import signed_head

    path = _ledger_path(args)
    text = json.dumps(signed_head(path).to_json(), indent=1, sort_keys=True) + "\n"
    if args.output:
        write_bytes_atomic(args.output, text.encode("ascii"))
        print(f"anchor of `{path}` written to `{args.output}`")
    else:
        print(text, end="")
    return 0


def _fmt_metric(name: str, value: Any) -> str:
    from qpipe.views import format_metric  # one formatting for summary, report and listings

    if isinstance(value, int | float) or value is None:
        return format_metric(name, value)
    return str(value)


def _summarize(kind: str, data: dict[str, Any]) -> str:
    """A short one-line view of a record's data for ``ledger show RUN_ID``."""
    if kind == "run_started":
        return f"config {str(data.get('config_digest', ''))[:12]} engine={data.get('engine')} " + (
            f"code {data.get('code_version')} @ {str(data.get('git_commit', ''))[:10]}"
            + (" (dirty)" if data.get("git_dirty") else "")
        )
    if kind == "dataset":
        return (
            f"{data.get('name')}: {data.get('rows')} rows, {str(data.get('digest', ''))[:12]} "
            f"from {data.get('source')}"
        )
    if kind == "stage":
        outs = ", ".join(
            f"{n}={o.get('rows')} rows"
            for n, o in (data.get("outputs") or {}).items()
            if isinstance(o, dict)
        )
        return f"{data.get('stage')}: {outs} in {_fmt_metric('seconds', data.get('seconds'))}s"
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
    if kind == "checkpoint":
        return f"signs seq 1-{data.get('seq')} (key {data.get('key_id')})"
    text = canonical_json(data)
    return text if len(text) <= 100 else text[:97] + "..."


def _runs_table(path: Path) -> Table:
    from qpipe.ledger import KEY_METRICS, runs

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


def _run_table(path: Path, run_id: str) -> Table:
    from qpipe.ledger import run_records

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
            _summarize(rec["kind"], rec["data"]),
        )
    return table


def show_command(args: argparse.Namespace) -> int:
    """A table of runs, or of one run's records (``run_id`` may be a unique prefix). Returns 0."""
    path = _ledger_path(args)
    table = _runs_table(path) if args.run_id is None else _run_table(path, args.run_id)
    out_console(wide=True).print(table)
    return 0
