"""The point-in-time check's power: each kind of look-ahead, planted in the stage where it would
live, is caught with the default settings -- on the built-in universe and on a 20-symbol CSV file
in the real input format -- and pinned on that stage; honest strategies pass."""

from __future__ import annotations

import polars as pl
import pytest

from qpipe.config import ThreadSafeConfig
from qpipe.data.universe import builtin_universe
from qpipe.errors import AllocationAuditError
from qpipe.stages.allocation import allocate
from qpipe.stages.base import Pipeline, Step, stage
from qpipe.stages.features import features
from qpipe.strategy import build_strategy
from qpipe.validation.audit import audit_allocation
from qpipe.validation.pit import check_point_in_time, step_digest

# the default config, with a book the small universes can fill (10 names at the 10% cap)
CFG = ThreadSafeConfig.default().replace(allocation={"top_n": 10})
HONEST = build_strategy(CFG)
FEATURE_PARAMS = dict(HONEST.steps[0].params)
ALLOC_PARAMS = dict(HONEST.steps[2].params)


# the five planted look-aheads ----------------------------------------------------------------
@stage(output="features", shard="symbol")
def shifted_feature(prices: pl.LazyFrame) -> pl.LazyFrame:
    """Momentum as it will be five rows later."""
    honest = features.fn(prices, **FEATURE_PARAMS)
    return honest.with_columns(pl.col("mom").shift(-5).over("symbol"))


@stage(output="features", shard="symbol")
def centred_window(prices: pl.LazyFrame) -> pl.LazyFrame:
    """Price against a centred 21-row moving average (half the window is in the future)."""
    honest = features.fn(prices, **FEATURE_PARAMS)
    ma = pl.col("close").rolling_mean(21, center=True).over("symbol")
    return honest.with_columns((pl.col("close") / ma - 1.0).alias("mom"))


@stage(output="signals", shard="date")
def whole_sample_zscore(features: pl.LazyFrame) -> pl.LazyFrame:
    """Momentum normalised by the mean and spread of the whole sample (every date)."""
    m = pl.col("mom")
    z = (m - m.mean()) / m.std()
    return features.sort("date", "symbol").select("date", "symbol", z.alias("signal"))


@stage(output="signals", shard="date")
def next_close(features: pl.LazyFrame) -> pl.LazyFrame:
    """Tomorrow's return as the signal."""
    nxt = pl.col("close").shift(-1).over("symbol") / pl.col("close") - 1.0
    return features.sort("symbol", "date").select("date", "symbol", nxt.alias("signal"))


@stage(output="weights", shard=None)
def peek_next_rebalance(signals: pl.LazyFrame, features: pl.LazyFrame) -> pl.LazyFrame:
    """On each rebalance date, the book the honest allocation will hold on the next one."""
    honest = allocate.fn(signals, features, **ALLOC_PARAMS)
    dates = honest.select("date").unique().sort("date")
    ahead = dates.with_columns(pl.col("date").shift(-1).alias("_next")).drop_nulls()
    priced = signals.filter(pl.col("signal").is_not_null()).select("date", "symbol")
    return (
        ahead.join(honest, left_on="_next", right_on="date")
        .select("date", "symbol", "weight")
        .join(priced, on=["date", "symbol"], how="semi")  # only names priced that day
        .sort("date", "symbol")
    )


def _with(step: Step) -> Pipeline:
    steps = [step if s.outputs == step.outputs else s for s in HONEST.steps]
    return Pipeline(tuple(steps), name="planted", meta=HONEST.meta)


PLANTED = {
    "feature-shifted-forward": _with(shifted_feature.bind()),
    "centred-rolling-window": _with(centred_window.bind()),
    "whole-sample-normalisation": _with(whole_sample_zscore.bind()),
    "next-day-close": _with(next_close.bind()),
    "peek-next-rebalance": _with(
        peek_next_rebalance.bind(inputs=("signals", "features"), outputs="weights")
    ),
}
GUILTY = {
    "feature-shifted-forward": "shifted_feature",
    "centred-rolling-window": "centred_window",
    "whole-sample-normalisation": "whole_sample_zscore",
    "next-day-close": "next_close",
    "peek-next-rebalance": "peek_next_rebalance",
}


# the data ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def builtin() -> pl.DataFrame:
    return builtin_universe(symbols=30, start="2018-01-01", end="2021-12-31")


@pytest.fixture(scope="module")
def csv_file_prices(tmp_path_factory) -> pl.DataFrame:
    """20 symbols written as the real input format (CSV long: date,symbol,close), then ingested
    into a store and opened from it as a run would."""
    from qpipe.ingest import ingest_prices
    from qpipe.store import ArrowStore

    root = tmp_path_factory.mktemp("pit-csv")
    path = root / "prices.csv"
    frame = builtin_universe(symbols=20, start="2018-01-01", end="2021-12-31", seed=11)
    frame.select("date", "symbol", "close").write_csv(path)
    assert path.read_text().splitlines()[0] == "date,symbol,close"
    store = ArrowStore(root / "store")
    return store.open(ingest_prices(path, store).ref)


@pytest.fixture(params=["builtin", "csv-20-symbols"])
def prices(request, builtin, csv_file_prices) -> pl.DataFrame:
    return builtin if request.param == "builtin" else csv_file_prices


def _run(pipe: Pipeline, prices: pl.DataFrame) -> dict[str, pl.DataFrame]:
    env = pipe.apply_lazy({"prices": prices.lazy()})
    names = list(pipe.outputs)
    return dict(zip(names, pl.collect_all([env[n] for n in names]), strict=True))


# the tests -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(PLANTED))
def test_each_planted_look_ahead_is_caught_and_pinned_on_its_stage(prices, kind) -> None:
    pipe = PLANTED[kind]
    out = _run(pipe, prices)
    inter = {"features": out["features"], "signals": out["signals"]}
    assert audit_allocation(out["weights"], prices, CFG).passed  # structurally fine
    with pytest.raises(AllocationAuditError, match="point_in_time") as info:
        audit_allocation(out["weights"], prices, CFG, strategy=pipe, intermediates=inter)
    assert {v[2] for v in info.value.violations} == {"point_in_time"}
    assert f"look-ahead in step `{GUILTY[kind]}`" in str(info.value)
    # also without the run's intermediates (recomputed once from the prices)
    report = audit_allocation(out["weights"], prices, CFG, strategy=pipe, raise_on_violation=False)
    failed = [p.step for p in report.pit_stages if not p.passed]
    assert failed == [GUILTY[kind]]


@pytest.mark.parametrize(
    "allocation",
    [
        {},
        {"rebalance": "weekly", "scheme": "long_short", "long_only": False},
        {"rebalance": "every_k", "every_k": 7, "target_vol": 0.1, "vol_window": 20},
        {"rebalance": "daily", "scheme": "inverse_vol"},
    ],
    ids=["default", "weekly-long-short", "every-k-vol-target", "daily-inverse-vol"],
)
def test_honest_strategies_pass(prices, allocation) -> None:
    cfg = CFG.replace(allocation=allocation)
    pipe = build_strategy(cfg)
    out = _run(pipe, prices)
    inter = {"features": out["features"], "signals": out["signals"]}
    report = audit_allocation(out["weights"], prices, cfg, strategy=pipe, intermediates=inter)
    assert report.passed and len(report.pit_cuts) == 3
    assert [p.step for p in report.pit_stages] == [s.name for s in pipe.steps]
    assert all(p.rows > 0 and not p.reused for p in report.pit_stages)


def test_each_shard_reruns_a_small_part_of_the_data(builtin) -> None:
    """Per-symbol steps re-run a sample of symbols, per-date steps only the compared dates."""
    out = _run(HONEST, builtin)
    frames = {"prices": builtin, **out}
    dates = out["weights"]["date"].unique().sort()
    cuts = list(dates[[-30, -15, -1]])
    _, proofs = check_point_in_time(HONEST, frames, cuts, warm=257, warm_all=5, symbols=4)
    by = {p.step: p for p in proofs}
    assert by["cross_sectional"].rows <= 3 * 3 * 30  # 3 compared dates x 30 symbols, per cut
    assert by["features"].rows < 3 * 16 * (257 + 70)  # <= 4 + 10 symbols, warm-up + window
    assert all(p.passed for p in proofs)


def test_a_proven_step_is_not_rerun_and_its_digest_follows_code_params_and_schema(
    builtin,
) -> None:
    out = _run(HONEST, builtin)
    frames = {"prices": builtin, **out}
    cuts = [out["weights"]["date"].max()]
    feat = HONEST.steps[0]
    digest = step_digest(feat, [builtin.schema])
    _, proofs = check_point_in_time(HONEST, frames, cuts, warm=257, proven=frozenset({digest}))
    assert [p.reused for p in proofs] == [True, False, False]
    assert proofs[0].digest == digest and proofs[0].rows == 0
    other = features.bind({**FEATURE_PARAMS, "lookback": 100}, outputs="features")
    assert step_digest(other, [builtin.schema]) != digest
    wider = builtin.with_columns(pl.lit(1.0).alias("dividend"))
    assert step_digest(feat, [wider.schema]) != digest
    assert step_digest(shifted_feature.bind(), [builtin.schema]) != digest


def test_the_sample_sliced_by_position_equals_the_sample_filtered(csv_file_prices) -> None:
    """In the store's order the sampled symbols' rows are sliced by position (their runs);
    the plan, and so every re-run, is the same as when every row's symbol is tested."""
    from qpipe.validation._keys import PriceKeys
    from qpipe.validation._pit_plan import make_plan

    prices = csv_file_prices
    facts = PriceKeys.of(prices.select("date", "symbol"))
    assert facts.ordered  # what a run's audit sees: the store's order
    out = _run(HONEST, prices)
    frames = {"prices": prices, **out}
    dates = out["weights"]["date"].unique().sort()
    for cuts, n in (([dates[-40], dates[-1]], 64), ([dates[-25]], 3), ([dates[5]], 1)):
        kw = dict(weights_name="weights", warm=60, warm_all=5, window=3, every_k=None, symbols=n)
        filtered = make_plan(HONEST, frames, cuts, **kw)
        sliced = make_plan(HONEST, frames, cuts, **kw, source_runs=facts.firsts)
        assert sliced.by_symbol["prices"].equals(filtered.by_symbol["prices"])
        assert sliced.cuts == filtered.cuts
        for step in HONEST.steps:
            for cut in sliced.cuts:
                a, b = sliced.inputs(step, cut), filtered.inputs(step, cut)
                assert all(x.equals(y) for x, y in zip(a, b, strict=True))
