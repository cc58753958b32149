"""The batched sweep path equals the single-run path, trial by trial, metric by metric.

The single-run reference here is what :func:`qpipe.run` does after ingestion: the strategy
stages, ``simulate`` (through the backtest stage) and the metrics stage, with metrics.json's
number conversion. The batched rows must equal it exactly (the same floats), which also makes
``sweep promote`` reproduce a row.
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from qpipe.backtest.batch import PanelRef, build_panel, evaluate_chunk
from qpipe.backtest.metrics import METRIC_NAMES
from qpipe.config import ThreadSafeConfig
from qpipe.errors import QpipeError
from qpipe.stages.backtest import backtest as backtest_stage
from qpipe.stages.backtest import metrics as metrics_stage
from qpipe.strategy import build_strategy
from tests.conftest import random_walk_prices

SMALL = {"strategy": {"lookback": 20, "skip": 2}, "allocation": {"top_n": 3}}


def base_config(**sections: dict[str, Any]) -> ThreadSafeConfig:
    data = {k: dict(v) for k, v in SMALL.items()}
    for section, table in sections.items():
        data.setdefault(section, {}).update(table)
    return ThreadSafeConfig.from_mapping(data)


def single_run(
    cfg: ThreadSafeConfig, prices: pl.DataFrame, benchmark: pl.DataFrame | None = None
) -> dict[str, Any]:
    """metrics.json of a run on ``prices`` (after ingestion), or {"error": first line}.

    ``benchmark``: the benchmark prices (``data.benchmark``); default the prices themselves.
    """
    bench = prices if benchmark is None else benchmark
    try:
        if (
            cfg.allocation.scheme in ("top_n", "inverse_vol")
            and cfg.allocation.top_n > prices["symbol"].n_unique()
        ):
            return {"error": "top_n"}
        weights = build_strategy(cfg).apply_lazy({"prices": prices.lazy()})["weights"]
        b = cfg.backtest
        equity, _ = backtest_stage.fn(
            prices.lazy(),
            weights,
            initial_capital=b.initial_capital,
            cost_bps=b.cost_bps,
            slippage_bps=b.slippage_bps,
            execution=b.execution,
            borrow_bps=b.borrow_bps,
            cash_rate=b.cash_rate,
            start=b.start,
            end=b.end,
        )
        eq = equity.collect()
        row = (
            metrics_stage.fn(eq.lazy(), weights, bench.lazy(), initial_capital=b.initial_capital)
            .collect()
            .row(0, named=True)
        )
        partial = bool((eq["unfilled"] > 0).any())
    except QpipeError as exc:
        return {"error": str(exc).splitlines()[0]}
    out: dict[str, Any] = {"_partial_fill": partial}
    for k, v in row.items():  # qpipe.api._json_number
        if v is None or not math.isfinite(v):
            out[k] = None
        else:
            out[k] = int(v) if k.startswith("n_") and float(v).is_integer() else v
    return out


def trial_config(cfg: ThreadSafeConfig, params: dict[str, Any]) -> ThreadSafeConfig:
    data = cfg.to_dict()
    for key, value in params.items():
        section, name = key.split(".")
        data[section][name] = value
    return ThreadSafeConfig.from_mapping(data)


@pytest.fixture
def panel(store) -> tuple[PanelRef, pl.DataFrame]:
    prices = random_walk_prices(symbols=8, days=160, seed=3)
    ref = store.put(prices)
    return build_panel(ref, store), store.open(ref)


def assert_rows_equal(table: pa.Table, cfg: ThreadSafeConfig, trials, prices) -> int:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    assert frame["trial"].to_list() == [i for i, _ in trials]
    ok = 0
    for row, (_, params) in zip(frame.iter_rows(named=True), trials, strict=True):
        expected = single_run(trial_config(cfg, params), prices)
        if "error" in expected:
            assert row["status"] == "failed", (params, expected)
            assert row["error"] and "\n" not in row["error"]
            continue
        assert row["status"] == "ok" and row["error"] is None, (params, row["error"])
        for name in METRIC_NAMES:
            assert row[name] == expected[name], (params, name, row[name], expected[name])
        ok += 1
    return ok


def test_rows_equal_the_single_run_exactly(panel, store):
    ref, prices = panel
    cfg = base_config()
    trials = [
        (10 + i, {"strategy.lookback": lb, "allocation.top_n": n, "backtest.cost_bps": c})
        for i, (lb, n, c) in enumerate(
            (lb, n, c) for lb in (10, 20) for n in (1, 3, 8) for c in (0.0, 10.0, 250.0)
        )
    ]
    table = evaluate_chunk(ref, cfg.to_dict(), trials, str(store.root))
    assert assert_rows_equal(table, cfg, trials, prices) == len(trials)


def test_schemes_windows_and_execution_options_equal_the_single_run(panel, store):
    ref, prices = panel
    cfg = base_config(allocation={"rebalance": "weekly"})
    trials = list(
        enumerate(
            [
                {"allocation.scheme": "inverse_vol"},
                {"allocation.scheme": "long_short", "allocation.long_only": False},
                {"allocation.scheme": "proportional"},
                {"allocation.target_vol": 0.1, "allocation.vol_window": 10},
                {"backtest.start": "2020-03-02", "backtest.end": "2020-06-30"},
                {"backtest.slippage_bps": 5.0, "backtest.cash_rate": 0.02},
                {"allocation.max_weight": 0.2, "allocation.gross_leverage": 0.5},
                {"strategy.kind": "mean_reversion", "strategy.signal": "zscore"},
                {"strategy.kind": "low_volatility", "strategy.vol_window": 5},
                {"strategy.kind": "ma_crossover", "strategy.fast": 5, "strategy.slow": 20},
                {"allocation.rebalance": "every_k", "allocation.every_k": 7},
            ]
        )
    )
    table = evaluate_chunk(ref, cfg.to_dict(), trials, str(store.root))
    assert assert_rows_equal(table, cfg, trials, prices) == len(trials)


def test_bad_trials_become_failed_rows_and_the_chunk_goes_on(panel, store):
    ref, _ = panel
    cfg = base_config()
    trials = [
        (0, {"allocation.top_n": 2}),
        (1, {"allocation.top_n": 99}),  # more than the 8 symbols
        (2, {"allocation.scheme": "nope"}),  # config rejects it
        (3, {"backtest.start": "2030-01-01"}),  # no price dates in the window
        (4, {"data.symbols": 3}),  # one panel per sweep
        (5, {"allocation.top_n": 4}),
    ]
    frame = pl.from_arrow(evaluate_chunk(ref, cfg.to_dict(), trials, str(store.root)))
    assert isinstance(frame, pl.DataFrame)
    assert frame["status"].to_list() == ["ok", "failed", "failed", "failed", "failed", "ok"]
    errors = frame["error"].to_list()
    assert errors[0] is None and errors[5] is None
    assert "top_n" in errors[1] and "scheme" in errors[2]
    assert "no price dates" in errors[3] and "data.symbols" in errors[4]
    assert frame.filter(pl.col("status") == "failed")["sharpe"].null_count() == 4


def test_columns_are_typed_and_the_result_is_deterministic(panel, store):
    ref, _ = panel
    cfg = base_config()
    trials = [
        (
            7,
            {
                "allocation.top_n": 2,
                "backtest.cost_bps": 5,
                "allocation.long_only": True,
                "allocation.rebalance": "weekly",
            },
        ),
        (
            3,
            {
                "allocation.top_n": 3,
                "backtest.cost_bps": 7.5,
                "allocation.long_only": False,
                "allocation.rebalance": "month_end",
            },
        ),
    ]
    one = evaluate_chunk(ref, cfg.to_dict(), trials, str(store.root))
    two = evaluate_chunk(ref, cfg.to_dict(), trials, str(store.root))
    types = dict(zip(one.schema.names, one.schema.types, strict=True))
    assert types["trial"] == pa.int64() and types["allocation.top_n"] == pa.int64()
    assert types["backtest.cost_bps"] == pa.float64()
    assert types["allocation.long_only"] == pa.bool_()
    assert types["allocation.rebalance"] == pa.string()
    assert types["n_rebalances"] == pa.int64() and types["sharpe"] == pa.float64()
    assert one.schema.names[-3:] == ["status", "error", "seconds"]
    assert one.drop(["seconds"]).equals(two.drop(["seconds"]))
    assert one.column("trial").to_pylist() == [7, 3]


def test_panel_is_memory_mapped_small_and_idempotent(panel, store):
    import pickle

    ref, prices = panel
    again = build_panel(ref.prices, store)
    assert again == ref
    assert len(pickle.dumps(ref)) < 2_000
    from qpipe.backtest.panel import open_panel

    opened = open_panel(ref, store)
    assert not opened.close.flags.owndata and not opened.close.flags.writeable
    assert opened.close.shape == (prices["date"].n_unique(), prices["symbol"].n_unique())
    assert int(np.count_nonzero(~np.isnan(opened.close))) == prices.height


def test_promoted_run_metrics_equal_the_row(tmp_path):
    from qpipe.api import run
    from qpipe.ingest import ingest_frame
    from qpipe.store import ArrowStore

    prices = random_walk_prices(symbols=8, days=160, seed=3)
    src = tmp_path / "prices.parquet"
    prices.write_parquet(src)
    cfg = base_config(data={"source": str(src)}, run={"report": False})
    store = ArrowStore(tmp_path / "runs" / "store")
    ref = ingest_frame(pl.read_parquet(src), store, name="prices", validate=False).ref
    params = {"allocation.top_n": 2, "backtest.cost_bps": 25.0}
    table = evaluate_chunk(build_panel(ref, store), cfg.to_dict(), [(0, params)], str(store.root))
    result = run(trial_config(cfg, params), out=tmp_path / "runs")
    metrics = json.loads((result.out_dir / "metrics.json").read_text())
    row = table.to_pylist()[0]
    assert row["status"] == "ok"
    assert {k: row[k] for k in metrics} == metrics


def test_peak_memory_does_not_grow_with_the_number_of_trials(store):
    """Daily arrays live for one batch of trials at a time, never for the whole chunk."""
    import tracemalloc

    from qpipe.backtest.batch_sim import BATCH

    prices = random_walk_prices(symbols=4, days=500, seed=5)
    ref = build_panel(store.put(prices), store)
    cfg = base_config(allocation={"top_n": 2, "rebalance": "weekly"})

    def peak(n: int) -> int:
        trials = [(i, {"backtest.cost_bps": float(i)}) for i in range(n)]
        evaluate_chunk(ref, cfg.to_dict(), trials[:1], str(store.root))  # caches, compiled code
        tracemalloc.start()
        table = evaluate_chunk(ref, cfg.to_dict(), trials, str(store.root))
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert table.num_rows == n and set(table.column("status").to_pylist()) == {"ok"}
        return top

    small, large = peak(BATCH), peak(10 * BATCH)
    per_curve_set = 500 * 8 * 4  # equity, turnover, cost, gross: bytes per trial
    # holding every trial's curves would add 9 * BATCH * per_curve_set (~9 MB) to the peak
    assert large - small < 3 * BATCH * per_curve_set, (small, large, per_curve_set)


def test_point_in_time_membership_equals_the_single_run(store):
    """With ``data.membership`` the strategy drops non-members' signals; the batch does too."""
    import datetime as dt

    from qpipe.stages.universe import mark_members

    prices = random_walk_prices(symbols=8, days=160, seed=3)
    membership = pl.DataFrame(
        {
            "symbol": ["S00", "S01", "S02", "S03", "S04", "S05"],
            "from": [dt.date(2020, 1, 1)] * 3 + [dt.date(2020, 3, 1)] * 3,
            "to": [None, dt.date(2020, 4, 30), None, None, dt.date(2020, 6, 30), None],
        },
        schema={"symbol": pl.String, "from": pl.Date, "to": pl.Date},
    )
    marked = mark_members(prices, membership)
    ref = store.put(marked)
    panel = build_panel(ref, store)
    cfg = base_config(data={"membership": "membership.csv"}, allocation={"rebalance": "weekly"})
    trials = [
        (i, {"allocation.top_n": n, "strategy.signal": sig})
        for i, (n, sig) in enumerate(itertools.product((1, 3), ("rank", "raw", "zscore")))
    ]
    table = evaluate_chunk(panel, cfg.to_dict(), trials, str(store.root))
    assert assert_rows_equal(table, cfg, trials, store.open(ref)) == len(trials)
    # not vacuous: without the membership the same trials give other results
    free = base_config(allocation={"rebalance": "weekly"})
    other = evaluate_chunk(panel, free.to_dict(), trials, str(store.root))
    assert table.column("total_return").to_pylist() != other.column("total_return").to_pylist()


def test_a_benchmark_file_is_part_of_the_panel(panel, store):
    ref, prices = panel
    bench = random_walk_prices(symbols=3, days=150, seed=9)
    bench_ref = store.put(bench)
    cfg = base_config(data={"benchmark": "bench.csv"})
    trials = [(0, {"allocation.top_n": 2}), (1, {"allocation.top_n": 4})]
    with_bench = build_panel(ref.prices, store, bench_ref)
    rows = evaluate_chunk(with_bench, cfg.to_dict(), trials, str(store.root)).to_pylist()
    for row, (_, params) in zip(rows, trials, strict=True):
        expected = single_run(trial_config(cfg, params), prices, store.open(bench_ref))
        assert {m: row[m] for m in METRIC_NAMES} == {m: expected[m] for m in METRIC_NAMES}
    assert rows[0]["beta"] != single_run(trial_config(cfg, trials[0][1]), prices)["beta"]
    with pytest.raises(QpipeError, match=r"data\.benchmark"):  # a panel without it: refused
        evaluate_chunk(ref, cfg.to_dict(), trials, str(store.root))
