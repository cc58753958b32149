"""Strategy assembly from config, warm-up lengths, the example configs, engine + per-step checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from qpipe.config import ThreadSafeConfig
from qpipe.context import RunContext
from qpipe.engines.local import LocalEngine
from qpipe.errors import SchemaValidationError
from qpipe.stages.base import Pipeline, stage
from qpipe.strategy import STRATEGY_KINDS, build_strategy, warmup_days
from qpipe.validation.audit import audit_allocation
from qpipe.validation.steps import check_step_output
from tests.unit.stages.test_features import make_universe

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SHORT = {"lookback": 60, "skip": 5, "fast": 10, "slow": 40, "vol_window": 20}

KIND_CASES = {
    "momentum": {"strategy": {"kind": "momentum"}},
    "mean_reversion": {
        "strategy": {"kind": "mean_reversion", "lookback": 5, "signal": "zscore"},
        "allocation": {"scheme": "long_short", "long_only": False, "rebalance": "weekly"},
    },
    "ma_crossover": {
        "strategy": {"kind": "ma_crossover"},
        "allocation": {"scheme": "proportional", "rebalance": "every_k", "every_k": 5},
    },
    "low_volatility": {
        "strategy": {"kind": "low_volatility"},
        "allocation": {"scheme": "inverse_vol", "top_n": 8, "target_vol": 0.1, "vol_window": 20},
    },
}


def config(case: dict) -> ThreadSafeConfig:
    strat = SHORT | case.get("strategy", {})
    return ThreadSafeConfig.from_mapping({**case, "strategy": strat})


@pytest.fixture(scope="module")
def prices() -> pl.DataFrame:
    return make_universe()


@pytest.mark.parametrize("kind", STRATEGY_KINDS)
def test_each_kind_builds_features_signals_weights_and_passes_the_audit(kind, prices) -> None:
    cfg = config(KIND_CASES[kind])
    pipe = build_strategy(cfg)
    assert pipe.sources == ("prices",)
    assert pipe.outputs == ("features", "signals", "weights")
    assert [s.stage.shard for s in pipe.steps] == ["symbol", "date", None]
    assert pipe.meta["warmup_days"] == warmup_days(cfg)
    w = pipe.apply_lazy({"prices": prices.lazy()})["weights"].collect()
    assert w.filter(pl.col("weight") != 0).height > 0
    report = audit_allocation(w, prices, cfg, strategy=pipe)
    assert report.passed and "point_in_time" in report.checks


def test_strategy_output_does_not_depend_on_price_row_order(prices) -> None:
    cfg = config(KIND_CASES["low_volatility"])
    pipe = build_strategy(cfg)
    a = pipe.apply_lazy({"prices": prices.lazy()})["weights"].collect()
    b = pipe.apply_lazy({"prices": prices.sort("close").lazy()})["weights"].collect()
    assert a.equals(b)


def test_strategy_kinds_use_their_own_feature() -> None:
    def cols(kind: str, **alloc) -> tuple[str, ...]:
        cfg = config({"strategy": {"kind": kind}, "allocation": alloc})
        return build_strategy(cfg).steps[0].params["columns"]

    assert cols("momentum") == ("mom",)
    assert cols("mean_reversion") == ("rev",)
    assert cols("low_volatility", scheme="inverse_vol") == ("vol", "risk_vol")
    assert cols("ma_crossover", target_vol=0.1) == ("ret", "ma_fast", "ma_slow")
    sig = build_strategy(config({"strategy": {"kind": "low_volatility"}})).steps[1]
    assert sig.params["column"] == "vol" and sig.params["sign"] == -1.0


def test_warmup_days_is_the_longest_window_the_strategy_reads() -> None:
    assert warmup_days(ThreadSafeConfig.default()) == 252
    assert warmup_days(config({"strategy": {"kind": "ma_crossover"}})) == 39
    lowvol = {"strategy": {"kind": "low_volatility"}, "allocation": {"vol_window": 30}}
    assert warmup_days(config(lowvol)) == 20
    lowvol["allocation"] |= {"scheme": "inverse_vol"}
    assert warmup_days(config(lowvol)) == 30
    mr = {"strategy": {"kind": "mean_reversion", "lookback": 5}}
    assert warmup_days(config(mr | {"allocation": {"target_vol": 0.1, "vol_window": 63}})) == 63


DIGESTS = """
import hashlib, io, json, sys
import polars as pl
from qpipe.config import ThreadSafeConfig
from qpipe.strategy import build_strategy
prices = pl.read_ipc(sys.argv[1])
for case in json.loads(sys.argv[2]):
    env = build_strategy(ThreadSafeConfig.from_mapping(case)).apply_lazy({"prices": prices.lazy()})
    for name in ("features", "signals", "weights"):
        buf = io.BytesIO()
        env[name].collect().rechunk().write_ipc(buf)
        print(hashlib.sha256(buf.getvalue()).hexdigest())
"""


def test_outputs_are_bit_identical_for_any_polars_thread_count(tmp_path) -> None:
    path = tmp_path / "prices.arrow"
    make_universe(symbols=60, days=400, seed=2).write_ipc(path)
    cases = json.dumps([config(case).to_dict() for case in KIND_CASES.values()])
    out = []
    for threads in ("1", "2"):
        env = os.environ | {"POLARS_MAX_THREADS": threads}
        cmd = [sys.executable, "-c", DIGESTS, str(path), cases]
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        assert run.returncode == 0, run.stderr
        out.append(run.stdout.split())
    assert len(out[0]) == 12
    assert out[0] == out[1]


@pytest.mark.parametrize("name", ["momentum_12_1", "mean_reversion", "risk_parity"])
def test_example_configs_load_and_produce_audited_weights(name: str) -> None:
    cfg = ThreadSafeConfig.from_toml(CONFIGS / f"{name}.toml")
    prices = make_universe(symbols=30, days=420, seed=11)
    pipe = build_strategy(cfg)
    w = pipe.apply_lazy({"prices": prices.lazy()})["weights"].collect()
    assert w.filter(pl.col("weight") != 0).height > 0
    assert audit_allocation(w, prices, cfg, strategy=pipe).passed


def test_engine_run_with_per_step_checks_matches_the_lazy_run(prices, tmp_path) -> None:
    from qpipe.store import ArrowStore

    cfg = config(KIND_CASES["mean_reversion"])
    pipe = build_strategy(cfg)
    store = ArrowStore(tmp_path / "store")
    ctx = RunContext({"prices": store.put(prices.sort("symbol", "date"))})
    seen: list[str] = []

    def check(step, name, frame):
        seen.append(name)
        check_step_output(step, name, frame)

    with LocalEngine(threads=1) as engine:
        run = engine.run(pipe, ctx, store, check=check)
    assert seen == ["features", "signals", "weights"]
    stored = store.open(run.context["weights"])
    lazy = pipe.apply_lazy({"prices": prices.lazy()})["weights"].collect()
    assert stored.equals(lazy)


def test_per_step_check_names_the_stage_that_broke_its_output(prices, tmp_path) -> None:
    from qpipe.store import ArrowStore

    @stage(output="signals", shard="date")
    def broken(features: pl.LazyFrame) -> pl.LazyFrame:
        return features.select("date", "symbol", (pl.col("close") * float("inf")).alias("signal"))

    good = build_strategy(config(KIND_CASES["momentum"]))
    pipe = Pipeline((good.steps[0], broken.bind(), good.steps[2]))
    store = ArrowStore(tmp_path / "store")
    ctx = RunContext({"prices": store.put(prices)})
    with pytest.raises(SchemaValidationError, match="stage `broken` output `signals`"):
        LocalEngine(threads=1).run(pipe, ctx, store, check=check_step_output)
