"""LocalEngine: refs in, refs out; per-stage records; order and thread-count independence."""

from __future__ import annotations

import polars as pl
import pytest

from qpipe.context import RunContext
from qpipe.engines.local import LocalEngine
from qpipe.errors import StageError
from qpipe.stages.base import Pipeline, stage
from qpipe.store import DatasetRef


@stage(output="returns", shard="symbol")
def rets(prices: pl.LazyFrame) -> pl.LazyFrame:
    return prices.sort("symbol", "date").with_columns(
        pl.col("close").pct_change().over("symbol").alias("ret")
    )


@stage(output="vol", shard="symbol")
def vol(prices: pl.LazyFrame, *, window: int) -> pl.LazyFrame:
    return prices.sort("symbol", "date").with_columns(
        pl.col("close").log().diff().rolling_std(window).over("symbol").alias("vol")
    )


@stage(output="combined")
def combine(returns: pl.LazyFrame, vol: pl.LazyFrame) -> pl.LazyFrame:
    return returns.join(vol.select("date", "symbol", "vol"), on=["date", "symbol"]).sort(
        "symbol", "date"
    )


def _pipeline() -> Pipeline:
    return Pipeline((rets.bind(), vol.bind({"window": 5}), combine.bind()))


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_outputs_are_refs_and_identical_for_any_thread_count(store, small_prices, threads):
    ctx = RunContext({"prices": store.put(small_prices)})
    result = LocalEngine(threads=threads).run(_pipeline(), ctx, store)
    assert all(isinstance(result.context[n], DatasetRef) for n in ("returns", "vol", "combined"))
    assert [r.name for r in result.records] == ["rets", "vol", "combine"]
    combined = store.open(result.context["combined"])
    assert combined.height == small_prices.height
    # pinned against a single-threaded run with shuffled input rows
    shuffled = RunContext(
        {"prices": store.put(small_prices.sample(fraction=1.0, shuffle=True, seed=3))}
    )
    again = LocalEngine(threads=1).run(_pipeline(), shuffled, store)
    assert again.context["combined"].digest == result.context["combined"].digest


def test_levels_group_independent_steps():
    levels = _pipeline().levels()
    assert [[s.name for s in level] for level in levels] == [["rets", "vol"], ["combine"]]


def test_records_hold_digests_rows_and_seconds(store, small_prices):
    ref = store.put(small_prices)
    seen = []
    result = LocalEngine().run(
        _pipeline(), RunContext({"prices": ref}), store, on_record=seen.append
    )
    rec = result.records[0]
    assert rec.inputs == {"prices": ref.digest}
    assert rec.outputs["returns"].rows == small_prices.height
    assert rec.seconds > 0
    assert seen == list(result.records)
    js = rec.to_json()
    assert js["outputs"]["returns"]["digest"] == rec.outputs["returns"].digest


def test_check_hook_sees_every_output_before_it_is_stored(store, small_prices):
    seen = []
    LocalEngine().run(
        _pipeline(),
        RunContext({"prices": store.put(small_prices)}),
        store,
        check=lambda step, name, frame: seen.append((step.name, name, frame.height)),
    )
    names = [s[1] for s in seen]
    assert (
        sorted(names[:2]) == ["returns", "vol"] and names[2] == "combined"
    )  # level 1 runs in threads


def test_a_failing_stage_is_named(store, small_prices):
    @stage(output="boom")
    def broken(prices: pl.LazyFrame) -> pl.LazyFrame:
        return prices.select(pl.col("no_such_column"))

    with pytest.raises(StageError, match="stage `broken` failed computing `boom`"):
        LocalEngine().run(
            Pipeline((broken.bind(),)), RunContext({"prices": store.put(small_prices)}), store
        )


def test_step_cache_reuses_outputs_of_identical_steps(store, small_prices):
    from qpipe.engines.base import StepCache

    cache = StepCache()
    ctx = RunContext({"prices": store.put(small_prices)})
    first = LocalEngine().run(_pipeline(), ctx, store, cache=cache)
    assert not any(r.cached for r in first.records) and len(cache) == 3
    # same features, different downstream param: only the changed step recomputes
    changed = Pipeline((rets.bind(), vol.bind({"window": 7}), combine.bind()))
    second = LocalEngine().run(changed, ctx, store, cache=cache)
    assert [r.cached for r in second.records] == [True, False, False]
    assert second.context["returns"] == first.context["returns"]
    assert second.context["vol"].digest != first.context["vol"].digest
