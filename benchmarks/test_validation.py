"""Group ``validation``: the five-stage pipeline with no validation, two tiers, and per step.

Each case is a full ``qpipe.api.run`` (features -> signals -> allocation -> backtest ->
metrics, ledger, store; no HTML report) of the default momentum strategy on the built-in
universe scaled by its symbol count to ~1e6 and ~1e7 rows, read from a Parquet file:

- ``none``: ``validation.mode = "none"`` (ingestion without checks, no audit);
- ``two-tier-first``: a fresh ledger, so Tier 1 validates the file at ingestion, plus the Tier 2
  allocation audit with its point-in-time check;
- ``two-tier-rerun``: the same file again on the same ledger: its digest is recorded as
  validated, so Tier 1 is skipped and only the audit remains;
- ``per-step``: ``validation.mode = "per_step"``: the pandera schema after every stage (plus
  Tier 1 and the audit, as the mode runs them).

Ratios are against ``none`` measured in the same session.
"""

from __future__ import annotations

import itertools
import json

import pytest
from _helpers import RESULTS, record, require_memory, size_id

from qpipe.api import run as qrun
from qpipe.config import ThreadSafeConfig

ROWS_PER_SYMBOL = 2_475  # the built-in universe: 2015-2024 business days, some gaps
SIZES = [1_000_000, 10_000_000]
MODES = ["none", "two-tier-first", "two-tier-rerun", "per-step"]
CASES = [(r, m) for r in SIZES for m in MODES]
TWO_TIER_TARGET = 0.10
_counter = itertools.count()


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


def _config(mode: str) -> ThreadSafeConfig:
    kind = {"none": "none", "per-step": "per_step"}.get(mode, "two_tier")
    return ThreadSafeConfig.default().replace(validation={"mode": kind}, run={"report": False})


def _tier1_seconds(ledger: str, run_id: str) -> tuple[float, bool]:
    with open(ledger, encoding="utf-8") as f:
        recs = [json.loads(line) for line in f]
    v = next(r["data"] for r in recs if r["run_id"] == run_id and r["kind"] == "validation")
    return float(v["seconds"]), bool(v["skipped"])


@pytest.mark.parametrize(("rows", "mode"), CASES, ids=[f"{size_id(r)}-{m}" for r, m in CASES])
def test_validation_tiers(benchmark, price_files, tmp_path, rows, mode):
    benchmark.group = "validation"
    size = size_id(rows)
    path = price_files(rows)
    cfg = _config(mode)
    shared = tmp_path.parent / f"validated-{rows}"  # the ledger that has seen this file
    if mode == "none" and rows == SIZES[0]:
        qrun(cfg, data=path, out=tmp_path / "warmup")  # compile numba, warm the page cache

    def setup():
        # a first run needs a ledger that has never validated the file
        if mode == "two-tier-rerun":
            out = shared
            if not (shared / "audit.jsonl").exists():
                qrun(cfg, data=path, out=shared)
        elif mode == "two-tier-first" and not (shared / "audit.jsonl").exists():
            out = shared
        else:
            out = tmp_path / f"r{next(_counter)}"
        return (), {"out": out}

    rounds = 1 if rows >= 10_000_000 else 2
    result = benchmark.pedantic(
        lambda out: qrun(cfg, data=path, out=out), setup=setup, rounds=rounds, warmup_rounds=0
    )
    tier1, skipped = _tier1_seconds(str(result.ledger_path), result.run_id)
    assert result.metrics["n_rebalances"] > 100 and result.metrics["total_return"] is not None
    assert result.refs["prices"].rows == pytest.approx(rows, rel=0.05)
    best = record(benchmark, "validation", mode, size)
    info = {"rows": result.refs["prices"].rows, "ingest_s": tier1, "tier1_skipped": skipped}
    if result.audit is not None:
        info |= {"audit_s": result.audit.seconds, "pit_s": result.audit.pit_seconds}
        assert result.audit.passed and "point_in_time" in result.audit.checks
    base = RESULTS.get(("validation", "none", size))
    if base is not None and mode != "none":
        info["ratio_vs_none"] = best / base
        info["overhead"] = best / base - 1
    benchmark.extra_info.update(info)
    if mode == "none":
        assert result.audit is None
        RESULTS[("validation", "none-ingest", size)] = tier1
    elif mode == "two-tier-rerun":
        assert skipped, "tier 1 ran again on data the ledger had validated"
        if base is not None:
            # overhead ~ the audit alone (Tier 1 skipped), whatever noise adds or removes
            audit = result.audit.seconds
            assert best - base <= 2 * audit + 0.1 * base, (best, base, audit)
    elif mode == "two-tier-first":
        assert not skipped
        if base is not None and best / base - 1 > TWO_TIER_TARGET:
            pytest.xfail(
                f"two-tier overhead {best / base - 1:.0%} > {TWO_TIER_TARGET:.0%} target at {size} "
                f"(tier 1 ingest {tier1:.2f}s, audit {result.audit.seconds:.2f}s of which "
                f"point-in-time {result.audit.pit_seconds:.2f}s; see docs/benchmarks.md)"
            )
