"""The research page: each section appears when its data is given, and the chart data is valid."""

from __future__ import annotations

import json
import re

import numpy as np
import polars as pl

from qpipe.views.research import ResearchPage, render_research


def chart_data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="qpipe-chart-data">(.*?)</script>', html)
    assert m
    return json.loads(m.group(1).replace("<\\/", "</"))


def test_every_section_with_its_chart():
    rng = np.random.default_rng(0)
    ins = rng.normal(size=50)
    page = ResearchPage(
        title="Is sweep S real?",
        subtitle="t",
        facts=[("sweep", "S")],
        verdict="DSR 0.41 with N = 240 trials: not significant at 95%",
        stats={"dsr": 0.41, "n_trials": 240, "sr": 0.05, "sr0": 0.06, "min_trl": float("inf")},
        is_oos=(ins, 0.5 * ins + rng.normal(size=50), ins > 1.0),
        lambdas=rng.normal(size=12_870),
        pbo=0.5,
        slope=0.5,
        psr_curve=(np.arange(2.0, 100.0), np.linspace(0.5, 0.99, 98)),
        tables=(("folds", "Folds", pl.DataFrame({"fold": [0, 1], "is_sharpe": [1.0, None]})),),
    )
    html = render_research(page)
    for sid in ("verdict", "is-oos", "pbo", "min-trl", "folds"):
        assert f'<section id="{sid}">' in html
    assert "DSR 0.41 with N = 240 trials: not significant at 95%" in html
    assert "PBO = 0.5" in html and "12,870 halvings" in html and "∞" in html
    ids = [c["id"] for c in chart_data(html)["charts"]]
    assert ids == ["chart-is-oos", "chart-lambda", "chart-min-trl"]
    assert "<script src=" not in html and '<link rel="stylesheet" href=' not in html


def test_only_given_sections_and_no_chart_script_without_charts():
    html = render_research(ResearchPage(title="x", tables=(("t", "T", pl.DataFrame({"a": [1]})),)))
    assert '<section id="t">' in html and '<section id="pbo">' not in html
    assert "qpipe-chart-data" not in html


def test_the_research_page_draws_every_chart_in_a_browser(tmp_path):
    import pytest

    from tests.chromium import chromium_path, load_page

    if chromium_path() is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    rng = np.random.default_rng(2)
    ins = rng.normal(size=40)
    page = ResearchPage(
        title="t",
        is_oos=(ins, ins + rng.normal(size=40), ins > 1.0),
        lambdas=rng.normal(size=3432),
        pbo=0.4,
        psr_curve=(np.arange(2.0, 300.0), np.linspace(0.5, 0.99, 298)),
    )
    path = tmp_path / "research.html"
    path.write_text(render_research(page), encoding="utf-8")
    probe = """(() => ({drawn: document.documentElement.dataset.charts,
        errors: document.documentElement.dataset.chartErrors}))()"""
    load = load_page(path, probe)
    assert load.errors == []
    assert load.requests == [path.resolve().as_uri()]
    assert load.probe == {"drawn": "3/3", "errors": ""}
