"""Group ``sweep-engines``: what a sweep's task ships on Ray, and how a sweep scales.

What is measured, exactly
-------------------------
- ``bytes-*``: the pickled arguments of each Ray task of a sweep (``RayEngine.stats``:
  ``ray.cloudpickle.dumps((run_chunk, job ObjectRef, chunk))``) for built-in universes of 50,
  500 and 3,000 symbols (2 years each) and grids of 100 and 10,000 trials. The first four chunks
  of each sweep really run (the same tasks ``run_sweep`` submits); the shared job (panel refs,
  base config, grid) is put in the object store once per sweep and its pickled size is reported
  apart. Asserted: every case ships the same bytes per task, within 16 B.
- ``scaling-*``: one sweep of 2,000 trials (momentum, lookback x top_n x cost, 200 symbols x
  5 years) through ``run_sweep`` on ``LocalEngine(processes=1)``, ``LocalEngine(processes=2)``
  and ``RayEngine`` on the session's 2-CPU cluster. Reported: trials/s and the scaling
  efficiency ``t(1 process) / (2 x t(2 workers))``. Asserted: the three summaries have the same
  results digest (every data column and the row order, byte for byte). A scaling efficiency
  below 0.6 is an expected failure with its numbers (the machine is shared).
"""

from __future__ import annotations

import itertools
import time

import pytest
from _helpers import RESULTS, record

from qpipe.config import ThreadSafeConfig
from qpipe.engines.local import LocalEngine
from qpipe.store import ArrowStore
from qpipe.sweep import grid_from_config, run_sweep
from qpipe.sweep.plan import ChunkPlanner
from qpipe.sweep.task import SweepJob, run_chunk

SYMBOLS = (50, 500, 3_000)
TRIALS = {"1e2": 100, "1e4": 10_000}
BYTES: dict[tuple[int, str], int] = {}
SCALING_TRIALS = 2_000
TARGET_EFFICIENCY = 0.6


def _cfg(symbols: int, years: int = 2) -> ThreadSafeConfig:
    return ThreadSafeConfig.default().replace(
        data={"symbols": symbols, "start": "2020-01-01", "end": f"{2019 + years}-12-31"},
        strategy={"lookback": 63, "skip": 5},
        allocation={"top_n": 10, "max_weight": 1.0},
        run={"report": False},
    )


def _grid(cfg: ThreadSafeConfig, n: int):
    lookbacks = list(range(21, 21 + max(1, n // 100) * 2, 2))  # n/100 signal sets
    top_ns = list(range(1, 101))
    return grid_from_config(
        cfg, [("strategy.lookback", lookbacks, "bench"), ("allocation.top_n", top_ns, "bench")]
    )


@pytest.fixture(scope="module")
def ray_engine(ray_session):
    from qpipe.engines.ray import RayEngine

    engine = RayEngine()  # joins the session's 2-CPU cluster
    yield engine
    engine.close()  # leaves the session cluster running


@pytest.mark.parametrize("trials", list(TRIALS))
@pytest.mark.parametrize("symbols", SYMBOLS, ids=[f"{s}-symbols" for s in SYMBOLS])
def test_ray_bytes_per_task(benchmark, ray_engine, tmp_path, symbols, trials):
    from qpipe.backtest.batch import build_panel
    from qpipe.runs.ingest import builtin_dataset

    benchmark.group = "sweep-engines"
    cfg = _cfg(symbols)
    store = ArrowStore(tmp_path / "store")
    prices = builtin_dataset(cfg.data, store).ref
    grid = _grid(cfg, TRIALS[trials])
    assert grid.n_trials == TRIALS[trials]
    job = SweepJob(
        build_panel(prices, store), cfg.to_dict(), grid, str(store.root), str(tmp_path / "chunks")
    )
    done: list[int] = []

    def four_chunks() -> None:
        done.clear()
        chunks = itertools.islice(ChunkPlanner(grid.n_trials, workers=2), 4)
        ray_engine.map_chunks(run_chunk, job, chunks, lambda c, r: done.append(r.n_ok))

    benchmark.pedantic(four_chunks, rounds=1, warmup_rounds=0)
    assert len(done) == 4 and sum(done) == 32  # four chunks of 8 trials, all ok
    stats = ray_engine.stats
    BYTES[(symbols, trials)] = stats.max_task_bytes
    job_bytes = len(ray_engine.ray.cloudpickle.dumps(job))
    benchmark.extra_info.update(
        {
            "rows": prices.rows,
            "trials": grid.n_trials,
            "tasks": stats.tasks,
            "bytes_per_task": stats.max_task_bytes,
            "job_bytes_once": job_bytes,
        }
    )
    assert stats.max_task_bytes < 1024
    assert max(BYTES.values()) - min(BYTES.values()) <= 16, BYTES


@pytest.fixture(scope="module")
def scaling_cfg(tmp_path_factory):
    out = tmp_path_factory.mktemp("scaling")
    cfg = _cfg(200, years=5).replace(run={"out": str(out), "report": False})
    grid = grid_from_config(
        cfg,
        [("strategy.lookback", list(range(42, 252, 21)), "bench"),
         ("allocation.top_n", list(range(1, 101)), "bench"),
         ("backtest.cost_bps", [5.0, 10.0], "bench")],
    )  # fmt: skip
    assert grid.n_trials == SCALING_TRIALS
    run_sweep(cfg, grid, engine=LocalEngine(processes=1), auto_resume=False)  # ingest, JIT
    return cfg, grid


ENGINES = ("local-1", "local-2", "ray-2")


@pytest.mark.parametrize("engine", ENGINES)
def test_sweep_scaling(benchmark, request, scaling_cfg, engine):
    benchmark.group = "sweep-engines"
    cfg, grid = scaling_cfg
    if engine == "ray-2":
        eng = request.getfixturevalue("ray_engine")
    else:
        eng = LocalEngine(processes=int(engine[-1]))

    def sweep():
        return run_sweep(cfg, grid, engine=eng, auto_resume=False)

    t0 = time.perf_counter()
    result = benchmark.pedantic(sweep, rounds=1, warmup_rounds=0)
    wall = time.perf_counter() - t0
    assert result.summary.height == SCALING_TRIALS and result.failed.height == 0
    RESULTS[("sweep-engines-digest", engine, "")] = result.results_digest  # type: ignore[assignment]
    record(benchmark, "sweep-engines", f"scaling-{engine}", f"{SCALING_TRIALS}-trials")
    benchmark.extra_info.update({"trials_per_s": SCALING_TRIALS / wall, "wall_s": wall})
    if engine == ENGINES[0]:
        return
    assert result.results_digest == RESULTS[("sweep-engines-digest", "local-1", "")]
    one = RESULTS[("sweep-engines", "scaling-local-1", f"{SCALING_TRIALS}-trials")]
    two = RESULTS[("sweep-engines", f"scaling-{engine}", f"{SCALING_TRIALS}-trials")]
    efficiency = one / (2 * two)
    benchmark.extra_info["scaling_efficiency"] = efficiency
    if efficiency < TARGET_EFFICIENCY:
        pytest.xfail(
            f"{engine}: scaling efficiency {efficiency:.2f} (1 process {one:.1f}s, 2 workers "
            f"{two:.1f}s) below {TARGET_EFFICIENCY}; the 2 cores are shared with other jobs"
        )
