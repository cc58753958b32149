"""Tests for qpipe.views.run_page: the run report from ReportInputs (structure, numbers, safety)."""

from __future__ import annotations

import datetime as dt
import json
import math
import re

import numpy as np
import polars as pl
import pytest

from qpipe.errors import DataFormatError
from qpipe.views import METRIC_LABELS, format_metric, from_records, render_report, render_run_page
from tests.unit.views._pages import (
    CONFIG,
    METRICS,
    RUN_ID,
    inputs,
    make_equity,
    make_prices,
    make_trades,
    make_weights,
    parse,
)

SECTION_IDS = (
    "headline", "equity", "equity-log", "drawdown", "worst-drawdowns", "yearly-returns",
    "monthly-returns", "return-distribution", "rolling-sharpe", "rolling-volatility",
    "rolling-beta", "turnover", "exposure", "trades", "costs", "long-short", "metrics",
    "holdings", "audit", "provenance", "configuration",
)  # fmt: skip
CHART_IDS = (
    "chart-equity", "chart-equity-log", "chart-drawdown", "chart-yearly-returns",
    "chart-return-distribution", "chart-rolling-sharpe", "chart-rolling-volatility",
    "chart-rolling-beta", "chart-turnover", "chart-exposure",
)  # fmt: skip


def chart_data(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="qpipe-chart-data">(.*?)</script>', page)
    assert m is not None
    return json.loads(m.group(1).replace("<\\/", "</"))


@pytest.fixture(scope="module")
def page() -> str:
    return render_run_page(inputs())


def test_page_is_well_formed_and_every_section_has_its_stable_id(page: str) -> None:
    checker = parse(page)
    ids = [v for _, k, v in checker.attrs if k == "id"]
    assert len(ids) == len(set(ids))
    assert [i for i in ids if i in SECTION_IDS] == list(SECTION_IDS)
    for sid in SECTION_IDS:  # the table of contents links to each section
        assert f'<a href="#{sid}">' in page


def test_page_loads_nothing_from_outside(page: str) -> None:
    checker = parse(page)
    assert not {"link", "img", "iframe", "object", "embed"} & set(checker.tags)
    assert [v for t, k, v in checker.attrs if k == "src"] == []
    hrefs = [v for _, k, v in checker.attrs if k == "href"]
    assert all(v is not None and v.startswith("#") for v in hrefs), hrefs
    assert "url(" not in page.split("<script", 1)[0]  # no CSS import or remote font


def test_every_chart_has_a_div_and_a_spec_with_finite_json(page: str) -> None:
    data = chart_data(page)
    specs = {c["id"]: c for c in data["charts"]}
    assert set(CHART_IDS) <= set(specs)
    assert "chart-long-short" in specs  # the book has a short leg
    for cid, spec in specs.items():
        assert f'<div class="chart" id="{cid}"' in page
        xs = data["x"][spec["x"]]
        assert all(len(s["values"]) == len(xs) for s in spec["series"]), cid
    assert xs == sorted(xs)


def test_header_shows_run_id_created_and_the_measured_span(page: str) -> None:
    assert RUN_ID in page
    assert "2026-11-26T07:35:12Z" in page
    assert "2020-01-01 → " in page


def test_metrics_table_has_both_spans_and_every_metric(page: str) -> None:
    for name, value in METRICS.items():
        assert f"<code>{name}</code>" in page
        assert METRIC_LABELS[name] in page
        assert f'<td class="num full">{format_metric(name, value)}</td>' in page


def test_config_and_input_strings_are_escaped() -> None:
    page = render_run_page(
        inputs(
            metrics={"<img src=x>": 1.0},
            run_id="<b>run</b>",
            title="<i>t</i>",
            weights=pl.DataFrame(
                {"date": [dt.date(2020, 1, 1)], "symbol": ["<s>"], "weight": [1.0]}
            ),
        )
    )
    parse(page)
    for raw in ("<img src=x>", "<b>run</b>", "<i>t</i>", "<s>", "<script>alert(1)"):
        assert raw not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    assert "&lt;b&gt;run&lt;/b&gt;" in page


def test_page_is_deterministic_and_sorts_unsorted_input() -> None:
    equity = make_equity(200)
    shuffled = equity.sample(fraction=1.0, shuffle=True, seed=3)
    w = make_weights(equity)
    trades, prices = make_trades(equity), make_prices(equity)
    a = render_run_page(inputs(equity=equity, weights=w, trades=trades, prices=prices))
    b = render_run_page(
        inputs(equity=shuffled, weights=w.reverse(), trades=trades.reverse(), prices=prices)
    )
    assert a == b


def test_numbers_are_measured_from_the_first_invested_day() -> None:
    warm = 60
    equity = make_equity(400, warmup=warm)
    page = render_run_page(inputs(equity=equity, metrics={"total_return": 9.0}))
    e = equity.get_column("equity").to_numpy()
    total = e[-1] / e[warm - 1] - 1.0  # the capital on the eve of the first investment
    assert f'<td class="num">{format_metric("total_return", total)}</td>' in page
    assert f'<td class="num full">{format_metric("total_return", 9.0)}</td>' in page
    first = equity.get_column("date")[warm]
    assert f"from {first} (first invested day)" in page
    assert f"{warm} warm-up days before the first investment not measured" in page
    days = chart_data(page)["x"]["days"]
    assert days[0] == (first - dt.date(1970, 1, 1)).days
    full = render_run_page(inputs(equity=equity, metrics={"total_return": 9.0}, span="full"))
    assert (
        chart_data(full)["x"]["days"][0]
        == (equity.get_column("date")[0] - dt.date(1970, 1, 1)).days
    )


def test_monthly_heatmap_compounds_daily_returns() -> None:
    dates = [dt.date(2021, 1, 4), dt.date(2021, 1, 5), dt.date(2021, 2, 1)]
    ret = [0.1, 0.1, -0.5]  # January +21.0%, February -50.0%, year 1.21 × 0.5 − 1 = -39.5%
    equity = pl.DataFrame(
        {"date": dates, "equity": np.cumprod(1 + np.array(ret)), "return": ret,
         "turnover": [1.0, 0.0, 0.0], "cost": [0.0, 0.0, 0.0]}
    )  # fmt: skip
    page = render_run_page(inputs(equity=equity, benchmark_equity=None))
    table = re.search(r'<table class="heatmap">(.*?)</table>', page, re.S)
    assert table is not None
    row = re.search(r"<tr><th>2021</th>(.*?)</tr>", table.group(1), re.S)
    assert row is not None
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", row.group(1))
    assert cells == ["21.0", "-50.0", *[""] * 10, "-39.5"]


def test_latest_holdings_drop_zero_weights_and_order_by_size(page: str) -> None:
    holdings = re.search(r'<table class="holdings">(.*?)</table>', page, re.S)
    assert holdings is not None
    assert re.findall(r"<tr><td>([^<]+)</td>", holdings.group(1)) == ["AAA", "BBB"]
    assert "gross 85.0%, net 35.0%" in page


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"equity": make_equity(1)}, id="single-row"),
        pytest.param({"equity": make_equity(0)}, id="no-rows"),
        pytest.param({"metrics": {}}, id="no-metrics"),
        pytest.param({"benchmark_equity": None}, id="no-benchmark"),
        pytest.param({"weights": make_weights(make_equity()).clear()}, id="empty-weights"),
        pytest.param({"equity": make_equity(5, exposure=False)}, id="no-exposure"),
        pytest.param({"equity": make_equity(300, warmup=300)}, id="never-invested"),
        pytest.param(
            {"metrics": {"sharpe": float("nan"), "cagr": float("inf"), "n_rebalances": 0}},
            id="non-finite-metrics",
        ),
    ],
)
def test_edge_cases_render(overrides: dict[str, object]) -> None:
    page = render_run_page(inputs(**overrides))
    parse(page)
    assert RUN_ID in page
    if "qpipe-chart-data" in page:
        chart_data(page)  # strict JSON: no NaN or Infinity


def test_short_and_empty_inputs_show_placeholders() -> None:
    empty = render_run_page(inputs(equity=make_equity(0)))
    assert '<div class="chart empty" id="chart-equity">no data</div>' in empty
    short = render_run_page(inputs(equity=make_equity(40)))
    assert "fewer than 126 days of returns" in short
    assert '<div class="chart" id="chart-equity"' in short


def test_missing_equity_column_is_a_config_error() -> None:
    with pytest.raises(DataFormatError, match="`equity` frame lacks column"):
        render_run_page(inputs(equity=make_equity(10).drop("turnover")))


def test_render_report_keeps_the_keyword_interface() -> None:
    equity = make_equity(100)
    page = render_report(
        equity=equity, benchmark_equity=None, weights=make_weights(equity), metrics=METRICS,
        config_toml=CONFIG, run_id=RUN_ID,
    )  # fmt: skip
    parse(page)
    assert 'id="worst-drawdowns"' in page


def test_audit_and_provenance_come_from_the_ledger_records() -> None:
    records = [
        {"seq": 7, "kind": "run_started", "data": {"config_digest": "cfgdigest", "code_version":
         "0.1.0", "git_commit": "abc123", "git_dirty": True, "engine": "local"}},
        {"seq": 8, "kind": "dataset", "data": {"name": "prices", "digest": "datadigest",
                                               "source": "builtin", "point_in_time": False}},
        {"seq": 9, "kind": "validation", "data": {"tier": "tier1", "target": "prices",
         "passed": True, "skipped": False, "failures": [], "source_digest": "src"}},
        {"seq": 11, "kind": "validation", "data": {"tier": "tier2", "target": "weights",
         "passed": False, "skipped": False, "failures": [{"check": "max_weight", "count": 2,
                                                          "example": "2020-03-31 AAA"}]}},
        {"seq": 10, "kind": "allocation_audit", "data": {"passed": True, "checks": ["finite"],
         "n_violations": 0, "violations": [], "pit_cuts": ["2020-03-31"], "seconds": 0.1,
         "pit_seconds": 0.05, "warnings": ["2 rebalances hold only cash"]}},
    ]  # fmt: skip
    audit, validation, provenance = from_records(RUN_ID, records, "runs/audit.jsonl")
    page = render_run_page(inputs(audit=audit, validation=validation, provenance=provenance))
    audit_html = re.search(r'<section id="audit">(.*?)</section>', page, re.S).group(1)
    assert "2020-03-31" in audit_html and "2 rebalances hold only cash" in audit_html
    assert "finite" in audit_html and ">passed<" in audit_html
    assert "tier2" in audit_html and "2 max_weight (2020-03-31 AAA)" in audit_html
    prov = re.search(r'<section id="provenance">(.*?)</section>', page, re.S).group(1)
    assert "survivorship bias is possible" in prov
    for text in ("cfgdigest", "datadigest", "0.1.0", "abc123", "uncommitted", "runs/audit.jsonl",
                 "7–11", f"python -m qpipe replay {RUN_ID} --ledger runs/audit.jsonl"):  # fmt: skip
        assert text in prov, text


def test_ten_years_of_daily_rows_stay_well_under_two_megabytes() -> None:
    equity = make_equity(2_600)
    page = render_run_page(inputs(equity=equity))
    assert len(page.encode()) < 2_000_000 // 3
    assert math.isfinite(len(page))


def test_a_benchmark_with_missing_days_is_still_drawn() -> None:
    equity = make_equity(200)
    bench = equity.select("date", (pl.col("equity") * 0.9).alias("equity")).gather_every(2)
    spec = {
        c["id"]: c for c in chart_data(render_run_page(inputs(benchmark_equity=bench)))["charts"]
    }
    labels = [s["label"] for s in spec["chart-equity"]["series"]]
    assert labels == ["strategy", "benchmark"]
