"""The Prefect wrapper: a flow of one task per step, refs only, same digests as LocalEngine.

Prefect runs in ephemeral mode (a temporary local API server, no PREFECT_API_URL) with a
temporary PREFECT_HOME, so the test touches nothing outside its tmp folder. Starting that
server is most of the test's time (~10-40 s on the shared 2-core machine).
"""

from __future__ import annotations

import polars as pl
import pytest

from qpipe.context import RunContext
from qpipe.engines.local import LocalEngine
from qpipe.errors import StageError
from qpipe.stages.base import Pipeline, stage
from qpipe.store import ArrowStore, DatasetRef
from tests.conftest import random_walk_prices

pytestmark = pytest.mark.prefect


@stage(output="returns", shard="symbol")
def rets(prices: pl.LazyFrame) -> pl.LazyFrame:
    return prices.sort("symbol", "date").with_columns(
        pl.col("close").pct_change().over("symbol").alias("ret")
    )


@stage(output="vol", shard="symbol")
def vol(prices: pl.LazyFrame, *, window: int) -> pl.LazyFrame:
    return prices.sort("symbol", "date").select(
        "date",
        "symbol",
        pl.col("close").log().diff().rolling_std(window).over("symbol").alias("vol"),
    )


@stage(output="combined")
def combine(returns: pl.LazyFrame, vol: pl.LazyFrame) -> pl.LazyFrame:
    return returns.join(vol, on=["date", "symbol"]).sort("symbol", "date")


@stage(output="boom")
def boom(prices: pl.LazyFrame) -> pl.LazyFrame:
    return prices.select(pl.col("missing"))


@pytest.fixture(scope="module")
def prefect_env(tmp_path_factory):
    mp = pytest.MonkeyPatch()  # before prefect is imported: it reads its settings then
    mp.setenv("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect-home")))
    mp.delenv("PREFECT_API_URL", raising=False)
    mp.setenv("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", "true")
    mp.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # a loaded CI box
    mp.setenv("PREFECT_LOGGING_LEVEL", "WARNING")
    mp.setenv("PREFECT_RESULTS_PERSIST_BY_DEFAULT", "false")
    pytest.importorskip("prefect")
    yield
    # stop the temporary API server now, while pytest's streams are still open
    from prefect.server.api.server import SubprocessASGIServer

    for server in list(SubprocessASGIServer._instances.values()):
        server.stop()
    mp.undo()


def test_flow_outputs_match_the_local_engine_and_tasks_pass_refs(prefect_env, tmp_path):
    from qpipe.orchestration.prefect import as_flow

    store = ArrowStore(tmp_path / "store")
    ctx = RunContext({"prices": store.put(random_walk_prices(symbols=6, days=60))})
    pipe = Pipeline((rets.bind(), vol.bind({"window": 5}), combine.bind()), name="demo:pipe")
    expected = LocalEngine().run(pipe, ctx, store)

    done = as_flow(pipe, store=store)(ctx)
    assert [r.name for r in done.records] == ["rets", "vol", "combine"]
    for name in ("returns", "vol", "combined"):
        assert isinstance(done.context[name], DatasetRef)
        assert done.context[name].digest == expected.context[name].digest
    # nothing was persisted by Prefect: its home holds no result files
    import os

    results = [f for _, _, files in os.walk(os.environ["PREFECT_HOME"]) for f in files]
    assert not [f for f in results if "result" in f.lower()]

    with pytest.raises(StageError, match="stage `boom`"):
        as_flow(Pipeline((boom.bind(),)), store=store)(ctx)
