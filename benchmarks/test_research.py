"""Group ``research``: PBO (CSCV), walk-forward and CPCV speed.

Targets (issue 12), on this 2-core machine:

- PBO with S = 16 (12,870 halvings) over 1,000 trials x 2,500 days in <= 10 s. The returns are
  seeded noise with a few real edges, so the result is checked too: the trials with an edge
  make the PBO low, noise alone makes it near one half;
- a walk-forward of 10 folds x 100 parameter sets on the built-in universe (500 symbols x 10
  years; momentum lookback 4 values x top_n 25 values, month-end, 10 bps) in <= 30 s, end to
  end: ingest (the universe already in the store), panel, 2,000 windowed backtests, the
  stitched weights, the per-fold Tier 2 audits and the stitched run with its report;
- CPCV with 6 groups and 2 test groups (15 splits, 5 paths) x the same 100 sets in <= 60 s,
  end to end including the grid's PBO.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest
from _helpers import SEED, record

from qpipe.config import ThreadSafeConfig
from qpipe.research.cpcv_run import run_cpcv
from qpipe.research.run import run_walk_forward
from qpipe.stats import pbo

PBO_TARGET_S = 10.0
WALK_FORWARD_TARGET_S = 30.0
CPCV_TARGET_S = 60.0
GRID_100 = {"strategy.lookback": [63, 126, 189, 252], "allocation.top_n": list(range(5, 30))}
TEST_DAYS = 126
PURGE = 252 + 23  # the grid's largest warm-up + month-end holding (purge_default)
PBO_SIZES = {"100x2500": (100, 2_500), "1000x2500": (1_000, 2_500)}


def _trial_returns(n_trials: int, days: int, edges: int) -> np.ndarray:
    rng = np.random.default_rng(SEED)
    r = rng.normal(0.0, 0.01, (days, n_trials))
    r[:, :edges] += 0.002  # a per-period Sharpe of 0.2 in every block
    return r


@pytest.mark.benchmark(group="research")
@pytest.mark.parametrize("size", list(PBO_SIZES))
@pytest.mark.parametrize("edges", [0, 3], ids=["noise", "3-edges"])
def test_pbo_speed(benchmark, size, edges):
    n_trials, days = PBO_SIZES[size]
    r = _trial_returns(n_trials, days, edges)
    result = benchmark.pedantic(pbo, args=(r, 16), rounds=3, iterations=1)
    best = record(benchmark, "research", f"pbo-{edges}", size)
    assert result.lambdas.size == math.comb(16, 8) == 12_870
    if edges:
        assert result.pbo < 0.05
    else:
        assert 0.3 < result.pbo < 0.7
    benchmark.extra_info.update(result.to_dict())
    if best > PBO_TARGET_S:
        pytest.xfail(f"pbo S=16 over {size} took {best:.2f}s > {PBO_TARGET_S:.0f}s target")


@pytest.fixture(scope="module")
def universe(tmp_path_factory):
    """The built-in universe generated once into a shared store (not timed)."""
    from qpipe.api import builtin_dataset
    from qpipe.store import ArrowStore

    root = tmp_path_factory.mktemp("research")
    cfg = ThreadSafeConfig.default().replace(store={"path": str(root / "store")})
    store = ArrowStore(root / "store")
    prices = store.open(builtin_dataset(cfg.data, store).ref)
    return cfg, root, prices["date"].n_unique()


@pytest.mark.benchmark(group="research")
def test_walk_forward_speed(benchmark, universe):
    cfg, root, n_days = universe
    train = n_days - PURGE - 10 * TEST_DAYS  # exactly 10 test windows
    outs = iter(range(100))

    cpu: list[float] = []

    def run():
        c0 = time.process_time()
        done = run_walk_forward(
            cfg, GRID_100, train=train, test=TEST_DAYS, out=root / f"wf{next(outs)}"
        )
        cpu.append(time.process_time() - c0)
        return done

    done = benchmark.pedantic(run, rounds=1, iterations=1)
    best = record(benchmark, "research", "walk-forward", "10x100")
    # this process's CPU seconds (all threads): the wall time on a machine shared with other
    # jobs can be a multiple of it
    benchmark.extra_info["cpu_seconds"] = cpu[-1]
    benchmark.extra_info["load_avg_1m"] = os.getloadavg()[0]
    assert len(done.result.splits) == 10 and done.folds.height == 10
    assert done.result.trials.height == 1_000
    assert all(a.passed for a in done.result.audits)
    benchmark.extra_info["oos_sharpe"] = done.run.metrics["sharpe"]
    if best > WALK_FORWARD_TARGET_S:
        pytest.xfail(
            f"walk-forward 10 folds x 100 sets took {best:.1f}s > 30s target "
            f"({cpu[-1]:.1f} CPU s in this process, load average {os.getloadavg()[0]:.1f})"
        )


@pytest.mark.benchmark(group="research")
def test_cpcv_speed(benchmark, universe):
    cfg, root, _ = universe
    outs = iter(range(100))

    def run():
        return run_cpcv(cfg, GRID_100, groups=6, test_groups=2, out=root / f"cpcv{next(outs)}")

    done = benchmark.pedantic(run, rounds=1, iterations=1)
    best = record(benchmark, "research", "cpcv", "6-2x100")
    assert done.result.splits.height == 15 * 100 and done.result.paths.height == 5
    assert done.pbo is not None and done.pbo.lambdas.size == 12_870
    benchmark.extra_info["path_sharpes"] = done.result.paths["sharpe"].to_list()
    if best > CPCV_TARGET_S:
        pytest.xfail(f"cpcv 6/2 x 100 sets took {best:.1f}s > 60s target")


JUDGE_SIZES = {"1e3": 1_000, "1e4": 10_000}  # below and above PBO_LIMIT (2,000)
JUDGE_TARGET = {"1e3": 1.0, "1e4": 0.05}  # judgement time / the sweep's own time


@pytest.mark.benchmark(group="research")
@pytest.mark.parametrize("size", list(JUDGE_SIZES))
def test_sweep_judgement_cost(benchmark, universe, size):
    """What judging a finished sweep adds (N from the ledger, V, the best trial re-run, the PBO
    up to 2,000 trials): a sweep of ``size`` trials through ``run_sweep`` (local engine), then
    the same judgement again, timed alone. Above the PBO limit it must stay within 5 % of the
    sweep; below it the PBO re-runs every trial once for its daily returns (<= 1x)."""
    from qpipe.research.sweep_stats import judge_sweep
    from qpipe.sweep import grid_from_config, run_sweep

    cfg, root, _ = universe
    n = JUDGE_SIZES[size]
    skips = list(range(0, 2 * (n // 1_000), 2))
    axes = [
        ("strategy.lookback", list(range(42, 252, 21)), "b"),
        ("allocation.top_n", list(range(1, 101)), "b"),
        ("strategy.skip", skips, "b"),
    ]
    base = cfg.replace(allocation={"max_weight": 1.0})
    grid = grid_from_config(base, axes)
    assert grid.n_trials == n
    out = root / f"judge{size}"
    t0 = time.perf_counter()
    result = run_sweep(base, grid, out=out, engine="local", auto_resume=False)
    wall = time.perf_counter() - t0

    def judge():
        return judge_sweep(result.sweep_id, out / "audit.jsonl", root / "store")

    stats = benchmark.pedantic(judge, rounds=1, iterations=1)
    best = record(benchmark, "research", "sweep-judgement", size)
    ratio = best / (wall - best)
    benchmark.extra_info.update({"sweep_wall_s": wall, "judgement_s": best, "ratio": ratio,
                                 "pbo": stats.pbo is not None, "verdict": stats.line})  # fmt: skip
    assert (stats.pbo is not None) == (n <= 2_000)
    if ratio > JUDGE_TARGET[size]:
        pytest.xfail(f"judging a {n:,}-trial sweep took {best:.2f}s = {ratio:.2f}x the sweep "
                     f"({wall - best:.1f}s) > {JUDGE_TARGET[size]}x")  # fmt: skip
