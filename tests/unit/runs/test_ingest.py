"""The ingest phase hashes a price file once, and skips Tier 1 for a digest already validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from qpipe import _fs
from qpipe.config import ThreadSafeConfig
from qpipe.data import builtin_universe
from qpipe.ledger import records
from qpipe.runs import run

SMALL = {
    "strategy": {"lookback": 40, "skip": 5},
    "allocation": {"top_n": 4, "max_weight": 0.25},
    "run": {"report": False},
}


def _tier1(ledger: Path) -> list[dict]:
    return [
        r["data"]
        for r in records(ledger)
        if r["kind"] == "validation" and r["data"]["tier"] == "tier1"
    ]


def test_the_price_file_is_hashed_once_per_run(tmp_path: Path, monkeypatch) -> None:
    prices = tmp_path / "prices.parquet"
    builtin_universe(symbols=12, start="2020-01-01", end="2021-03-31").write_parquet(prices)
    hashed: list[Path] = []
    real = _fs.file_digest

    def counting(path):  # the real digest, counted for the price file
        if Path(path) == prices:
            hashed.append(Path(path))
        return real(path)

    monkeypatch.setattr(_fs, "file_digest", counting)
    cfg = ThreadSafeConfig.from_mapping({**SMALL, "data": {"source": str(prices)}})
    ledger = tmp_path / "audit.jsonl"
    run(cfg, out=tmp_path, ledger=ledger)  # fresh ledger: nothing validated to compare with
    assert len(hashed) == 1
    run(cfg, out=tmp_path, ledger=ledger)  # the ledger validated it: looked up, not re-hashed
    assert len(hashed) == 2
    first, second = _tier1(ledger)
    assert not first["skipped"] and second["skipped"]
    assert first["source_digest"] == second["source_digest"] == real(prices)


@pytest.mark.parametrize("skip", [True, False])
def test_skip_validated_false_validates_again(tmp_path: Path, skip: bool) -> None:
    prices = tmp_path / "prices.parquet"
    builtin_universe(symbols=12, start="2020-01-01", end="2021-03-31").write_parquet(prices)
    cfg = ThreadSafeConfig.from_mapping(
        {**SMALL, "data": {"source": str(prices)}, "validation": {"skip_validated": skip}}
    )
    ledger = tmp_path / "audit.jsonl"
    run(cfg, out=tmp_path, ledger=ledger)
    run(cfg, out=tmp_path, ledger=ledger)
    assert [t["skipped"] for t in _tier1(ledger)] == [False, skip]
