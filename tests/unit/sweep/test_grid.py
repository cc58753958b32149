"""The grid: every kind of bad input is one ConfigError before any work; trial <-> params."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings, target
from hypothesis import strategies as st

from qpipe.config import ThreadSafeConfig
from qpipe.errors import ConfigError
from qpipe.sweep.grid import Grid, grid_from_config

BASE = ThreadSafeConfig.default()


def flags(**axes):
    return [(k.replace("__", "."), v, f"flag `{k}`") for k, v in axes.items()]


@pytest.mark.parametrize(
    ("axes", "match"),
    [
        ({}, r"no parameters"),
        ({"strategy__lookbak": [5, 10]}, r"unknown key `strategy.lookbak`"),
        ({"strategy__lookback": ["x", 5]}, r"`strategy.lookback` must be int, got string"),
        ({"strategy__lookback": [21, 0]}, r"`strategy.lookback` must be >= 1, got 0"),
        ({"strategy__lookback": [21, 42, 21]}, r"lists the value 21 twice"),
        ({"backtest__cost_bps": [5, 5.0]}, r"lists the value 5.0 twice"),
        ({"data__symbols": [10, 20]}, r"`data.symbols` cannot be swept"),
        ({"strategy__lookback": []}, r"one or more scalar values"),
        ({"strategy__lookback": [[1, 2]]}, r"one or more scalar values"),
    ],
)
def test_bad_grid_is_one_config_error_naming_the_key(axes, match):
    with pytest.raises(ConfigError, match=match) as info:
        grid_from_config(BASE, flags(**axes))
    assert "\n" not in str(info.value)


def test_a_grid_over_max_trials_is_refused_before_anything_runs():
    axes = flags(strategy__lookback=list(range(30, 130)), allocation__top_n=list(range(1, 11)))
    assert grid_from_config(BASE, axes, max_trials=1000).n_trials == 1000
    with pytest.raises(
        ConfigError, match=r"1,000 trials \(100 x 10\), more than `--max-trials` 999"
    ):
        grid_from_config(BASE, axes, max_trials=999)


def test_the_default_limit_is_100_000_trials():
    axes = flags(strategy__lookback=list(range(30, 1030)), allocation__top_n=list(range(1, 102)))
    with pytest.raises(ConfigError, match=r"101,000 trials"):
        grid_from_config(BASE, axes)


def test_values_are_coerced_to_the_key_type_and_flags_replace_table_entries():
    cfg = ThreadSafeConfig.from_mapping(
        {"sweep": {"strategy.lookback": [21, 42], "metric": "cagr", "backtest": {"cost_bps": [5]}}}
    )
    grid = grid_from_config(cfg, [("strategy.lookback", [63], "flag")])
    assert grid.axes == (("strategy.lookback", (63,)), ("backtest.cost_bps", (5.0,)))
    assert isinstance(grid.axes[1][1][0], float)


def test_a_combination_rule_is_not_a_grid_error():
    # skip < lookback holds per combination: 30 is fine with lookback 63, not with 21
    grid = grid_from_config(BASE, flags(strategy__lookback=[21, 63], strategy__skip=[5, 30]))
    assert grid.n_trials == 4


axes_strategy = st.lists(
    st.tuples(
        st.sampled_from(["strategy.a", "allocation.b", "strategy.c", "backtest.d", "allocation.e"]),
        st.integers(1, 4),
    ),
    min_size=1,
    max_size=5,
    unique_by=lambda t: t[0],
)


@settings(deadline=None, max_examples=60)
@given(axes=axes_strategy)
def test_trial_order_and_execution_order_are_the_cartesian_product(axes):
    grid = Grid(tuple((k, tuple(range(n))) for k, n in axes))
    product = [
        dict(zip(grid.keys, c, strict=True)) for c in itertools.product(*(v for _, v in grid.axes))
    ]
    assert [grid.params(i) for i in range(grid.n_trials)] == product  # first key slowest
    order = [grid.trial_at(p) for p in range(grid.n_trials)]
    assert sorted(order) == list(range(grid.n_trials))  # a permutation: every trial once
    signal = [k for k in grid.keys if k.startswith("strategy.")]
    runs = [tuple(grid.params(i)[k] for k in signal) for i in order]
    changes = sum(a != b for a, b in itertools.pairwise(runs))
    distinct = len(set(runs))
    target(float(distinct))
    assert changes == distinct - 1  # trials sharing signal params are contiguous


def test_grid_digest_depends_on_keys_values_and_order():
    a = Grid((("strategy.lookback", (21, 42)), ("allocation.top_n", (3,))))
    b = Grid((("allocation.top_n", (3,)), ("strategy.lookback", (21, 42))))
    assert a.digest != b.digest
    assert Grid.from_json(a.to_json()) == a and Grid.from_json(a.to_json()).digest == a.digest
