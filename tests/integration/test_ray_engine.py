"""RayEngine: same bytes as LocalEngine, small tasks, retries, stage errors, multi-node refs.

One Ray session serves the module (see ``conftest.py``); the two-node cluster tests come last.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import polars as pl
import pytest

from qpipe.config import ThreadSafeConfig
from qpipe.context import RunContext
from qpipe.engines.local import LocalEngine
from qpipe.errors import StageError
from qpipe.stages.base import Pipeline, stage
from qpipe.store import ArrowStore
from qpipe.strategy import build_strategy
from tests.conftest import random_walk_prices

pytestmark = pytest.mark.ray


@stage(output="returns", shard="symbol")
def rets(prices: pl.LazyFrame) -> pl.LazyFrame:
    return prices.sort("symbol", "date").with_columns(
        pl.col("close").pct_change().over("symbol").alias("ret")
    )


@stage(output="ranks", shard="date")
def ranks(returns: pl.LazyFrame) -> pl.LazyFrame:
    # a cross-sectional stage; rank is exact, so it cannot depend on how the frame is split
    return returns.sort("date", "symbol").select(
        "date", "symbol", pl.col("ret").rank().over("date").alias("rank")
    )


@stage(output="combined")
def combine(returns: pl.LazyFrame, ranks: pl.LazyFrame) -> pl.LazyFrame:
    return returns.join(ranks, on=["date", "symbol"]).sort("symbol", "date")


@stage(output="returns", shard="symbol")
def dies_once(prices: pl.LazyFrame, *, marker: str) -> pl.LazyFrame:
    """Kills its own worker process the first time any shard runs (keyed by a marker file)."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        pass
    else:
        os.kill(os.getpid(), signal.SIGKILL)
    return rets.fn(prices)


@stage(output="returns", shard="symbol")
def needs_missing_column(prices: pl.LazyFrame) -> pl.LazyFrame:
    return prices.select(pl.col("volume_typo"))


def three_steps() -> Pipeline:
    return Pipeline((rets.bind(), ranks.bind(), combine.bind()))


def digests(done) -> dict[str, str]:
    return {name: done.context[name].digest for name in done.context}


@pytest.fixture
def prices_ctx(tmp_path):
    store = ArrowStore(tmp_path / "store")
    return store, RunContext({"prices": store.put(random_walk_prices(symbols=12, days=80))})


@pytest.fixture(params=["local", "ray"])
def engine(request):
    if request.param == "local":
        return LocalEngine(threads=2)
    return request.getfixturevalue("ray_engine")


def test_engines_agree_on_a_sharded_pipeline(engine, prices_ctx):
    store, ctx = prices_ctx
    reference = digests(LocalEngine(threads=1).run(three_steps(), ctx, store))
    done = engine.run(three_steps(), ctx, store)
    assert digests(done) == reference
    if engine.name == "ray":
        from qpipe.engines.ray import RayEngine

        assert [r.shards for r in done.records] == [2, 2, 1]
        for transport in ("path", "object"):
            for shards in (1, 3, 5):
                again = RayEngine(shards=shards, transport=transport).run(three_steps(), ctx, store)
                assert digests(again) == reference, (transport, shards)
                assert again.records[0].shards == shards


def test_engines_agree_on_the_default_strategy(engine, tmp_path):
    from qpipe.data.universe import builtin_universe

    store = ArrowStore(tmp_path / "store")
    cfg = ThreadSafeConfig.default().replace(
        data={"symbols": 30, "start": "2019-01-01", "end": "2020-12-31"},
        strategy={"lookback": 63, "skip": 5},
        allocation={"top_n": 5},
    )
    prices = builtin_universe(symbols=30, start="2019-01-01", end="2020-12-31", seed=7)
    ctx = RunContext({"prices": store.put(prices)})
    reference = digests(LocalEngine(threads=1).run(build_strategy(cfg), ctx, store))
    assert digests(engine.run(build_strategy(cfg), ctx, store)) == reference


def test_task_arguments_are_small_and_do_not_grow_with_the_universe(ray_engine, tmp_path):
    from qpipe.engines.ray import RayEngine

    store = ArrowStore(tmp_path / "store")
    shipped = {}
    for symbols in (8, 400):  # 50x the rows
        ref = store.put(random_walk_prices(symbols=symbols, days=60))
        for transport in ("path", "object"):
            eng = RayEngine(shards=2, transport=transport)
            eng.run(three_steps(), RunContext({"prices": ref}), store)
            shipped[symbols, transport] = eng.stats.max_task_bytes
            assert eng.stats.tasks == 5
    assert max(shipped.values()) < 2048, shipped
    for transport in ("path", "object"):
        # only the shard bounds' text may differ ("S07" vs "S399")
        assert abs(shipped[400, transport] - shipped[8, transport]) <= 16, shipped


def test_a_killed_worker_is_retried_and_the_output_is_identical(ray_engine, prices_ctx, tmp_path):
    from qpipe.engines.ray import RayEngine

    store, ctx = prices_ctx
    marker = tmp_path / "killed-once"
    pipe = Pipeline((dies_once.bind({"marker": str(marker)}),))
    done = RayEngine(shards=2, max_retries=2).run(pipe, ctx, store)
    assert marker.exists()
    assert done.records[0].retries == 1
    expected = LocalEngine().run(Pipeline((rets.bind(),)), ctx, store)
    assert done.context["returns"].digest == expected.context["returns"].digest


def test_a_data_error_fails_the_run_with_the_stage_error(ray_engine, prices_ctx):
    import ray

    store, ctx = prices_ctx
    with pytest.raises(StageError, match=r"stage `needs_missing_column`.*volume_typo") as info:
        ray_engine.run(Pipeline((needs_missing_column.bind(),)), ctx, store)
    assert not isinstance(info.value, ray.exceptions.RayError)
    assert "Traceback" not in str(info.value)


def test_scratch_files_are_removed_and_the_store_holds_only_outputs(ray_engine, prices_ctx):
    store, ctx = prices_ctx
    before = set(store.entries())
    done = ray_engine.run(three_steps(), ctx, store)
    added = set(store.entries()) - before
    assert {Path(done.context[n].path) for n in ("returns", "ranks", "combined")} >= added
    assert not list((store.root / "tmp").glob("ray/*"))


# two-node cluster: last, so the single-node cluster is started once --------------------------
@pytest.mark.parametrize("transport", ["path", "object"])
def test_refs_cross_node_boundaries_on_a_two_node_cluster(
    ray_cluster_address, prices_ctx, transport
):
    import ray

    from qpipe.engines.ray import RayEngine

    store, ctx = prices_ctx
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    reference = digests(LocalEngine(threads=1).run(three_steps(), ctx, store))
    eng = RayEngine(address=ray_cluster_address, shards=4, transport=transport)
    done = eng.run(three_steps(), ctx, store)
    assert digests(done) == reference
    assert len(eng.stats.nodes) == 2  # tasks ran, and read their inputs, on both nodes
    eng.close()
    assert ray.is_initialized()  # a joined cluster is not shut down by the engine


# an unreachable cluster (issue 15, defect 8): in a fresh process, so no session Ray is reused --
def test_an_unreachable_or_silent_address_fails_fast_with_one_line(tmp_path):
    import socket
    import subprocess
    import sys
    import time

    from tests.conftest import REPO, SMALL_BUILTIN_SETS

    silent = socket.socket()  # accepts connections, never speaks Ray
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    cases = {
        "127.0.0.1:1": "cannot reach ray at `engine.address` `127.0.0.1:1` within 3s",
        f"127.0.0.1:{port}": f"`127.0.0.1:{port}` did not answer within 3s",
    }
    try:
        for address, message in cases.items():
            argv = [
                sys.executable, "runner.py", *SMALL_BUILTIN_SETS, "--engine", "ray",
                "--set", f'engine.address="{address}"', "--set", "engine.connect_timeout=3",
                "--out", str(tmp_path / "runs"), "--no-report",
            ]  # fmt: skip
            start = time.monotonic()
            done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
            took = time.monotonic() - start
            lines = done.stderr.strip().splitlines()
            assert done.returncode == 1, done.stderr
            assert lines[-1].startswith("qpipe: error: ") and message in lines[-1], lines
            assert "Traceback" not in done.stderr
            assert took < 60, took  # was > 4 minutes of retries (ray import is most of this)
    finally:
        silent.close()
