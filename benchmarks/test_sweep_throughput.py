"""Group ``sweep-throughput``: the batched sweep core (issue 11) against its targets and vectorbt.

What is measured, exactly
-------------------------
Momentum top-N, month-end rebalancing, 10 bps, on the built-in universe (500 symbols x 10 years,
seed 7), ingested as a run ingests it. The grid is (lookback, skip) signal sets x ``top_n`` 1..100:
the first ``n / 100`` signal sets (lookback 42, 63, ... x skip 0, 5, 10, 21), 100 trials each, in
the sweep's order (trials sharing signals contiguous). The price panel is built once before the
timing (``build_panel``; its time is reported apart).

- ``qpipe-2proc``: end to end from signals to the summary rows: chunks of 500 trials (five signal
  sets) mapped over two worker processes (the machine's 2 cores) with
  :func:`qpipe.backtest.batch.evaluate_chunk`, the tables concatenated and sorted by trial. Every
  row must be ``ok`` with finite metrics. Sizes 10^2, 10^3, 10^4 show the cost per trial stays
  flat. Also reported: the workers' CPU seconds (backtests per CPU-second does not depend on
  how busy the shared machine is) and peak RSS (the driver's plus each worker's ``VmHWM``).
- ``qpipe-1proc``: the same 1,000 trials in this process (for the per-core ratio with vectorbt).
- ``vectorbt``: ``Portfolio.from_orders(size_type="targetpercent", group_by=..., cash_sharing=
  True, call_seq="auto", fees=0.001)`` on the *same target weights* (qpipe's, as a wide frame:
  the weight or 0 on rebalance rows, NaN where unpriced and elsewhere), ten trials as ten groups
  per call (ten trials already make 5,000 columns), plus ``pf.value()``.
- ``vectorbt-kernel``: vectorbt's numba kernel alone (``simulate_from_orders_nb``) on the same
  arrays, prepared outside the timing.

The targets (issue 11): >= 200 backtests/s end to end, 10^4 in <= 60 s with peak RSS <= 2 GB,
>= 20x vectorbt in backtests/s (per core: ``qpipe-1proc`` vs ``vectorbt``, both one process),
and at least the throughput of vectorbt's kernel alone. A missed target is an expected failure
with its numbers. The machine is shared: wall-clock numbers move with the load.

Without ``--benchmark-only`` only the 10^2 case runs (the rest skip), so a plain test run of
``benchmarks/`` stays cheap.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from _helpers import RESULTS, record

from qpipe.backtest.batch import PanelRef, build_panel, evaluate_chunk
from qpipe.config import ThreadSafeConfig

LOOKBACKS = tuple(42 + 21 * k for k in range(25))
SKIPS = (0, 5, 10, 21)
TOP_NS = tuple(range(1, 101))
CHUNK_SETS = 5  # signal sets per chunk: 500 trials, a few seconds per task
SIZES = {"1e2": 100, "1e3": 1_000, "1e4": 10_000}
VBT_TRIALS = 10
TARGET_PER_S = 200.0
TARGET_1E4_S = 60.0
TARGET_RSS = 2 << 30
TARGET_VS_VBT = 20.0


def grid(n: int) -> list[tuple[int, dict[str, Any]]]:
    """The first ``n`` trials: signal sets (lookback-major) x top_n 1..100."""
    sets = list(itertools.product(LOOKBACKS, SKIPS))[: n // len(TOP_NS)]
    combos = itertools.product(sets, TOP_NS)
    return [
        (i, {"strategy.lookback": lb, "strategy.skip": sk, "allocation.top_n": top})
        for i, ((lb, sk), top) in enumerate(combos)
    ]


def base_config() -> dict[str, Any]:
    # the defaults are momentum, rank signal, top_n, month_end, 10 bps; cap at 1/top_n
    return ThreadSafeConfig.default().replace(allocation={"max_weight": 1.0}).to_dict()


@pytest.fixture(scope="module")
def sweep_panel(bench_store) -> dict[str, Any]:
    from qpipe.api import builtin_dataset

    # 500 symbols x 10 years, seed 7, ingested once as a run ingests it
    prices = builtin_dataset(ThreadSafeConfig.default().data, bench_store).ref
    t0 = time.perf_counter()
    panel = build_panel(prices, bench_store)
    seconds = time.perf_counter() - t0
    warm = [(0, {"allocation.top_n": 5})]
    evaluate_chunk(panel, base_config(), warm, str(bench_store.root))  # compile / load numba
    return {"panel": panel, "root": str(bench_store.root), "build_s": seconds}


def _driver_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _peak_rss(pid: int) -> int:
    """A process's peak resident set (``VmHWM``), in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _cpu_seconds(pids: list[int]) -> float:
    import psutil

    times = [psutil.Process(pid).cpu_times() for pid in pids]
    return sum(t.user + t.system for t in times)


@pytest.fixture(scope="module")
def workers(sweep_panel):
    """Two spawned worker processes, warmed (imports and the numba cache loaded)."""
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=2, mp_context=ctx)
    warm = [(0, {"allocation.top_n": 5})]
    args = (sweep_panel["panel"], base_config(), warm, sweep_panel["root"])
    for f in [pool.submit(evaluate_chunk, *args) for _ in range(2)]:
        f.result()
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def run_sweep(pool, panel: PanelRef, root: str, trials) -> pa.Table:
    """Chunks of CHUNK_SETS signal sets over the pool; the summary rows sorted by trial."""
    size = CHUNK_SETS * len(TOP_NS)
    chunks = [trials[i : i + size] for i in range(0, len(trials), size)]
    futures = [pool.submit(evaluate_chunk, panel, base_config(), c, root) for c in chunks]
    table = pa.concat_tables([f.result() for f in futures])
    return table.sort_by("trial")


def check_rows(table: pa.Table, n: int) -> None:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    assert frame.height == n and frame["trial"].to_list() == list(range(n))
    assert frame["status"].unique().to_list() == ["ok"], frame.filter(pl.col("status") != "ok")
    assert frame["sharpe"].is_finite().all() and (frame["n_rebalances"] > 100).all()


def _full_run_only(request, size: str) -> None:
    if size != "1e2" and not request.config.getoption("benchmark_only"):
        pytest.skip("runs with --benchmark-only (keeps a plain run of benchmarks/ cheap)")


@pytest.mark.parametrize("size", list(SIZES))
def test_sweep_throughput(benchmark, request, sweep_panel, workers, size):
    """Trials/s end to end on two processes at 10^2, 10^3, 10^4 trials."""
    _full_run_only(request, size)
    benchmark.group = "sweep-throughput"
    n = SIZES[size]
    trials = grid(n)
    pids = list(workers._processes)  # the pool's worker processes
    cpu0 = _cpu_seconds(pids)
    table = benchmark.pedantic(
        lambda: run_sweep(workers, sweep_panel["panel"], sweep_panel["root"], trials),
        rounds=1,
        warmup_rounds=0,
    )
    check_rows(table, n)
    best = record(benchmark, "sweep-throughput", "qpipe-2proc", size)
    cpu = _cpu_seconds(pids) - cpu0
    rss = _driver_rss() + sum(_peak_rss(pid) for pid in pids)
    per_s = n / best
    benchmark.extra_info.update(
        {
            "trials": n,
            "backtests_per_s": per_s,
            "ms_per_trial": 1e3 * best / n,
            "panel_build_s": sweep_panel["build_s"],
            "peak_rss_mb_driver_plus_workers": rss / 2**20,
            "worker_cpu_s": cpu,
            "backtests_per_cpu_s": n / cpu if cpu > 0 else None,
            "load_avg_1m": os.getloadavg()[0],
        }
    )
    misses = []
    if per_s < TARGET_PER_S:
        misses.append(f"{per_s:.0f} backtests/s < {TARGET_PER_S:.0f}")
    if size == "1e4":
        if best > TARGET_1E4_S:
            misses.append(f"10^4 took {best:.1f} s > {TARGET_1E4_S:.0f} s")
        assert rss <= TARGET_RSS, f"peak RSS {rss / 2**30:.2f} GiB > 2 GiB"
    if misses:
        load = os.getloadavg()[0]
        pytest.xfail(f"{'; '.join(misses)} (load average {load:.1f} on 2 cores)")


# qpipe vs vectorbt on the same weights, one process each ------------------------------------
def _same_weights(sweep_panel, bench_store, n: int):
    """qpipe's dense target weights for the first n trials, and the panel arrays."""
    from qpipe.backtest.batch_config import ConfigBuilder
    from qpipe.backtest.batch_weights import SignalSet
    from qpipe.backtest.panel import open_panel

    panel = open_panel(sweep_panel["panel"], bench_store)
    prices = bench_store.open(sweep_panel["panel"].prices)
    builder = ConfigBuilder(base_config())
    configs = [builder.get(p) for _, p in grid(len(TOP_NS))[:n]]
    signals = SignalSet(configs[0], prices, panel)
    return panel, [signals.weights(c) for c in configs]


def _vbt_inputs(panel, weights):
    """Wide close and size arrays, trials side by side (ten groups of all symbols)."""
    close = np.asarray(panel.close)
    n_days, n_sym = close.shape
    size = np.full((n_days, n_sym * len(weights)), np.nan)
    for g, (rows, wmat) in enumerate(weights):
        block = np.where(np.isnan(close[rows]), np.nan, wmat)
        size[rows, g * n_sym : (g + 1) * n_sym] = block
    return np.tile(close, (1, len(weights))), size, np.repeat(np.arange(len(weights)), n_sym)


@pytest.fixture(scope="module")
def vbt_case(request, sweep_panel, bench_store):
    if not request.config.getoption("benchmark_only"):
        pytest.skip("runs with --benchmark-only (keeps a plain run of benchmarks/ cheap)")
    pytest.importorskip("vectorbt")
    panel, weights = _same_weights(sweep_panel, bench_store, VBT_TRIALS)
    close, size, group = _vbt_inputs(panel, weights)
    index = pd.DatetimeIndex(panel.days.astype("datetime64[D]"))
    return {
        "close_df": pd.DataFrame(close, index=index),
        "size_df": pd.DataFrame(size, index=index),
        "group": group,
        "close": close,
        "size": size,
    }


def vbt_portfolio(case) -> np.ndarray:
    import vectorbt as vbt

    pf = vbt.Portfolio.from_orders(
        close=case["close_df"],
        size=case["size_df"],
        size_type="targetpercent",
        group_by=case["group"],
        cash_sharing=True,
        call_seq="auto",
        fees=0.001,
        min_size=0,
        init_cash=1.0,
        freq="1D",
    )
    return np.asarray(pf.value().ffill())[-1]


def vbt_call_seq(case) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A fresh call sequence (0..n-1 per group and row; the kernel sorts it in place)."""
    n_sym = case["close"].shape[1] // VBT_TRIALS
    seq = np.tile(np.arange(n_sym, dtype=np.int64), (case["close"].shape[0], VBT_TRIALS))
    return (case, seq), {}


def vbt_kernel(case, call_seq: np.ndarray) -> np.ndarray:
    from vectorbt.portfolio import nb
    from vectorbt.portfolio.enums import SizeType

    n_groups = VBT_TRIALS
    shape = case["close"].shape
    group_lens = np.full(n_groups, shape[1] // n_groups, np.int64)
    orders, _ = nb.simulate_from_orders_nb(
        shape,
        group_lens,
        np.ones(n_groups),
        call_seq,
        size=case["size"],
        size_type=np.asarray(SizeType.TargetPercent),
        fees=np.asarray(0.001),
        min_size=np.asarray(0.0),
        close=case["close"],
        auto_call_seq=True,
        update_value=False,
    )
    return orders


@pytest.mark.parametrize("method", ["vectorbt-kernel", "vectorbt", "qpipe-1proc"])
def test_sweep_vs_vectorbt(benchmark, vbt_case, sweep_panel, method):
    """Backtests/s on one process: vectorbt (kernel alone, and Portfolio) vs qpipe end to end."""
    benchmark.group = "sweep-vs-vectorbt"
    if method == "vectorbt":
        small = {k: v.iloc[:300] if hasattr(v, "iloc") else v for k, v in vbt_case.items()}
        vbt_portfolio(small)  # warm-up: numba compilation
        finals = benchmark.pedantic(lambda: vbt_portfolio(vbt_case), rounds=1, warmup_rounds=0)
        assert np.all(np.isfinite(finals)) and np.all(finals > 0)
        n = VBT_TRIALS
    elif method == "vectorbt-kernel":
        vbt_kernel(*vbt_call_seq(vbt_case)[0])  # warm-up: numba compilation
        orders = benchmark.pedantic(vbt_kernel, setup=lambda: vbt_call_seq(vbt_case), rounds=2)
        assert len(orders) > 0
        n = VBT_TRIALS
    else:
        trials = grid(1_000)
        table = benchmark.pedantic(
            lambda: evaluate_chunk(
                sweep_panel["panel"], base_config(), trials, sweep_panel["root"]
            ),
            rounds=1,
            warmup_rounds=0,
        )
        check_rows(table, len(trials))
        n = len(trials)
    best = record(benchmark, "sweep-vs-vectorbt", method, "")
    benchmark.extra_info.update({"trials": n, "backtests_per_s": n / best})
    if method != "qpipe-1proc":
        return
    ours = n / best
    vbt = VBT_TRIALS / RESULTS[("sweep-vs-vectorbt", "vectorbt", "")]
    kernel = VBT_TRIALS / RESULTS[("sweep-vs-vectorbt", "vectorbt-kernel", "")]
    benchmark.extra_info.update(
        {"speedup_vs_vectorbt": ours / vbt, "vs_vectorbt_kernel": ours / kernel}
    )
    misses = []
    if ours < TARGET_VS_VBT * vbt:
        misses.append(f"{ours / vbt:.1f}x vectorbt ({ours:.0f} vs {vbt:.1f} backtests/s) < 20x")
    if ours < kernel:
        misses.append(f"{ours:.0f} backtests/s < vectorbt's kernel alone {kernel:.1f}/s")
    if misses:
        pytest.xfail("; ".join(misses))
