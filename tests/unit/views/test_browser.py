"""The pages in a real browser: headless Chromium (Debian's package) loads each page from disk.

Every chart must draw (a canvas with non-blank pixels), the console must stay free of errors,
the page must request nothing but itself, hovering must show values in the legend and dragging
must zoom the time axis of every time chart together. ``make test`` installs Chromium when it
is missing; without it these tests skip locally and fail in CI.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from qpipe.views import render_run_page, render_sweep
from tests.chromium import chromium_path, load_page
from tests.unit.views._pages import inputs, make_equity

if chromium_path() is None:
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed (make test installs it)", pytrace=False)
    pytest.skip("chromium is not installed (apt-get install -y chromium)", allow_module_level=True)

PROBE = """
(async () => {
  const frame = () => new Promise(r => requestAnimationFrame(() => r()));
  const charts = [...document.querySelectorAll('.chart:not(.empty)')].map(el => {
    const c = el.querySelector('canvas');
    let inked = 0;
    if (c && c.width && c.height) {
      const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      for (let i = 3; i < px.length; i += 4) if (px[i] > 0) inked++;
    }
    return {id: el.id, canvas: !!c, width: c ? c.width : 0, inked};
  });
  const out = {charts, drawn: document.documentElement.dataset.charts,
               errors: document.documentElement.dataset.chartErrors};
  const eq = (window.qpipeCharts || []).find(p => p.spec.id === 'chart-equity');
  if (eq) {
    const over = eq.el.querySelector('.u-over'), r = over.getBoundingClientRect();
    const at = (type, f, target) => (target || over).dispatchEvent(new MouseEvent(type,
      {clientX: r.left + r.width * f, clientY: r.top + r.height / 2, movementX: 5,
       bubbles: true, view: window}));
    at('mousemove', 0.5); await frame();
    out.legend = [...eq.el.querySelectorAll('.u-legend .u-value')].map(v => v.textContent);
    const before = eq.plot.scales.x.max - eq.plot.scales.x.min;
    at('mousedown', 0.3); await frame(); at('mousemove', 0.45); await frame();
    at('mousemove', 0.6); await frame(); at('mouseup', 0.6, document); await frame();
    out.zoom = (eq.plot.scales.x.max - eq.plot.scales.x.min) / before;
    const dd = window.qpipeCharts.find(p => p.spec.id === 'chart-drawdown');
    out.followed = [dd.plot.scales.x.min, dd.plot.scales.x.max].join() ===
                   [eq.plot.scales.x.min, eq.plot.scales.x.max].join();
  }
  return out;
})()
"""


def check_page(path: Path) -> dict:
    load = load_page(path, PROBE)
    assert load.errors == []
    assert load.requests == [path.resolve().as_uri()]  # nothing but the page itself
    probe = load.probe
    n = len(probe["charts"])
    assert n > 0 and probe["drawn"] == f"{n}/{n}" and probe["errors"] == ""
    for chart in probe["charts"]:
        assert chart["canvas"] and chart["width"] > 0, chart
        assert chart["inked"] > 500, chart  # axes, grid and data drawn
    return probe


def test_run_page_draws_every_chart_without_console_errors(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text(render_run_page(inputs(equity=make_equity(600, warmup=40))), encoding="utf-8")
    probe = check_page(path)
    assert {c["id"] for c in probe["charts"]} >= {"chart-equity", "chart-long-short"}
    assert probe["legend"][0][:2] in {"20"} and any("." in v for v in probe["legend"][1:])
    assert 0.2 < probe["zoom"] < 0.4  # dragged over 30% of the plot width
    assert probe["followed"]  # the drawdown chart zoomed with the equity chart


def test_sweep_page_draws_and_sorts(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    summary = pl.DataFrame(
        {"trial": range(12), "a": [1, 2, 3] * 4, "b": [10] * 6 + [20] * 6,
         "sharpe": rng.normal(1, 0.3, 12), "run_id": [f"r{i}" for i in range(12)]}
    )  # fmt: skip
    path = tmp_path / "sweep.html"
    path.write_text(render_sweep(summary, metric="sharpe", params=["a", "b"], title="s",
                                 sweep_id="SW"), encoding="utf-8")  # fmt: skip
    check_page(path)
    sort = """(() => { const th = [...document.querySelectorAll('table.sortable th')]
        .find(t => t.textContent === 'trial'); th.click();
        return [...document.querySelectorAll('table.sortable tbody tr')]
        .map(r => r.cells[th.cellIndex].textContent); })()"""
    order = load_page(path, sort).probe
    assert order == [str(i) for i in range(12)]


def test_research_sections_draw_on_the_run_page_and_the_sweep_page(tmp_path: Path) -> None:
    """The walk-forward's report.html and sweep.html with the research sections: every chart
    (the run's and the research's, one script) draws, no console error, nothing requested."""
    from dataclasses import replace

    from tests.unit.views.test_research import research_data

    run = tmp_path / "report.html"
    page = render_run_page(replace(inputs(equity=make_equity(400, warmup=20)),
                                   research=research_data()))  # fmt: skip
    run.write_text(page, encoding="utf-8")
    ids = {c["id"] for c in check_page(run)["charts"]}
    assert {"chart-equity", "chart-is-oos", "chart-lambda", "chart-min-trl"} <= ids
    rng = np.random.default_rng(4)
    summary = pl.DataFrame({"trial": range(6), "a": [1, 2, 3] * 2, "b": [1] * 3 + [2] * 3,
                            "sharpe": rng.normal(1, 0.3, 6)})  # fmt: skip
    sweep = tmp_path / "sweep.html"
    sweep.write_text(render_sweep(summary, metric="sharpe", params=["a", "b"], title="s",
                                  research=research_data(12_870)), encoding="utf-8")  # fmt: skip
    ids = {c["id"] for c in check_page(sweep)["charts"]}
    assert ids == {"chart-ranking-distribution", "chart-is-oos", "chart-lambda", "chart-min-trl"}
