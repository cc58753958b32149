"""Tests for qpipe.views.sweep_page: ranking, heatmaps, links to trial reports, the spread."""

from __future__ import annotations

import re

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qpipe.errors import ConfigError
from qpipe.views import render_sweep
from qpipe.views.sweep_page import variance_explained
from tests.unit.views._pages import parse


def key_cells(page: str) -> list[str]:
    return re.findall(r'<td class="num key"[^>]*>([^<]*)</td>', page)


def test_one_param_sorts_best_first_with_nulls_last_and_draws_the_spread() -> None:
    summary = pl.DataFrame(
        {"backtest.cost_bps": [0.0, 5.0, 10.0, 20.0], "sharpe": [0.9, None, 1.1, 0.2],
         "cagr": [0.05, 0.04, 0.06, 0.01]}
    )  # fmt: skip
    page = render_sweep(summary, metric="sharpe", params=["backtest.cost_bps"], title="cost")
    parse(page)
    assert key_cells(page) == ["1.10", "0.90", "0.20", "—"]
    for sid in ("ranking-distribution", "by-parameter", "trials"):
        assert f'<section id="{sid}">' in page
    assert 'id="chart-ranking-distribution"' in page and 'id="chart-by-parameter"' in page


def test_lower_is_better_metric_sorts_ascending() -> None:
    summary = pl.DataFrame({"strategy.lookback": [63, 126, 252], "ann_vol": [0.2, 0.1, 0.3]})
    page = render_sweep(summary, metric="ann_vol", params=["strategy.lookback"], title="t")
    assert key_cells(page) == ["10.00%", "20.00%", "30.00%"]


def grid_summary() -> pl.DataFrame:
    grid = [(lb, tn) for lb in (63, 126, 252) for tn in (20, 50)]
    return pl.DataFrame(
        {
            "trial": list(range(len(grid))),
            "strategy.lookback": [g[0] for g in grid],
            "allocation.top_n": [g[1] for g in grid],
            "sharpe": [0.1 * i for i in range(len(grid))],
            "run_id": [f"r{i}" if i % 2 else None for i in range(len(grid))],
            "status": ["ok"] * len(grid),
        }
    )


def test_two_params_heatmap_marks_the_best_cell() -> None:
    page = render_sweep(grid_summary(), metric="sharpe",
                        params=["strategy.lookback", "allocation.top_n"], title="grid")  # fmt: skip
    parse(page)
    heat = re.search(r'<table class="heatmap">(.*?)</table>', page, re.S)
    assert heat is not None
    rows = re.findall(r"<tr><th>(\d+)</th>(.*?)</tr>", heat.group(1), re.S)
    assert [r[0] for r in rows] == ["63", "126", "252"]
    assert all(len(re.findall(r"<td", r[1])) == 2 for r in rows)
    assert re.findall(r'<td class="num best"[^>]*>([^<]*)</td>', heat.group(1)) == ["0.50"]


def test_trials_link_to_their_report_or_show_the_promote_command() -> None:
    page = render_sweep(grid_summary(), metric="sharpe", sweep_id="SW1",
                        params=["strategy.lookback", "allocation.top_n"], title="g")  # fmt: skip
    assert '<a href="../../r5/report.html">report</a>' in page
    assert "<code>python -m qpipe sweep promote SW1 4</code>" in page
    hrefs = re.findall(r'href="([^"]+)"', page)
    assert all(h.startswith(("#", "../../r")) for h in hrefs), hrefs


def test_many_params_show_pairs_of_the_most_explanatory_ones() -> None:
    rng = np.random.default_rng(0)
    n = 200
    frame = pl.DataFrame({f"p{i}": rng.integers(0, 3, n) for i in range(6)})
    frame = frame.with_columns(
        (pl.col("p4") * 2.0 + pl.col("p1") + rng.normal(0, 0.1, n)).alias("sharpe")
    )
    page = render_sweep(frame, metric="sharpe", params=[f"p{i}" for i in range(6)], title="six")
    pairs = re.findall(r"<h3>(p\d) × (p\d)</h3>", page)
    assert len(pairs) == 6 and ("p1", "p4") in pairs  # the pairs of the 4 most explanatory


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.floats(-5, 5)), min_size=2, max_size=40))
def test_variance_explained_is_a_share(rows: list[tuple[int, float]]) -> None:
    frame = pl.DataFrame(rows, schema={"p": pl.Int64, "m": pl.Float64}, orient="row")
    share = variance_explained(frame, "m", "p")
    assert -1e-9 <= share <= 1 + 1e-9
    if frame["p"].n_unique() == frame.height:
        assert share == pytest.approx(1.0) or frame["m"].var() == 0


def test_no_rows_and_many_params_render() -> None:
    empty = pl.DataFrame(
        schema={"a": pl.Int64, "b": pl.Int64, "c": pl.Float64, "sharpe": pl.Float64}
    )
    for params in (["a"], ["a", "b"], ["a", "b", "c"]):
        parse(render_sweep(empty, metric="sharpe", params=params, title="empty"))


def test_unknown_metric_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="`cagr`"):
        render_sweep(
            pl.DataFrame({"a": [1], "sharpe": [1.0]}), metric="cagr", params=["a"], title="t"
        )
