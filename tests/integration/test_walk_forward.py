"""Walk-forward end to end: selection, stitching with carried holdings, audit on every fold."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import polars as pl
import pytest

from qpipe.backtest import simulate
from qpipe.config import ThreadSafeConfig
from qpipe.errors import AllocationAuditError, ResearchError
from qpipe.ledger import records, verify
from qpipe.research import walk_forward
from qpipe.research.run import run_walk_forward
from qpipe.research.walkforward import evaluate_walk_forward, set_config
from qpipe.stages.base import Pipeline, stage
from qpipe.store import ArrowStore
from qpipe.strategy import build_strategy
from tests.integration._research import GRID, small_config
from tests.reference_backtest import reference_backtest

WINDOWS = {"train": 126, "test": 42}


@pytest.fixture(scope="module")
def wf(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wf")
    cfg = small_config(tmp)
    done = run_walk_forward(cfg, GRID, **WINDOWS, out=tmp / "runs")
    store = ArrowStore(tmp / "store")
    prices = done.run.prices
    return cfg, done, prices, store, tmp


def test_folds_tile_the_out_of_sample_span_with_the_default_purge(wf):
    _, done, prices, _, _ = wf
    s = done.result.splits
    # purge = the largest warm-up (lookback 40) + month-end holding (23)
    assert dict(s.params)["purge"] == 40 + 23
    assert len(s.folds) >= 5
    dates = prices["date"].unique().sort().to_list()
    pos = {d: i for i, d in enumerate(dates)}
    for a, b in zip(s.folds, s.folds[1:], strict=False):
        assert pos[b.test[0].start] == pos[a.test[0].end] + 1  # no gap, no overlap
    folds = done.folds
    assert folds.columns[:6] == [
        "fold",
        "train_start",
        "train_end",
        "test_start",
        "test_end",
        "set",
    ]
    assert {"strategy.lookback", "allocation.top_n", "is_sharpe", "oos_sharpe"} <= set(
        folds.columns
    )


def plain_sharpe(prices, weights, cfg, start, end):
    res = simulate(prices, weights, cost_bps=cfg.backtest.cost_bps, start=start, end=end)
    r = res.equity["return"].to_numpy()
    return float(np.mean(r) / np.std(r, ddof=1) * math.sqrt(252))


def test_each_fold_chooses_the_best_in_sample_set_by_an_independent_backtest(wf):
    cfg, done, prices, _, _ = wf
    sets = done.result.sets
    weights = [
        build_strategy(set_config(cfg, p))
        .apply_lazy({"prices": prices.lazy()})["weights"]
        .collect()
        for p in sets
    ]
    for fold, row in zip(done.result.splits.folds, done.folds.iter_rows(named=True), strict=True):
        (tr,) = fold.train
        (te,) = fold.test
        is_sr = [plain_sharpe(prices, w, cfg, tr.start, tr.end) for w in weights]
        best = int(np.argmax(is_sr))
        assert row["set"] == best
        assert row["is_sharpe"] == pytest.approx(is_sr[best], rel=1e-9)
        oos = plain_sharpe(prices, weights[best], cfg, te.start, te.end)
        assert row["oos_sharpe"] == pytest.approx(oos, rel=1e-9)


def test_stitched_equity_equals_a_plain_backtest_of_the_stitched_weights(wf):
    cfg, done, prices, _, _ = wf
    run_dir = done.out_dir
    equity = pl.read_ipc(run_dir / "equity.arrow")
    weights = pl.read_ipc(run_dir / "weights.arrow")
    start, end = done.result.start, done.result.end
    assert equity["date"].min() == start and equity["date"].max() == end
    plain = simulate(prices, weights, cost_bps=cfg.backtest.cost_bps, start=start, end=end)
    np.testing.assert_allclose(
        equity["equity"].to_numpy(), plain.equity["equity"].to_numpy(), rtol=1e-12, atol=0
    )
    # and an independent row-by-row implementation of the convention
    ref = reference_backtest(
        prices.to_dicts(), weights.to_dicts(), cost_bps=cfg.backtest.cost_bps, start=start, end=end
    )
    np.testing.assert_allclose(
        equity["equity"].to_numpy(), [d.equity for d in ref.days], rtol=1e-12, atol=0
    )


def test_holdings_carry_across_folds_and_warm_up_comes_from_before_each_window(wf):
    cfg, done, prices, _, _ = wf
    equity = done.run.equity
    weights = done.result.weights
    carried = 0
    for k, fold in enumerate(done.result.splits.folds):
        (te,) = fold.test
        inside = weights.filter(pl.col("date").is_between(te.start, te.end))
        first_reb = inside["date"].min()
        # the first rebalance of every window already holds names: the signal's look-back
        # reached into the history before the window
        assert inside.filter((pl.col("date") == first_reb) & (pl.col("weight") > 0)).height > 0
        chosen = set_config(cfg, done.result.sets[done.folds["set"][k]])
        full = build_strategy(chosen).apply_lazy({"prices": prices.lazy()})["weights"].collect()
        expect = full.filter(pl.col("date").is_between(te.start, te.end))
        assert inside.sort("date", "symbol").equals(expect.sort("date", "symbol"))
        if k == 0:
            continue
        # between a window's start and its first rebalance the previous fold's book is held
        # (a reset would be all cash, exposure 0)
        before = equity.filter(pl.col("date").is_between(te.start, first_reb, closed="left"))
        if before.height:
            assert (before["gross_exposure"] > 0.05).all()
            carried += 1
        day0 = equity.filter(pl.col("date") == te.start)
        assert day0["equity"][0] != pytest.approx(cfg.backtest.initial_capital, abs=1e-9)
    assert carried >= 2  # windows that open before their first month end


def test_the_folds_say_what_the_stitched_curve_earned_in_each_window(wf):
    """`oos_sharpe` is the chosen set alone from cash; the stitched columns are the run's own
    days, so the windows' returns compound to the run's total return (an independent check
    from metrics.json), and each Sharpe is recomputed here from equity.arrow."""
    _, done, _, _, _ = wf
    folds = pl.read_ipc(done.out_dir / "folds.arrow")
    equity = pl.read_ipc(done.out_dir / "equity.arrow")
    total = json.loads((done.out_dir / "metrics.json").read_text())["total_return"]
    assert math.prod(1 + r for r in folds["stitched_return"]) - 1 == pytest.approx(total, rel=1e-9)
    for row in folds.iter_rows(named=True):
        r = equity.filter(pl.col("date").is_between(row["test_start"], row["test_end"]))
        r = r["return"].fill_null(0.0).to_list()
        mean = sum(r) / len(r)
        sd = math.sqrt(sum((x - mean) ** 2 for x in r) / (len(r) - 1))
        assert row["stitched_sharpe"] == pytest.approx(mean / sd * math.sqrt(252), rel=1e-9)
    page = (done.out_dir / "report.html").read_text(encoding="utf-8")
    assert "stitched_sharpe" in page


def test_run_folder_and_ledger(wf):
    _, done, _, _, tmp = wf
    names = {p.name for p in done.out_dir.iterdir()}
    assert {"equity.arrow", "weights.arrow", "trades.arrow", "metrics.json", "report.html"} <= names
    assert {"folds.arrow", "trials.arrow", "research.json", "research.html"} <= names
    page = (done.out_dir / "research.html").read_text(encoding="utf-8")
    assert "Walk-forward" in page and 'id="chart-is-oos"' in page and 'id="folds"' in page
    folds = pl.read_ipc(done.out_dir / "folds.arrow")
    assert folds.equals(done.folds)
    trials = pl.read_ipc(done.out_dir / "trials.arrow")
    assert trials.height == len(done.result.splits.folds) * 4
    recs = [r for r in records(tmp / "runs" / "audit.jsonl") if r["run_id"] == done.research_id]
    kinds = [r["kind"] for r in recs]
    assert kinds == ["research_started", "research_finished", "checkpoint"]
    fin = recs[1]["data"]
    assert fin["splits_digest"] == done.result.splits.digest
    assert fin["run_id"] == done.run.run_id
    assert verify(tmp / "runs" / "audit.jsonl").ok


def test_the_stitched_runs_report_shows_the_research_sections(wf):
    """report.html of the stitched run: the verdict, IS vs OOS, the PBO, MinTRL and the folds,
    after the headline; the DSR judges the run's own out-of-sample returns with N = the grid's
    4 sets (no sweep in this ledger), V from the sets' full-history Sharpe ratios."""
    from qpipe.research.cpcv import trial_returns
    from qpipe.research.judge import set_sharpes
    from qpipe.stats import deflated_sharpe, sharpe_moments

    cfg, done, prices, store, tmp = wf
    html = (done.out_dir / "report.html").read_text(encoding="utf-8")
    order = [
        html.index(f'<section id="{sid}">')
        for sid in (
            "headline",
            "research",
            "verdict",
            "is-oos",
            "pbo",
            "min-trl",
            "folds",
            "equity",
        )
    ]
    assert order == sorted(order)  # fmt: skip
    for chart in ("chart-is-oos", "chart-lambda", "chart-min-trl", "chart-equity"):
        assert f'id="{chart}"' in html
    stats = done.stats
    assert stats is not None and stats["n_trials"] == 4 and stats["trials_from"] == "ledger"
    assert stats["sweeps_counted"] == [
        {"sweep_id": done.research_id, "n_trials": 4, "n_ok": 4, "kind": "walk_forward"}
    ]
    equity = pl.read_ipc(done.out_dir / "equity.arrow")
    returns = equity["return"].drop_nulls().to_numpy()
    sr, skew, kurt, t = sharpe_moments(returns)
    from qpipe.backtest.batch import build_panel
    from qpipe.backtest.panel import open_panel

    ref = store.ref_for(done.run.refs["prices"].digest)
    base = cfg.replace(sweep={})
    full = trial_returns(prices, open_panel(build_panel(ref, store), store), base,
                         list(done.result.sets))  # fmt: skip
    v = float(np.var(set_sharpes(full), ddof=1))
    values = stats["values"]
    assert values["n_obs"] == t and values["sr"] == pytest.approx(sr, abs=1e-12)
    assert values["sr_variance"] == pytest.approx(v, rel=1e-12)
    assert values["dsr"] == pytest.approx(deflated_sharpe(sr, 4, v, t, skew, kurt), abs=1e-12)
    assert done.verdict.startswith(f"DSR {values['dsr']:.2f} with N = 4 trials: ")
    assert done.verdict in html
    fin = next(r for r in records(tmp / "runs" / "audit.jsonl")
               if r["kind"] == "research_finished" and r["run_id"] == done.research_id)  # fmt: skip
    assert fin["data"]["result"]["stats"]["sweeps_counted"] == stats["sweeps_counted"]
    assert fin["data"]["result"]["stats"]["verdict"] == done.verdict


# --- a planted look-ahead is caught on every fold ------------------------------------------------


@stage(output="signals", shard="date")
def tomorrow(features: pl.LazyFrame) -> pl.LazyFrame:
    """A look-ahead signal: tomorrow's return."""
    nxt = pl.col("close").shift(-1).over("symbol") / pl.col("close") - 1
    return features.sort("symbol", "date").select("date", "symbol", nxt.alias("signal"))


def cheating(cfg: ThreadSafeConfig) -> Pipeline:
    good = build_strategy(cfg)
    return Pipeline((good.steps[0], tomorrow.bind(), good.steps[2]), meta=good.meta)


def test_a_planted_look_ahead_is_caught_by_the_point_in_time_check_on_every_fold(wf):
    cfg, done, prices, store, tmp = wf
    from qpipe.backtest.batch import build_panel, evaluate_chunk

    panel = build_panel(store.put(prices), store)
    base = cfg.replace(sweep={})

    def evaluate(trials):
        return evaluate_chunk(panel, base.to_dict(), trials, str(store.root))

    splits = done.result.splits
    res = evaluate_walk_forward(evaluate, prices, base, GRID, splits, strategy=cheating)
    assert len(res.audits) == len(splits.folds)
    for report in res.audits:
        assert not report.passed
        assert {v[2] for v in report.violations} == {"point_in_time"}
    with pytest.raises(AllocationAuditError, match="point_in_time"):
        run_walk_forward(cfg, GRID, **WINDOWS, out=tmp / "cheat", strategy=cheating)
    kinds = [r["kind"] for r in records(tmp / "cheat" / "audit.jsonl")]
    assert kinds[-2:] == ["research_failed", "checkpoint"]  # ended, and signed


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("windows", "words"),
    [
        ({"train": 400, "test": 126}, "longer than the data"),
        ({"train": 126, "test": 10}, "shorter than one rebalance period"),
        ({"train": 50, "test": 42, "purge": 50}, "`purge` (50 trading days) must be < `train`"),
    ],
)
def test_bad_windows_are_one_line_errors_recorded_in_the_ledger(tmp_path, windows, words):
    cfg = small_config(tmp_path)
    with pytest.raises(ResearchError) as info:
        run_walk_forward(cfg, GRID, **windows, out=tmp_path / "runs")
    assert words in str(info.value) and "\n" not in str(info.value)
    *_, last, checkpoint = records(tmp_path / "runs" / "audit.jsonl")
    assert last["kind"] == "research_failed" and checkpoint["kind"] == "checkpoint"
    assert last["data"] == {"error": "ResearchError", "message": str(info.value)}


def test_walk_forward_splits_need_tiling_test_windows():
    days = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(300)]
    s = walk_forward(days, 100, 30, step=40)
    with pytest.raises(ResearchError, match="`step` equal to `test`"):
        evaluate_walk_forward(lambda t: None, pl.DataFrame(), ThreadSafeConfig.default(), GRID, s)


class MapsCounted:
    """The session's RayEngine, with a list of the ``map_chunks`` calls made through it."""

    def __init__(self, engine) -> None:
        self.engine, self.maps = engine, []

    def map_chunks(self, fn, shared, chunks, on_result):
        chunks = list(chunks)
        self.maps.append((fn.__name__, len(chunks), self.engine.cluster_cpus()))
        self.engine.map_chunks(fn, shared, chunks, on_result)
        self.maps[-1] += (self.engine.stats.tasks, self.engine.stats.max_task_bytes)

    def __getattr__(self, name):
        return getattr(self.engine, name)


def test_on_ray_the_grid_is_sharded_and_the_result_is_the_same(wf, ray_engine, tmp_path):
    """`--engine ray` is not ignored: the windowed trials and the sets' daily returns run as
    Ray tasks (the panel shared as one ObjectRef: each task's arguments stay small), and the
    folds, every trial's metrics, the stitched equity and the statistics equal the local
    walk-forward's."""
    cfg, done, _, _, _ = wf
    engine = MapsCounted(ray_engine)
    on_ray = run_walk_forward(cfg, GRID, **WINDOWS, out=tmp_path / "runs", engine=engine)
    names = [m[0] for m in engine.maps]
    assert names == ["_trials_task", "_returns_task"]
    for _, chunks, cpus, tasks, task_bytes in engine.maps:
        assert tasks == chunks > 1 and chunks <= 2 * cpus
        assert task_bytes < 64 * 1024  # trials or sets and a ref, never the panel
    assert on_ray.folds.equals(done.folds)
    assert on_ray.result.trials.equals(done.result.trials)
    local_eq = pl.read_ipc(done.out_dir / "equity.arrow")
    assert pl.read_ipc(on_ray.out_dir / "equity.arrow").equals(local_eq)
    for key in ("sr", "sr_variance", "dsr", "pbo"):
        assert on_ray.stats["values"][key] == done.stats["values"][key], key
