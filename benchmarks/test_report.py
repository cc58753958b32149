"""Group ``report``: the run page of the default run (500 symbols x 10 y), in Python and a browser.

``python``: ``render_run_page`` on the default run's frames (equity, weights, trades, benchmark,
audit and provenance from its ledger records). ``browser``: headless Chromium loads the page from
disk; the time is from navigation start until every chart has drawn (two animation frames after
the load event), measured by the page's own performance timing. The same page with its scripts
removed (HTML and CSS only, no charts) is loaded in the same run as the baseline. Targets (issue
14): the page is <= 2 MB and renders in <= 0.5 s; a miss is an xfail carrying the numbers.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import polars as pl
import pytest
from _helpers import record

from qpipe import ThreadSafeConfig
from qpipe.views import ReportInputs, from_records, render_run_page
from tests.chromium import chromium_path, load_page

PAGE_LIMIT = 2_000_000
RENDER_LIMIT_MS = 500.0
LOADS = 5


@pytest.fixture(scope="module")
def default_inputs(tmp_path_factory) -> ReportInputs:
    """The default run (no report), then its frames and ledger records as the run page's inputs."""
    import qpipe
    from qpipe.backtest.metrics import equal_weight_benchmark

    out = tmp_path_factory.mktemp("report-bench")
    cfg = ThreadSafeConfig.default().replace(run={"report": False})
    result = qpipe.run(cfg, out=out / "runs", ledger=out / "audit.jsonl")
    run_dir = result.out_dir
    equity = pl.read_ipc(run_dir / "equity.arrow")
    bench = equal_weight_benchmark(result.store.open(result.refs["prices"]))
    bench = bench.join(equity.select("date"), on="date", how="semi").sort("date")
    bench = bench.with_columns((pl.col("return").fill_null(0.0) + 1).cum_prod().alias("equity"))
    records = [json.loads(x) for x in (out / "audit.jsonl").read_text().splitlines()]
    records = [r for r in records if r["run_id"] == result.run_id]
    audit, validation, provenance = from_records(result.run_id, records, out / "audit.jsonl")
    return ReportInputs(
        equity=equity,
        weights=pl.read_ipc(run_dir / "weights.arrow"),
        trades=pl.read_ipc(run_dir / "trades.arrow"),
        benchmark_equity=bench,
        metrics=result.metrics,
        run_id=result.run_id,
        audit=audit,
        validation=validation,
        provenance=provenance,
        backtest=dict(cfg.backtest),
        config_toml=cfg.to_toml(),
    )


def test_report_python(benchmark, default_inputs):
    benchmark.group = "report"
    page = benchmark.pedantic(render_run_page, args=(default_inputs,), rounds=5, warmup_rounds=1)
    record(benchmark, "report", "python", "500x10y")
    size = len(page.encode())
    benchmark.extra_info.update({"page_bytes": size, "rows": default_inputs.equity.height})
    assert size <= PAGE_LIMIT


@pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed")
def test_report_browser(benchmark, default_inputs, tmp_path):
    benchmark.group = "report"
    page = render_run_page(default_inputs)
    full, bare = tmp_path / "report.html", tmp_path / "bare.html"
    full.write_text(page, encoding="utf-8")
    bare.write_text(re.sub(r"<script\b.*?</script>\n?", "", page, flags=re.S), encoding="utf-8")
    timings: dict[str, list[float]] = {"full": [], "bare": []}
    busy: dict[str, list[float]] = {"full": [], "bare": []}  # main-thread busy ms

    def load_both() -> None:
        for name, path in (("full", full), ("bare", bare)):
            probe = "document.documentElement.dataset.charts || ''"
            loaded = load_page(path, probe)
            assert loaded.errors == [] and loaded.requests == [path.resolve().as_uri()]
            if name == "full":
                assert loaded.probe.split("/")[0] == loaded.probe.split("/")[1] != "0"
            timings[name].append(loaded.timing["settled_ms"])
            busy[name].append(loaded.cpu.get("TaskDuration", float("nan")) * 1000)

    benchmark.pedantic(load_both, rounds=LOADS, warmup_rounds=0)
    record(benchmark, "report", "browser", "500x10y")
    med = {k: statistics.median(v) for k, v in timings.items()}
    best = {k: min(v) for k, v in timings.items()}
    benchmark.extra_info.update(
        {
            "page_bytes": len(page.encode()),
            "render_ms_median": round(med["full"], 1),
            "render_ms_min": round(best["full"], 1),
            "html_only_ms_median": round(med["bare"], 1),
            "charts_ms_median": round(med["full"] - med["bare"], 1),
            "main_thread_busy_ms_median": round(statistics.median(busy["full"]), 1),
            "html_only_busy_ms_median": round(statistics.median(busy["bare"]), 1),
        }
    )
    if med["full"] > RENDER_LIMIT_MS:
        pytest.xfail(
            f"report renders in {med['full']:.0f} ms median (min {best['full']:.0f} ms) over "
            f"{LOADS} loads > {RENDER_LIMIT_MS:.0f} ms; the same page without charts "
            f"{med['bare']:.0f} ms, so the charts cost {med['full'] - med['bare']:.0f} ms"
        )


def test_page_size_budget(default_inputs):
    """Bytes may be asserted: the vendored bundle plus the data of 10 years of daily rows."""
    page = render_run_page(default_inputs)
    assets = sum(
        len((Path(__file__).parent.parent / "qpipe/views/assets" / n).read_bytes())
        for n in ("uPlot.iife.min.js", "uPlot.min.css", "qpipe-charts.js")
    )
    assert assets < 70_000
    assert len(page.encode()) <= PAGE_LIMIT
