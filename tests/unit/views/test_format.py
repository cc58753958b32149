"""Tests for qpipe.views.format: the one place a metric value becomes text."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qpipe.views.format import METRIC_LABELS, format_metric


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("total_return", 0.2531, "25.31%"),
        ("cagr", -0.05, "-5.00%"),
        ("max_drawdown", -0.3412, "-34.12%"),
        ("ann_vol", 0.158, "15.80%"),
        ("turnover_ann", 12.5, "1,250.00%"),
        ("sharpe", 1.234, "1.23"),
        ("information_ratio", -0.456, "-0.46"),
        ("beta", 1.0, "1.00"),
        ("n_rebalances", 1200, "1,200"),
        ("total_cost", 0.0123, "0.0123"),
        ("total_cost", 12345.6, "12,346"),
        ("unknown_count", 7, "7"),
        ("sharpe", None, "—"),
        ("sharpe", float("nan"), "—"),
        ("cagr", float("inf"), "—"),
    ],
)
def test_format_metric(name: str, value: float | int | None, text: str) -> None:
    assert format_metric(name, value) == text


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from([*METRIC_LABELS, "other"]),
    value=st.none() | st.floats() | st.integers(-(10**12), 10**12),
)
def test_format_metric_is_total(name: str, value: float | int | None) -> None:
    text = format_metric(name, value)
    assert text
    finite = value is not None and math.isfinite(value)
    assert (text == "—") == (not finite)


def test_old_import_path_still_works() -> None:
    from qpipe import report, views

    assert report.format_metric is views.format_metric
    assert report.render_sweep is views.render_sweep
