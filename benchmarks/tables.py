"""Print markdown tables from a pytest-benchmark JSON file (for docs/benchmarks.md).

Usage::

    pytest benchmarks --benchmark-only --benchmark-json=bench.json
    python benchmarks/tables.py bench.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value == 0 or 1e-3 <= abs(value) < 1e7:
            return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return str(value)


def _seconds(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def tables(data: dict) -> str:
    groups: dict[str, list[dict]] = {}
    for b in data["benchmarks"]:
        groups.setdefault(b["group"] or "", []).append(b)
    out = []
    for group, rows in groups.items():
        keys: list[str] = []
        for b in rows:
            keys += [k for k in b["extra_info"] if k not in keys]
        out.append(f"### {group}\n")
        out.append("| case | min | median | rounds | " + " | ".join(keys) + " |")
        out.append("|---|---:|---:|---:|" + "---:|" * len(keys))
        for b in rows:
            s = b["stats"]
            case = b["param"] or b["name"]
            extra = [_fmt(b["extra_info"].get(k, "")) for k in keys]
            out.append(
                f"| {case} | {_seconds(s['min'])} | {_seconds(s['median'])} | {s['rounds']} | "
                + " | ".join(extra)
                + " |"
            )
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(tables(json.loads(Path(sys.argv[1]).read_text())))
