"""Group ``validation``: what the two tiers cost, first run and re-run, against per-step checks.

Each case is a full ``qpipe.api.run`` (ingest -> features -> signals -> allocation -> audit ->
backtest -> metrics, ledger and store; no HTML report) of the default momentum strategy on the
built-in universe scaled by its symbol count to ~1e6 and ~1e7 rows, read from a Parquet file.
Every case of a size shares one store (warmed by one run first), so they differ only in what
the ledger has seen:

- ``none``: ``validation.mode = "none"`` (no checks, no audit), a fresh ledger;
- ``two-tier-first``: a fresh ledger, so Tier 1 validates the file and the Tier 2 audit runs in
  full (structural checks and the point-in-time check of every step);
- ``two-tier-rerun``: the same file and config on a ledger that certified them: Tier 1 is
  skipped (validated digest) and Tier 2 is skipped for the validation certificate (asserted
  from the ledger records);
- ``per-step``: ``validation.mode = "per_step"``: the pandera schema after every stage (plus
  both tiers, on a fresh ledger).

The modes take turns, round after round (3 rounds at each size), so a change in the shared
machine's load falls on all of them alike; each mode's best round is compared with ``none``'s
best, in wall time (the target) and in process CPU time (steadier under load, reported beside
it). Targets: two tiers on a first run <= 1.10x at both sizes, a re-run <= 1.02x; per-step is
reported as measured. A missed target is an expected failure carrying its numbers, decided at
the last round.
"""

from __future__ import annotations

import itertools
import os
import time

import pytest
from _helpers import RESULTS, require_memory, size_id

from qpipe.api import run as qrun
from qpipe.config import ThreadSafeConfig
from qpipe.ledger import records

ROWS_PER_SYMBOL = 2_475  # the built-in universe: 2015-2024 business days, some gaps
SIZES = [int(float(s)) for s in os.environ.get("QPIPE_BENCH_VALIDATION_ROWS", "1e6,1e7").split(",")]
MODES = ["none", "two-tier-first", "two-tier-rerun", "per-step"]
ROUNDS = {1_000_000: 3, 10_000_000: 3}  # interleaved: every mode once per round, in turn
CASES = [(r, k, m) for r in SIZES for k in range(ROUNDS.get(r, 3)) for m in MODES]
TARGETS = {"two-tier-first": 1.10, "two-tier-rerun": 1.02}
_counter = itertools.count()
BEST: dict[tuple[str, str], tuple[float, float]] = {}  # (size, mode) -> best (wall, cpu)


@pytest.fixture(scope="module")
def price_files(tmp_path_factory):
    from qpipe.data.universe import builtin_universe

    cache: dict[int, str] = {}

    def get(rows: int) -> str:
        if rows not in cache:
            require_memory(rows * 200, f"the {size_id(rows)} universe and its runs")
            path = tmp_path_factory.mktemp("validation") / f"prices-{rows}.parquet"
            builtin_universe(symbols=rows // ROWS_PER_SYMBOL).write_parquet(path)
            cache[rows] = str(path)
        return cache[rows]

    return get


def _config(mode: str, store: str) -> ThreadSafeConfig:
    kind = {"none": "none", "per-step": "per_step"}.get(mode, "two_tier")
    return ThreadSafeConfig.default().replace(
        validation={"mode": kind}, run={"report": False}, store={"path": store}
    )


def _records_of(ledger: str, run_id: str) -> dict[str, dict]:
    """The run's tier-1 ``validation`` and its ``allocation_audit`` record data."""
    out: dict[str, dict] = {}
    for r in records(ledger):
        if r["run_id"] != run_id:
            continue
        if r["kind"] == "validation" and r["data"].get("tier") == "tier1":
            out["tier1"] = r["data"]
        if r["kind"] == "allocation_audit":
            out["audit"] = r["data"]
    return out


def _check_mode(mode: str, recs: dict[str, dict]) -> None:
    if mode == "none":
        assert "audit" not in recs
    elif mode == "two-tier-rerun":
        assert recs["tier1"]["skipped"], "tier 1 ran again on data the ledger had validated"
        assert recs["audit"].get("skipped"), "tier 2 ran again despite a certificate"
        assert recs["audit"]["certificate"]["seq"] > 0
    else:
        assert not recs["audit"].get("skipped") and recs["audit"]["passed"]
        assert "point_in_time" in recs["audit"]["checks"]
        if mode == "two-tier-first":
            assert not recs["tier1"]["skipped"]


@pytest.mark.parametrize(
    ("rows", "round_", "mode"), CASES, ids=[f"{size_id(r)}-r{k}-{m}" for r, k, m in CASES]
)
def test_validation_tiers(benchmark, price_files, tmp_path_factory, rows, round_, mode):
    """One run of one mode; the modes take turns round after round, so a change in the
    machine's load falls on all of them alike, and each mode's best round is compared."""
    benchmark.group = "validation"
    size = size_id(rows)
    path = price_files(rows)
    base = tmp_path_factory.getbasetemp() / f"validation-{size}"
    store = str(base / "store")
    cfg = _config(mode, store)
    certified = base / "certified.jsonl"  # the ledger that has seen this file and config
    if not (base / "warm.jsonl").exists():  # compile numba, fill the store, warm the page cache
        qrun(_config("none", store), data=path, out=base / "runs", ledger=base / "warm.jsonl")
    if mode == "two-tier-rerun" and not certified.exists():
        qrun(cfg, data=path, out=base / "runs", ledger=certified)
    ledger = certified if mode == "two-tier-rerun" else base / f"ledger-{next(_counter)}.jsonl"
    cpu: list[float] = []

    def one_run():
        c0 = time.process_time()
        result = qrun(cfg, data=path, out=base / "runs", ledger=ledger)
        cpu.append(time.process_time() - c0)
        return result

    result = benchmark.pedantic(one_run, rounds=1, warmup_rounds=0)
    assert result.metrics["n_rebalances"] > 100 and result.metrics["total_return"] is not None
    assert result.refs["prices"].rows == pytest.approx(rows, rel=0.05)
    recs = _records_of(str(result.ledger_path), result.run_id)
    _check_mode(mode, recs)
    wall = float(benchmark.stats.stats.min)
    old = BEST.get((size, mode))
    BEST[(size, mode)] = (min(wall, old[0]), min(cpu[0], old[1])) if old else (wall, cpu[0])
    best_wall, best_cpu = BEST[(size, mode)]
    RESULTS[("validation", mode, size)] = best_wall
    info: dict = {"rows": result.refs["prices"].rows, "cpu_s": cpu[0]}
    info["tier1_s"] = recs["tier1"]["seconds"]
    if "audit" in recs:
        audit = recs["audit"]
        info |= {"audit_s": audit["seconds"], "pit_s": audit["pit_seconds"]}
        info |= {f"pit_{s['step']}_s": s["seconds"] for s in audit["pit_stages"]}
    none = BEST.get((size, "none"))
    if none is not None and mode != "none":
        info["best_wall_ratio"] = best_wall / none[0]
        info["best_cpu_ratio"] = best_cpu / none[1]
    benchmark.extra_info.update(info)
    last_round = round_ == ROUNDS.get(rows, 3) - 1
    target = TARGETS.get(mode)
    if target is not None and none is not None and last_round and best_wall / none[0] > target:
        parts = ", ".join(f"{k} {v:.3g}" for k, v in info.items() if k != "rows")
        pytest.xfail(
            f"{mode} at {size}: best {best_wall:.2f} s vs none {none[0]:.2f} s = "
            f"{best_wall / none[0]:.3f}x > {target:.2f}x target (CPU {best_cpu:.2f} s vs "
            f"{none[1]:.2f} s = {best_cpu / none[1]:.3f}x; this round: {parts}; "
            "see docs/benchmarks.md)"
        )
