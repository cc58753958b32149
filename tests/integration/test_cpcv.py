"""CPCV end to end on a small built-in universe: the returns are exact backtests, the folder
and the ledger records are written."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from qpipe.backtest import simulate
from qpipe.errors import ResearchError
from qpipe.ledger import records
from qpipe.research.cpcv_run import run_cpcv
from qpipe.research.walkforward import set_config
from qpipe.strategy import build_strategy
from tests.integration._research import GRID, small_config


@pytest.fixture(scope="module")
def cpcv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cpcv")
    cfg = small_config(tmp)
    return cfg, run_cpcv(cfg, GRID, groups=6, test_groups=2, out=tmp / "runs"), tmp


def test_set_returns_are_plain_full_history_backtests(cpcv):
    cfg, done, tmp = cpcv
    from qpipe.store import ArrowStore

    store = ArrowStore(tmp / "store")
    digest = records(tmp / "runs" / "audit.jsonl")[0]["data"]["data_digest"]
    prices = store.open(store.ref_for(digest))
    for j, params in enumerate(done.result.sets_params):
        c = set_config(cfg, params)
        w = build_strategy(c).apply_lazy({"prices": prices.lazy()})["weights"].collect()
        eq = simulate(prices, w, cost_bps=c.backtest.cost_bps).equity
        r = eq["return"].to_numpy()
        full = done.result.sets.filter(set=j)["full_sharpe"][0]
        assert full == pytest.approx(np.mean(r) / np.std(r, ddof=1) * math.sqrt(252), rel=1e-12)


def test_folder_paths_and_ledger(cpcv):
    _, done, tmp = cpcv
    assert {p.name for p in done.out_dir.iterdir()} == {
        "splits.arrow",
        "paths.arrow",
        "sets.arrow",
        "research.json",
        "research.html",
    }
    paths = pl.read_ipc(done.out_dir / "paths.arrow")
    assert paths.height == 5 and paths["sharpe"].is_not_null().all()
    assert pl.read_ipc(done.out_dir / "splits.arrow").height == 15 * 4
    recs = [r for r in records(tmp / "runs" / "audit.jsonl") if r["run_id"] == done.research_id]
    kinds = [r["kind"] for r in recs]
    assert kinds == ["research_started", "research_finished", "checkpoint"]
    data = recs[1]["data"]
    assert data["splits"]["params"]["purge"] == 40 + 23
    assert data["result"]["pbo"]["n_halvings"] == 12_870 and 0 <= data["result"]["pbo"]["pbo"] <= 1
    assert set(data["result"]["artifacts"]) == {"research.html"} | {
        "splits.arrow",
        "paths.arrow",
        "sets.arrow",
        "research.json",
    }


def test_cpcv_purge_at_least_the_group_length_is_refused_and_recorded(tmp_path):
    cfg = small_config(tmp_path)
    with pytest.raises(ResearchError, match="must be < the group length"):
        run_cpcv(cfg, GRID, groups=6, test_groups=2, purge=200, out=tmp_path / "runs")
    kinds = [r["kind"] for r in records(tmp_path / "runs" / "audit.jsonl")]
    assert kinds[-2:] == ["research_failed", "checkpoint"]


def test_cpcv_groups_shorter_than_a_rebalance_period_are_refused(tmp_path):
    cfg = small_config(tmp_path)
    with pytest.raises(ResearchError, match=r"a group of `groups` = 40 \(\d+ trading days\) is"):
        run_cpcv(cfg, GRID, groups=40, test_groups=2, purge=0, out=tmp_path / "runs")


def test_the_verdict_judges_the_best_set_with_n_counted_from_the_ledger(cpcv, tmp_path):
    """The DSR of the set with the best full-history Sharpe, N = the grid's 4 sets; a second
    CPCV of the same grid on the same data and config adds no trial (the same sets), one of
    another grid adds its sets."""
    cfg, done, tmp = cpcv
    stats = done.stats
    best = int(np.argmax(done.result.sets.sort("set")["full_sharpe"].to_numpy()))
    assert stats["judged_set"] == best and stats["n_trials"] == 4
    assert stats["values"]["pbo"]["pbo"] == done.pbo.pbo
    page = (done.out_dir / "research.html").read_text(encoding="utf-8")
    assert done.verdict.startswith("DSR ") and done.verdict in page
    assert '<section id="min-trl">' in page and '<section id="sweeps">' in page
    again = run_cpcv(cfg, GRID, groups=4, test_groups=2, out=tmp / "runs")
    assert again.stats["n_trials"] == 4
    assert [s["sweep_id"] for s in again.stats["sweeps_counted"]] == [again.research_id]
    other = run_cpcv(cfg, {"strategy.lookback": [30, 50, 60]}, groups=4, test_groups=2,
                     out=tmp / "runs")  # fmt: skip
    assert other.stats["n_trials"] == 3  # another family (other grid keys): counted alone
    wider = run_cpcv(cfg, {**GRID, "strategy.lookback": [20, 40, 60]}, groups=4, test_groups=2,
                     out=tmp / "runs")  # fmt: skip
    assert wider.stats["n_trials"] == 6 + 4  # its 6 sets and the first study's 4
