"""The audit and provenance sections, and how to gather them from the run's ledger records.

The ledger is the truth: :func:`from_records` reads the records a run has written so far (each a
mapping with ``seq``, ``kind`` and ``data``, as ``Ledger.append`` returns them) and returns the
``audit``, ``validation`` and ``provenance`` inputs of the run page.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from qpipe.views.format import EM_DASH, esc
from qpipe.views.html import badge, data_table, kv_table


def from_records(
    run_id: str, records: Sequence[Mapping[str, Any]], ledger_path: str | Path
) -> tuple[dict[str, Any] | None, list[dict[str, Any]], dict[str, Any]]:
    """``(audit, validation, provenance)`` from one run's ledger records (in ledger order)."""
    audit: dict[str, Any] | None = None
    validation: list[dict[str, Any]] = []
    datasets: list[dict[str, Any]] = []
    started: Mapping[str, Any] = {}
    for rec in records:
        kind, data = rec.get("kind"), rec.get("data") or {}
        if kind == "run_started":
            started = data
        elif kind == "allocation_audit":
            audit = {**data, "seq": rec.get("seq")}
        elif kind == "validation":
            validation.append({**data, "seq": rec.get("seq")})
        elif kind == "dataset":
            datasets.append({**data, "seq": rec.get("seq")})
    seqs = [rec["seq"] for rec in records if isinstance(rec.get("seq"), int)]
    ledger = str(ledger_path)
    provenance = {
        "run_id": run_id,
        "config_digest": started.get("config_digest"),
        "code_version": started.get("code_version"),
        "git_commit": started.get("git_commit"),
        "git_dirty": started.get("git_dirty"),
        "engine": started.get("engine"),
        "datasets": datasets,
        "ledger": ledger,
        "seq_first": min(seqs) if seqs else None,
        "seq_last": max(seqs) if seqs else None,
        "records": [(rec.get("seq"), rec.get("kind")) for rec in records],
        "replay": f"python -m qpipe replay {shlex.quote(run_id)} --ledger {shlex.quote(ledger)}",
    }
    return audit, validation, provenance


def audit_html(audit: Mapping[str, Any] | None, validation: Sequence[Mapping[str, Any]]) -> str:
    """Every validation record (Tier 1 schema at ingestion, Tier 2 audit, per-step checks), then
    the Tier 2 audit in detail (checks, point-in-time cuts) and the allocation warnings."""
    parts = ["<h3>Validation records</h3>", _validation_table(validation)]
    parts += ["<h3>Tier 2: audit of the final allocation</h3>", _tier2(audit)]
    return "".join(parts)


def _failures(failures: Sequence[Any]) -> str:
    """``3 finite (2024-01-02 AAA)``-style text for typed failure records; a count otherwise."""
    if not failures:
        return "0"
    shown = []
    for f in failures[:3]:
        if isinstance(f, Mapping):
            where = f" ({f['example']})" if f.get("example") else ""
            count = f.get("count", 1)
            shown.append(f"{count:,} {f.get('check', '?')}{where}")
        else:
            shown.append(str(f))
    more = f" and {len(failures) - 3} more" if len(failures) > 3 else ""
    return esc("; ".join(shown) + more)


def _validation_table(validation: Sequence[Mapping[str, Any]]) -> str:
    if not validation:
        return (
            '<p class="muted">no validation record for this run (not recorded or not passed in)</p>'
        )
    rows = []
    for v in validation:
        ok = v.get("passed")
        if v.get("skipped"):
            state = badge(None, "skipped (validated before)")
        else:
            state = badge(bool(ok), "passed" if ok else "FAILED")
        rows.append(
            [
                esc(v.get("tier", "tier1")),
                esc(v.get("target", EM_DASH)),
                state,
                _failures(v.get("failures") or []),
                f"<code>{esc(str(v.get('source_digest') or EM_DASH)[:16])}</code>",
                esc(v.get("seq", EM_DASH)),
            ]
        )
    head = ["tier", "target", "result", "failures", "source digest", "ledger seq"]
    return data_table(head, rows, [False, False, False, False, False, True])


def _tier2(audit: Mapping[str, Any] | None) -> str:
    if audit is None:
        return '<p class="muted">the allocation audit did not run (validation mode `none`)</p>'
    ok = bool(audit.get("passed"))
    cuts = audit.get("pit_cuts") or []
    rows = [
        ("result", badge(ok, "passed" if ok else "FAILED")),
        ("checks", esc(", ".join(audit.get("checks") or []) or EM_DASH)),
        ("violations", f"{int(audit.get('n_violations') or 0):,}"),
        ("point-in-time cuts", esc(", ".join(cuts)) if cuts else "none (no strategy to re-run)"),
        ("audit time", f"{float(audit.get('seconds') or 0):.3f} s "
         f"(point-in-time {float(audit.get('pit_seconds') or 0):.3f} s)"),
        ("ledger seq", esc(audit.get("seq", EM_DASH))),
    ]  # fmt: skip
    out = kv_table(rows)
    violations = audit.get("violations") or []
    if violations:
        vrows = [[esc(c) for c in v] for v in violations[:20]]
        out += data_table(["date", "symbol", "check", "value"], vrows, [False, False, False, True])
    warnings = audit.get("warnings") or []
    out += "<h3>Allocation warnings</h3>"
    if warnings:
        out += "<ul>" + "".join(f"<li>{badge(None, 'warning')} {esc(w)}</li>" for w in warnings)
        out += "</ul>"
    else:
        out += '<p class="muted">none (no all-cash rebalance, no cash drag)</p>'
    return out


def _universe(datasets: Sequence[Mapping[str, Any]]) -> str:
    """The survivorship flag: whether the prices' universe is point-in-time (from the ledger)."""
    flags = [d.get("point_in_time") for d in datasets if d.get("name") == "prices"]
    if not flags or flags[-1] is None:
        return EM_DASH + " (not recorded)"
    if flags[-1]:
        return badge(True, "point-in-time") + " members chosen only while they were members"
    return badge(None, "not point-in-time") + (
        " every priced symbol is eligible on every date: survivorship bias is possible"
    )


def provenance_html(p: Mapping[str, Any]) -> str:
    """Run id, digests, code version, ledger file and sequence numbers, the replay command."""
    if not p:
        return '<p class="muted">no provenance passed in (rendered outside a run)</p>'

    def code(value: object) -> str:
        return EM_DASH if value in (None, "") else f"<code>{esc(value)}</code>"

    commit = code(p.get("git_commit"))
    if p.get("git_dirty"):
        commit += " (uncommitted changes)"
    data = "<br>".join(
        f"{esc(d.get('name', 'data'))}: {code(d.get('digest'))} from {esc(d.get('source', ''))}"
        for d in p.get("datasets") or []
    )
    seqs = EM_DASH
    if p.get("seq_first") is not None:
        seqs = f"{p['seq_first']}–{p['seq_last']}: " + ", ".join(
            f"{esc(s)} {esc(k)}" for s, k in p.get("records") or []
        )
    rows = [
        ("run id", code(p.get("run_id"))),
        ("config digest", code(p.get("config_digest"))),
        ("data digest", data or EM_DASH),
        ("universe", _universe(p.get("datasets") or [])),
        ("code version", code(p.get("code_version"))),
        ("commit", commit),
        ("engine", code(p.get("engine"))),
        ("ledger file", code(p.get("ledger"))),
        ("ledger records (seq)", seqs),
        ("replay", code(p.get("replay"))),
    ]
    return kv_table(rows)
