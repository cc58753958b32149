"""The stage contract and the reference-only run context."""

from __future__ import annotations

import pickle

import polars as pl
import pyarrow as pa
import pytest

from qpipe.context import RunContext
from qpipe.errors import StageError
from qpipe.stages.base import Pipeline, stage
from qpipe.store import ArrowStore


@stage(output="returns", shard="symbol")
def simple_returns(prices: pl.LazyFrame, *, horizon: int = 1) -> pl.LazyFrame:
    """Per-symbol simple returns."""
    return prices.sort("symbol", "date").with_columns(
        pl.col("close").pct_change(horizon).over("symbol").alias("ret")
    )


@stage(output="mean_ret", shard=None)
def mean_return(returns: pl.LazyFrame) -> pl.LazyFrame:
    return returns.group_by("symbol").agg(pl.col("ret").mean()).sort("symbol")


def test_signature_is_the_metadata():
    assert simple_returns.inputs == ("prices",)
    assert simple_returns.outputs == ("returns",)
    assert simple_returns.params == ("horizon",)
    assert simple_returns.shard == "symbol"
    assert simple_returns.doc == "Per-symbol simple returns."


def test_missing_annotations_are_rejected_with_the_fix():
    with pytest.raises(StageError, match="parameter `x` needs a type annotation"):

        @stage()
        def bad(x) -> pl.LazyFrame:  # type: ignore[no-untyped-def]
            return x

    with pytest.raises(StageError, match="make it keyword-only"):

        @stage()
        def bad2(x: pl.LazyFrame, n: int) -> pl.LazyFrame:
            return x

    with pytest.raises(StageError, match="add a return annotation"):

        @stage()
        def bad3(x: pl.LazyFrame):  # type: ignore[no-untyped-def]
            return x


def test_bind_rejects_unknown_params():
    with pytest.raises(StageError, match="has no param"):
        simple_returns.bind({"horizn": 2})


def test_stage_returning_a_dataframe_breaks_the_contract(small_prices):
    @stage()
    def eager(prices: pl.LazyFrame) -> pl.LazyFrame:
        return prices.collect()  # type: ignore[return-value]

    with pytest.raises(StageError, match="must return 1 LazyFrame"):
        Pipeline((eager.bind(),)).apply_lazy({"prices": small_prices.lazy()})


def test_stage_errors_name_the_stage(small_prices):
    @stage()
    def explode(prices: pl.LazyFrame) -> pl.LazyFrame:
        raise ValueError("bad things")

    with pytest.raises(StageError, match="stage `explode` failed: ValueError: bad things"):
        Pipeline((explode.bind(),)).apply_lazy({"prices": small_prices.lazy()})


def test_pipeline_is_lazy_and_pure(small_prices):
    pipe = Pipeline((simple_returns.bind({"horizon": 1}), mean_return.bind()))
    assert pipe.sources == ("prices",)
    before = small_prices.clone()
    env = pipe.apply_lazy({"prices": small_prices.lazy()})
    assert isinstance(env["mean_ret"], pl.LazyFrame)
    assert small_prices.equals(before)
    assert env["mean_ret"].collect().height == small_prices["symbol"].n_unique()


def test_duplicate_outputs_and_unresolvable_inputs():
    with pytest.raises(StageError, match="produced twice"):
        Pipeline((simple_returns.bind(), simple_returns.bind()))
    pipe = Pipeline((mean_return.bind(),))
    with pytest.raises(StageError, match="needs input"):
        pipe.apply_lazy({})


@pytest.mark.parametrize(
    "value",
    [
        pl.DataFrame({"a": [1]}),
        pl.LazyFrame({"a": [1]}),
        pa.table({"a": [1]}),
        [1, 2, 3],
        "some/path.arrow",
    ],
    ids=["DataFrame", "LazyFrame", "ArrowTable", "list", "str"],
)
def test_context_refuses_anything_but_refs(value):
    with pytest.raises(StageError, match="only refs may travel"):
        RunContext({"prices": value})
    with pytest.raises(StageError):
        RunContext().with_refs(prices=value)


def test_context_is_immutable(store, small_prices):
    ctx = RunContext({"prices": store.put(small_prices)})
    with pytest.raises(StageError):
        ctx.extra = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        ctx["x"] = 1  # type: ignore[index]
    with pytest.raises(StageError, match="has no dataset `nope`"):
        ctx["nope"]


@pytest.mark.parametrize("rows", [10, 10_000, 1_000_000])
def test_context_pickled_size_is_constant_whatever_the_data_size(tmp_path, rows):
    store = ArrowStore(tmp_path)
    frame = pl.DataFrame(
        {"x": pl.int_range(rows, eager=True), "y": pl.int_range(rows, eager=True) * 0.5}
    )
    ctx = RunContext({"prices": store.put(frame), "features": store.put(frame.head(rows // 2))})
    size = len(pickle.dumps(ctx))
    assert size < 2048, size
    assert pickle.loads(pickle.dumps(ctx))["prices"].rows == rows
