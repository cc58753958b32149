"""The research page: each section appears when its data is given, and the chart data is valid."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import polars as pl
import pytest

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
        prob_loss=0.25,
        psr_curve=(np.arange(2.0, 100.0), np.linspace(0.5, 0.99, 98)),
        tables=(("folds", "Folds", pl.DataFrame({"fold": [0, 1], "is_sharpe": [1.0, None]})),),
    )
    html = render_research(page)
    for sid in ("verdict", "is-oos", "pbo", "min-trl", "folds"):
        assert f'<section id="{sid}">' in html
    assert "DSR 0.41 with N = 240 trials: not significant at 95%" in html
    assert "PBO = 0.5" in html and "12,870 halvings" in html and "∞" in html
    assert "Performance degradation (OLS slope of OOS on IS Sharpe): 0.5." in html
    assert "Probability of an out-of-sample loss: 0.25." in html
    slope = np.polyfit(ins, page.is_oos[1], 1)[0]
    assert f"OLS slope of OOS on IS (these points): {slope:.3g}." in html
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


def research_data(n_halvings: int = 3432) -> ResearchPage:
    rng = np.random.default_rng(3)
    ins = rng.normal(size=30)
    return ResearchPage(
        title="Walk-forward",
        subtitle="s <b>",
        facts=[("splits", "5 folds, {'a': '<x>'}")],
        verdict="DSR 0.41 with N = 240 trials: not significant at 95%",
        stats={
            "dsr": 0.41,
            "n_trials": 240,
            "sr": 0.05,
            "sr0": 0.06,
            "n_obs": 500,
            "min_trl": 900.0,
        },
        is_oos=(ins, ins + rng.normal(size=30), ins > 1.0),
        lambdas=rng.normal(size=n_halvings),
        pbo=0.4,
        slope=-0.2,
        psr_curve=(np.arange(2.0, 2000.0), np.linspace(0.3, 0.99, 1998)),
        tables=(("folds", "Folds", pl.DataFrame({"fold": [0, 1], "is_sharpe": [1.0, 0.5]})),),
        notes=(("folds", "a note <i>"),),
    )


def test_the_run_page_embeds_the_research_sections_after_the_headline():
    from qpipe.views import render_run_page
    from tests.unit.views._pages import inputs, make_equity, parse

    base = inputs(equity=make_equity(300, warmup=20))
    plain = render_run_page(base)
    for sid in ("research", "verdict", "is-oos", "pbo", "min-trl", "folds"):
        assert f'<section id="{sid}">' not in plain
    html = render_run_page(dataclasses.replace(base, research=research_data()))
    parse(html)
    ids = re.findall(r'<section id="([^"]+)">', html)
    plain_ids = re.findall(r'<section id="([^"]+)">', plain)
    research = ["research", "verdict", "is-oos", "pbo", "min-trl", "folds"]
    assert ids == [plain_ids[0], *research, *plain_ids[1:]]  # after the headline, nothing lost
    charts = [c["id"] for c in chart_data(html)["charts"]]
    assert len(charts) == len(set(charts)) and {"chart-is-oos", "chart-equity"} <= set(charts)
    assert "&lt;x&gt;" in html and "<x>" not in html  # facts are escaped
    assert "a note &lt;i&gt;" in html and "track record has T = 500: too short." in html


def test_the_sweep_page_embeds_the_research_sections_before_the_trials():
    from qpipe.views import render_sweep

    summary = pl.DataFrame({"trial": [0, 1, 2], "a": [1, 2, 3], "sharpe": [0.5, 1.0, 0.2]})
    plain = render_sweep(summary, metric="sharpe", params=["a"], title="s")
    absent = ResearchPage(title="t", absent=(("pbo", "PBO", "not computed: 5,000 > 2,000"),))
    html = render_sweep(summary, metric="sharpe", params=["a"], title="s", research=absent)
    ids = re.findall(r'<section id="([^"]+)">', html)
    assert ids == [*re.findall(r'<section id="([^"]+)">', plain)[:-1], "pbo", "trials"]
    assert "not computed: 5,000 &gt; 2,000" in html


def test_the_min_trl_chart_marks_the_track_record_and_min_trl():
    html = render_research(research_data())
    (chart,) = [c for c in chart_data(html)["charts"] if c["id"] == "chart-min-trl"]
    marks = {s["label"]: [i for i, v in enumerate(s["values"]) if v is not None]
             for s in chart["series"]}  # fmt: skip
    x = chart_data(html)["x"][chart["x"]]
    assert [x[i] for i in marks["track record T"]] == [500.0]
    assert [x[i] for i in marks["MinTRL"]] == [900.0]


def test_a_scatter_of_every_halving_draws_a_thinned_cloud_and_says_so():
    """12,870 CSCV halvings: 2,000 points spread over the whole in-sample range are drawn (the
    page stays small), the extremes are kept, and the slope still uses every point."""
    from qpipe.views.research import SCATTER_POINTS

    rng = np.random.default_rng(1)
    ins = rng.normal(size=12_870)
    oos = -0.3 * ins + rng.normal(size=ins.size)
    page = ResearchPage(title="t", subtitle="s", facts=[], is_oos=(ins, oos, np.ones(ins.size)))
    html = render_research(page)
    data = chart_data(html)
    chart = next(c for c in data["charts"] if c["id"] == "chart-is-oos")
    drawn = data["x"][chart["x"]]
    assert len(drawn) == SCATTER_POINTS
    assert min(drawn) == pytest.approx(ins.min(), abs=1e-5)
    assert max(drawn) == pytest.approx(ins.max(), abs=1e-5)
    assert f"Drawn: {SCATTER_POINTS:,} of the 12,870 points" in html
    slope = np.polyfit(ins, oos, 1)[0]
    assert f"OLS slope of OOS on IS (these points): {slope:.3g}." in html
    assert len(html) < 150_000
