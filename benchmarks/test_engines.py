"""Group ``engines``: LocalEngine vs RayEngine (2 workers) and Ray's fixed costs.

- ``features-*``: the sharded feature stage (``shard="symbol"``) on the built-in universe;
  outputs must have the same digest on both engines.
- ``sweep-8-*``: an 8-trial sweep (``run_sweep``: 4 lookbacks x 2 top-N, 100 symbols x 10 years)
  on each engine; the trials' metrics must agree. On this 2-core machine Polars already uses
  both cores, so Ray is only required to stay within its fixed start-up cost (3 s) of the local
  engine; a miss is reported as an expected failure with the numbers, not hidden.
- ``ray-startup``: ``ray.init`` of a fresh local cluster plus its first task, in a subprocess.
- ``ray-task-overhead``: one trivial task round trip on the running cluster.
- ``shipped-bytes``: bytes pickled per task for a 10-symbol and a 500-symbol universe (50x).
"""

from __future__ import annotations

import pytest
from _helpers import RESULTS, record, run_python

from qpipe.config import ThreadSafeConfig
from qpipe.context import RunContext
from qpipe.engines.local import LocalEngine
from qpipe.stages.base import Pipeline
from qpipe.strategy import build_strategy

RAY_STARTUP_BUDGET = 3.0
SWEEP_SYMBOLS = 100  # 100 symbols x 10 years per trial keeps the group within the time budget
KB = 1024


@pytest.fixture(scope="module")
def universe_ref(bench_store):
    from qpipe.data.universe import builtin_universe

    return {n: bench_store.put(builtin_universe(symbols=n)) for n in (10, 500)}


@pytest.fixture(scope="module")
def ray_engine(ray_session):
    from qpipe.engines.ray import RayEngine

    engine = RayEngine(shards=2)  # joins the session's 2-CPU cluster
    yield engine
    engine.close()  # leaves the session cluster running (it did not start it)


def _feature_pipeline() -> Pipeline:
    return Pipeline((build_strategy(ThreadSafeConfig.default()).steps[0],))


@pytest.mark.parametrize("engine", ["local", "ray"], ids=["features-local", "features-ray"])
def test_engine_sharded_features(benchmark, request, bench_store, universe_ref, engine):
    benchmark.group = "engines"
    eng = LocalEngine() if engine == "local" else request.getfixturevalue("ray_engine")
    pipe = _feature_pipeline()
    ctx = RunContext({"prices": universe_ref[500]})
    done = benchmark.pedantic(lambda: eng.run(pipe, ctx, bench_store), rounds=3, warmup_rounds=1)
    out = done.context["features"]
    assert out.rows == universe_ref[500].rows
    RESULTS[("engines-digest", engine, "features")] = out.digest  # type: ignore[assignment]
    best = record(benchmark, "engines", f"features-{engine}", "500x10y")
    benchmark.extra_info.update({"rows": out.rows, "shards": done.records[0].shards})
    if engine == "ray":
        assert done.records[0].shards == 2
        assert out.digest == RESULTS[("engines-digest", "local", "features")]
        local = RESULTS[("engines", "features-local", "500x10y")]
        benchmark.extra_info["ratio_vs_local"] = best / local


def _sweep(engine, out):
    from qpipe.sweep import run_sweep

    cfg = ThreadSafeConfig.default().replace(data={"symbols": SWEEP_SYMBOLS}, run={"report": False})
    grid = [("strategy.lookback", [63, 126, 189, 252]), ("allocation.top_n", [20, 50])]
    # auto_resume off: every round is a fresh sweep, not a resume of the last one
    return run_sweep(cfg, grid, engine=engine, out=out, auto_resume=False)


@pytest.mark.parametrize("engine", ["local", "ray"], ids=["sweep-8-local", "sweep-8-ray"])
def test_engine_sweep(benchmark, request, tmp_path, engine, universe_ref):
    benchmark.group = "engines"
    eng = LocalEngine() if engine == "local" else request.getfixturevalue("ray_engine")
    # one untimed sweep first: the built-in universe is generated and validated once per store
    _sweep(eng, tmp_path / "warm")
    result = benchmark.pedantic(lambda: _sweep(eng, tmp_path / "warm"), rounds=1, warmup_rounds=0)
    assert result.summary.height == 8 and result.failed.height == 0
    sharpes = sorted(
        result.summary.select("strategy.lookback", "allocation.top_n", "sharpe").rows()
    )
    RESULTS[("engines-sweep", engine, "")] = sharpes  # type: ignore[assignment]
    best = record(benchmark, "engines", f"sweep-{engine}", "8-trials")
    benchmark.extra_info.update({"trials": 8, "trials_per_s": 8 / best})
    if engine == "ray":
        assert sharpes == RESULTS[("engines-sweep", "local", "")]  # same results on both engines
        local = RESULTS[("engines", "sweep-local", "8-trials")]
        benchmark.extra_info["extra_s_vs_local"] = best - local
        if best > local + RAY_STARTUP_BUDGET:
            pytest.xfail(
                f"ray sweep {best:.1f}s vs local {local:.1f}s: {best - local:.1f}s over, more than "
                f"the {RAY_STARTUP_BUDGET:.0f}s start-up budget (see docs/benchmarks.md)"
            )


_STARTUP = r"""
import time, logging
from qpipe.engines.ray import import_ray
ray = import_ray(loopback=True)
t = time.perf_counter()
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
         logging_level=logging.ERROR, object_store_memory=256 * 2**20)
up = time.perf_counter() - t
f = ray.remote(lambda: 1)
assert ray.get(f.remote()) == 1
first = time.perf_counter() - t
ray.shutdown()
print(up, first)
"""


def test_ray_startup(benchmark):
    benchmark.group = "engines"
    times: list[tuple[float, float]] = []

    def start() -> None:
        up, first = run_python(_STARTUP, timeout=180).split()
        times.append((float(up), float(first)))

    benchmark.pedantic(start, rounds=1, warmup_rounds=0)
    up, first = times[-1]
    benchmark.extra_info.update({"init_s": up, "init_and_first_task_s": first})
    assert 0 < up <= first
    assert first < 30


def test_ray_task_overhead(benchmark, ray_session):
    benchmark.group = "engines"
    noop = ray_session.remote(lambda x: x)
    out = benchmark.pedantic(lambda: ray_session.get(noop.remote(1)), rounds=30, warmup_rounds=3)
    assert out == 1
    best = record(benchmark, "engines", "ray-task", "noop")
    benchmark.extra_info["per_task_s"] = best


BYTES_IDS = ["shipped-bytes-10-symbols", "shipped-bytes-500-symbols"]


@pytest.mark.parametrize("symbols", [10, 500], ids=BYTES_IDS)
def test_ray_shipped_bytes(benchmark, bench_store, universe_ref, ray_engine, symbols):
    """Bytes pickled per task do not grow from a 10- to a 500-symbol universe (50x the rows)."""
    benchmark.group = "engines"
    pipe = _feature_pipeline()
    ctx = RunContext({"prices": universe_ref[symbols]})
    benchmark.pedantic(lambda: ray_engine.run(pipe, ctx, bench_store), rounds=1, warmup_rounds=0)
    stats = ray_engine.stats
    assert stats.tasks >= 1
    benchmark.extra_info.update(
        {
            "rows": universe_ref[symbols].rows,
            "max_task_bytes": stats.max_task_bytes,
            "step_bytes": dict(stats.step_bytes),
        }
    )
    RESULTS[("engines-bytes", str(symbols), "")] = float(stats.max_task_bytes)
    assert stats.max_task_bytes < 4 * KB
    small = RESULTS.get(("engines-bytes", "10", ""))
    if symbols == 500 and small is not None:
        # a few bytes of shard bounds may differ (longer symbol names), not the data size
        assert stats.max_task_bytes <= small + 64
