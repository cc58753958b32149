"""Group ``ledger``: the cost of signing, against the cost of an append, in the same session.

Each case fills a fresh ledger with ``n`` ~400-byte records (one run = 20 records + its signed
checkpoint) and then measures, on it:

- ``append``: one more record (flock, tail read, journal entry, write, fsync);
- ``open-check``: what a run does when it opens the ledger (SHA-256 of the bytes up to the last
  signed checkpoint, then a parse of the records after it);
- ``checkpoint``: a signed checkpoint (scan, Ed25519 signature, the head in the key folder);
- ``verify``: a full ``verify`` (chain, signatures, head; no artifacts).

The extra info holds the times and the ratios to one append; small sizes by default
(``QPIPE_BENCH_LEDGER_LARGE=1`` adds 100,000 records).
"""

from __future__ import annotations

import os
import time

import pytest

from qpipe.ledger import Ledger, verify

SIZES = [1_000, 10_000] + ([100_000] if os.environ.get("QPIPE_BENCH_LEDGER_LARGE") else [])
PAD = "x" * 300


def _fill(led: Ledger, n: int) -> None:
    for i in range(n):
        led._append(f"run-{i // 20}", "stage", {"i": i, "pad": PAD})
        if i % 20 == 19:
            led._checkpoint(f"run-{i // 20}")


def _time(fn, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.parametrize("n", SIZES, ids=[f"{n // 1000}k-records" for n in SIZES])
def test_ledger_signing_costs(benchmark, tmp_path, n):
    benchmark.group = "ledger"
    led = Ledger(tmp_path / "audit.jsonl")
    _fill(led, n)
    led._checkpoint("fill")
    append = _time(lambda: led._append("run-x", "stage", {"pad": PAD}))
    led._checkpoint("run-x")
    opened = _time(lambda: led._append("run-y", "run_started", {"pad": PAD}, check=True))
    signed = _time(lambda: led._checkpoint("run-y"))
    report = benchmark.pedantic(
        lambda: verify(led.path, check_artifacts=False), rounds=1, warmup_rounds=0
    )
    assert report.ok, report.reason
    assert report.signing is not None and report.signing.status == "signed"
    checked = benchmark.stats.stats.min
    benchmark.extra_info.update(
        records=report.records,
        bytes=led.path.stat().st_size,
        append_ms=round(append * 1e3, 2),
        open_check_ms=round(opened * 1e3, 2),
        checkpoint_ms=round(signed * 1e3, 2),
        verify_s=round(checked, 3),
        verify_records_per_s=round(report.records / checked),
        open_check_over_append=round(opened / append, 2),
        checkpoint_over_append=round(signed / append, 2),
    )
