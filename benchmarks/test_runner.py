"""Group ``runner``: ``python runner.py`` end to end on the built-in universe (issue 3, "Speed").

``cold``: a fresh ``--out`` folder, so the 500 x 10-year universe is generated and validated
(Tier 1) before the run; ``warm``: the same folder again, the universe comes from the store.
Each is a new interpreter (imports included). The per-phase breakdown comes from the ledger.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from _helpers import REPO, record

PHASES = ("ingest", "features", "cross_sectional", "allocate", "audit", "backtest", "metrics")


def _breakdown(ledger, run_id: str) -> dict[str, float]:
    recs = [json.loads(line) for line in ledger.read_text(encoding="utf-8").splitlines()]
    recs = [r for r in recs if r["run_id"] == run_id]
    out: dict[str, float] = {}
    for r in recs:
        d = r["data"]
        if r["kind"] == "validation" and d.get("tier") == "tier1":
            out["ingest"] = d["seconds"]
        elif r["kind"] == "stage":
            out[d["stage"]] = out.get(d["stage"], 0.0) + d["seconds"]
        elif r["kind"] == "allocation_audit":
            out["audit"] = d["seconds"]
        elif r["kind"] == "run_finished":
            out["run_total"] = d["seconds"]
    return out


@pytest.mark.parametrize("state", ["cold", "warm"], ids=["500x10y-cold", "500x10y-warm"])
def test_runner_default(benchmark, tmp_path_factory, state):
    benchmark.group = "runner"
    out = tmp_path_factory.getbasetemp() / "runner-out"
    walls: list[float] = []

    def run() -> None:
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "runner.py", "--out", str(out)],
            cwd=REPO, check=True, capture_output=True, timeout=300,
        )
        walls.append(time.perf_counter() - t)

    benchmark.pedantic(run, rounds=1, warmup_rounds=0)
    ledger = out / "audit.jsonl"
    run_ids = [json.loads(x)["run_id"] for x in ledger.read_text().splitlines()]
    phases = _breakdown(ledger, run_ids[-1])
    assert set(PHASES) <= set(phases), phases
    runs = sorted(p for p in out.iterdir() if p.is_dir() and p.name != "store")
    assert (runs[-1] / "metrics.json").exists() and (runs[-1] / "report.html").exists()
    best = record(benchmark, "runner", state, "500x10y")
    accounted = sum(phases[p] for p in PHASES)
    benchmark.extra_info.update(
        {**{f"{k}_s": round(v, 3) for k, v in phases.items()}, "wall_s": best,
         "outside_run_s": best - phases["run_total"], "unaccounted_in_run_s":
         phases["run_total"] - accounted}
    )
    if state == "warm":
        assert phases["ingest"] < phases.get("run_total", 1e9)
