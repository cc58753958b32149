"""Tests for qpipe.report: the HTML run report, the sweep page and the terminal summary."""

from __future__ import annotations

import datetime as dt
import math
import re
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from qpipe.errors import ConfigError
from qpipe.report import (
    _EPOCH,
    METRIC_LABELS,
    SUMMARY_METRICS,
    _date_ticks,
    _nice_ticks,
    _path,
    _thin,
    _tick_text,
    format_metric,
    render_report,
    render_sweep,
    summary_table,
)

RUN_ID = "20261126T073512Z-3fa9c1"
N_CHARTS = 5  # equity, drawdown, rolling Sharpe, turnover, exposure
CONFIG = '[data]\nsource = "builtin"\nnote = "<script>alert(1)</script> & more"\n'

VOID = {
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
    "track", "wbr",
}  # fmt: skip


class _Checker(HTMLParser):
    """Collects tags and attributes and checks that every element is closed in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend((tag, k, v) for k, v in attrs)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend((tag, k, v) for k, v in attrs)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> _Checker:
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.errors == []
    assert checker.stack == []
    return checker


def _dates(n: int) -> pl.Series:
    days = pl.date_range(dt.date(2020, 1, 1), dt.date(2021, 12, 31), "1d", eager=True)
    return days.filter(days.dt.weekday() <= 5).head(n)


def make_equity(n: int = 300, *, exposure: bool = True, seed: int = 1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    ret = rng.normal(0.0004, 0.01, n)
    turnover = np.where(np.arange(n) % 21 == 0, 0.5, 0.0)
    frame = pl.DataFrame(
        {
            "date": _dates(n),
            "equity": np.cumprod(1 + ret),
            "return": ret,
            "turnover": turnover,
            "cost": turnover * 1e-3,
        }
    )
    if exposure:
        frame = frame.with_columns(
            pl.lit(0.98).alias("gross_exposure"), pl.lit(0.5).alias("net_exposure")
        )
    return frame


def make_weights(equity: pl.DataFrame) -> pl.DataFrame:
    dates = equity.get_column("date").gather_every(21).to_list()
    rows = [(d, s, w) for d in dates for s, w in (("AAA", 0.6), ("BBB", -0.25), ("CCC", 0.0))]
    return pl.DataFrame(
        rows, schema={"date": pl.Date, "symbol": pl.String, "weight": pl.Float64}, orient="row"
    )


METRICS: dict[str, float | int | None] = {
    "total_return": 0.2531,
    "cagr": 0.0712,
    "ann_vol": 0.158,
    "sharpe": 1.234,
    "sortino": 1.5,
    "max_drawdown": -0.2,
    "calmar": 0.356,
    "turnover_ann": 6.0,
    "total_cost": 0.0123,
    "n_rebalances": 15,
    "hit_rate": 0.52,
    "exposure": 0.98,
    "beta": 0.9,
    "alpha_ann": 0.01,
    "tracking_error": 0.05,
    "information_ratio": None,
}


def report(**overrides: object) -> str:
    equity = make_equity()
    kwargs: dict[str, object] = {
        "equity": equity,
        "benchmark_equity": equity.select("date", (pl.col("equity") * 0.9).alias("equity")),
        "weights": make_weights(equity),
        "metrics": METRICS,
        "config_toml": CONFIG,
        "run_id": RUN_ID,
        "created": "2026-11-26T07:35:12Z",
    }
    kwargs.update(overrides)
    return render_report(**kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def page() -> str:
    return report()


# ------------------------------------------------------------------------------------ the page


def test_report_is_well_formed_html(page: str) -> None:
    checker = parse(page)
    assert checker.tags[0] == "html"
    assert {"head", "body", "title", "style", "table", "pre", "svg"} <= set(checker.tags)


def test_report_references_no_external_resource(page: str) -> None:
    checker = parse(page)
    links = [(t, k, v) for t, k, v in checker.attrs if k in {"src", "href", "xlink:href"}]
    assert all(v is not None and v.startswith("#") for _, _, v in links), links
    assert not {"script", "link", "img", "iframe", "object", "use", "image"} & set(checker.tags)
    # No URL at all: no DTD, no xmlns declaration (HTML5 does not need them), no url(...).
    assert "http://" not in page
    assert "https://" not in page
    assert "url(http" not in page


def test_report_shows_run_id_created_and_period(page: str) -> None:
    assert RUN_ID in page
    assert "2026-11-26T07:35:12Z" in page
    assert "2020-01-01" in page


def test_report_has_one_inline_svg_per_chart(page: str) -> None:
    svgs = re.findall(r"<svg\b[^>]*>", page)
    assert len(svgs) == N_CHARTS
    assert all("viewBox" in s for s in svgs)
    assert page.count("</svg>") == N_CHARTS


def test_svg_ids_are_unique_across_charts(page: str) -> None:
    # Several inline SVGs share one document: a duplicated clip-path id would clip the wrong chart.
    ids = [v for _, k, v in parse(page).attrs if k == "id"]
    assert len(ids) == len(set(ids))
    refs = set(re.findall(r'(?:href="|url\()#([^")]+)', page))
    assert refs <= set(ids)  # every internal reference resolves


def test_charts_are_accessible_and_hold_only_finite_numbers(page: str) -> None:
    svgs = re.findall(r"<svg\b([^>]*)>(.*?)</svg>", page, re.S)
    assert len(svgs) == N_CHARTS
    for attrs, body in svgs:
        assert 'role="img"' in attrs
        label = re.search(r'aria-label="([^"]+)"', attrs)
        assert label is not None
        assert body.startswith(f"<title>{label.group(1)}</title>")
        assert not re.search(r"nan|inf", body, re.I), body[:200]
    assert "Equity chart: strategy, benchmark (equal weight); 2020-01-01 to" in page
    assert "full period 1.23" in page  # the dashed full-period Sharpe is in the legend


def test_report_lists_every_metric_name_and_formatted_value(page: str) -> None:
    for name, value in METRICS.items():
        assert f"<code>{name}</code>" in page
        assert METRIC_LABELS[name] in page
        assert f'<td class="num">{format_metric(name, value)}</td>' in page
    assert '<td class="num">—</td>' in page  # information_ratio is null


def test_config_is_escaped_in_pre(page: str) -> None:
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    pre = re.search(r"<pre>(.*?)</pre>", page, re.S)
    assert pre is not None
    assert "source = &quot;builtin&quot;" in pre.group(1)


def test_strings_from_inputs_are_escaped() -> None:
    page = report(
        metrics={"<img src=x>": 1.0},
        run_id="<b>run</b>",
        title="<i>t</i>",
        weights=pl.DataFrame(
            {"date": [dt.date(2020, 1, 1)], "symbol": ["<s>"], "weight": [1.0]},
        ),
    )
    parse(page)
    for raw in ("<img src=x>", "<b>run</b>", "<i>t</i>", "<s>"):
        assert raw not in page
        assert raw.replace("<", "&lt;").replace(">", "&gt;") in page


def test_report_is_deterministic_and_sorts_unsorted_input() -> None:
    equity = make_equity(80)
    shuffled = equity.sample(fraction=1.0, shuffle=True, seed=3)
    weights = make_weights(equity)
    a = report(equity=equity, weights=weights, benchmark_equity=None)
    b = report(equity=shuffled, weights=weights.reverse(), benchmark_equity=None)
    assert a == b


def test_rendering_does_not_import_matplotlib() -> None:
    # The charts are hand-written SVG: importing matplotlib alone cost ~0.6 s per run.
    code = (
        "import sys; sys.path.insert(0, 'tests/unit'); import test_report as t; "
        "t.report(); t.render_sweep(t.pl.DataFrame({'a': [1], 'sharpe': [1.0]}), "
        "metric='sharpe', params=['a'], title='t'); "
        "assert 'matplotlib' not in sys.modules, 'matplotlib was imported'"
    )
    root = __file__.rsplit("/tests/", 1)[0]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_monthly_heatmap_compounds_daily_returns() -> None:
    dates = [dt.date(2021, 1, 4), dt.date(2021, 1, 5), dt.date(2021, 2, 1)]
    ret = [0.1, 0.1, -0.5]  # January +21.0%, February -50.0%, year 1.21 × 0.5 − 1 = -39.5%
    equity = pl.DataFrame(
        {
            "date": dates,
            "equity": np.cumprod(1 + np.array(ret)),
            "return": ret,
            "turnover": [1.0, 0.0, 0.0],
            "cost": [0.0, 0.0, 0.0],
        }
    )
    page = report(equity=equity, benchmark_equity=None)
    table = re.search(r'<table class="heatmap">(.*?)</table>', page, re.S)
    assert table is not None
    row = re.search(r"<tr><th>2021</th>(.*?)</tr>", table.group(1), re.S)
    assert row is not None
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", row.group(1))
    assert cells == ["21.0", "-50.0", *[""] * 10, "-39.5"]


def test_exposure_falls_back_to_target_weights() -> None:
    equity = make_equity(100, exposure=False)
    page = report(equity=equity, weights=make_weights(equity))
    assert "Target gross (Σ|w|) and net (Σw) weights" in page
    assert "no exposure data" not in page
    assert page.count("<svg") == N_CHARTS


def test_latest_holdings_drop_zero_weights_and_order_by_size(page: str) -> None:
    holdings = re.search(r'<table class="holdings">(.*?)</table>', page, re.S)
    assert holdings is not None
    symbols = re.findall(r"<tr><td>([^<]+)</td>", holdings.group(1))
    assert symbols == ["AAA", "BBB"]  # CCC has weight 0 and is not held
    assert "gross 85.0%, net 35.0%" in page


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"equity": make_equity(1)}, id="single-row"),
        pytest.param({"equity": make_equity(0)}, id="no-rows"),
        pytest.param({"metrics": {}}, id="no-metrics"),
        pytest.param({"benchmark_equity": None}, id="no-benchmark"),
        pytest.param({"weights": make_weights(make_equity()).clear()}, id="empty-weights"),
        pytest.param(
            {
                "equity": make_equity(5, exposure=False),
                "weights": make_weights(make_equity()).clear(),
            },
            id="no-exposure-no-weights",
        ),
        pytest.param(
            {"metrics": {"sharpe": float("nan"), "cagr": float("inf"), "n_rebalances": 0}},
            id="non-finite-metrics",
        ),
    ],
)
def test_edge_cases_render(overrides: dict[str, object]) -> None:
    page = report(**overrides)
    parse(page)
    assert RUN_ID in page
    assert page.count("<svg") == N_CHARTS
    assert "http://" not in page
    charts = "".join(re.findall(r"<svg\b.*?</svg>", page, re.S))
    assert not re.search(r"nan|inf", charts, re.I)


def test_empty_and_short_inputs_show_placeholders() -> None:
    empty = report(equity=make_equity(0))
    assert empty.count(">no data</text>") == 2  # equity and drawdown
    assert ">fewer than 126 days of returns</text>" in empty
    assert ">no trades</text>" in empty
    short = report(equity=make_equity(40))
    assert ">fewer than 126 days of returns</text>" in short
    assert ">no data</text>" not in short


def test_all_null_metrics_render_as_dashes() -> None:
    page = report(metrics=dict.fromkeys(METRICS))
    parse(page)
    assert page.count("<svg") == N_CHARTS
    for name in METRICS:
        assert f'<td><code>{name}</code></td><td class="num">—</td>' in page


def test_missing_equity_column_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="`equity` frame lacks column"):
        report(equity=make_equity(10).drop("turnover"))


# ---------------------------------------------------------------------------- SVG renderer


def _day(y: int, m: int, d: int) -> float:
    return float((dt.date(y, m, d) - _EPOCH).days)


def test_date_ticks_use_years_months_or_days_by_range() -> None:
    years = _date_ticks(_day(2015, 1, 1), _day(2024, 12, 31), 12)
    assert [t for _, t in years] == [str(y) for y in range(2015, 2025)]
    assert years[0][0] == _day(2015, 1, 1)
    months = [t for _, t in _date_ticks(_day(2020, 1, 1), _day(2021, 2, 24), 12)]
    assert months == ["2020", "Mar", "May", "Jul", "Sep", "Nov", "2021"]
    no_january = [t for _, t in _date_ticks(_day(2020, 3, 1), _day(2020, 9, 30), 12)]
    assert no_january[0] == "Mar 2020"
    weeks = [t for _, t in _date_ticks(_day(2020, 1, 1), _day(2020, 2, 5), 12)]
    assert weeks == ["Jan 6", "Jan 13", "Jan 20", "Jan 27", "Feb 3"]  # Mondays


@pytest.mark.parametrize(
    ("lo", "hi", "most", "ticks", "pct", "text"),
    [
        (0.9, 5.1, 10, [1.0 + 0.5 * i for i in range(9)], False, "1.0"),
        (-0.32, 0.005, 6, [-0.3, -0.2, -0.1, 0.0], True, "−30%"),
        (-0.05, 1.05, 6, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0], True, "0%"),
        (-2.9, 4.3, 6, [-2.0, 0.0, 2.0, 4.0], False, "−2"),
        (0.0, 0.012, 5, [0.0, 0.0025, 0.005, 0.0075, 0.01], True, "0.25%"),
    ],
)
def test_nice_ticks_are_round_numbers_inside_the_range(
    lo: float, hi: float, most: int, ticks: list[float], pct: bool, text: str
) -> None:
    got = _nice_ticks(lo, hi, most)
    assert got == pytest.approx(ticks)
    assert lo <= got[0] and got[-1] <= hi
    labels = _tick_text(got, pct)
    assert text in labels
    assert len(set(labels)) == len(labels)  # enough decimals to tell ticks apart


def test_long_series_are_thinned_per_pixel_column_keeping_extremes() -> None:
    rng = np.random.default_rng(0)
    px = np.linspace(0.0, 100.0, 50_000, endpoint=False)  # 500 points per pixel column
    py = np.cumsum(rng.normal(size=px.size))
    tx, ty = _thin(px, py)
    assert tx.size <= 4 * 100
    assert np.all(np.diff(tx) > 0)  # order kept
    for col in range(100):
        inside = (px >= col) & (px < col + 1)
        kept = (tx >= col) & (tx < col + 1)
        assert ty[kept].max() == py[inside].max()
        assert ty[kept].min() == py[inside].min()
    short = np.arange(10.0)
    assert _thin(short, short)[0] is short  # a series that fits is drawn as it is


def test_path_breaks_at_gaps_and_marks_lone_points() -> None:
    x = np.array([0.0, 0.5, 2.0, 3.0, 4.0])
    d = _path(x, np.array([1.04, 0.81, np.nan, 5.0, np.nan]))
    # One decimal, relative steps after an absolute start, a new start after the gap, a dot.
    assert d == "M0 1l.5 -.2M3 5h0"


def test_sweep_with_text_parameter_draws_bars() -> None:
    summary = pl.DataFrame({"strategy.kind": ["mom", "<mr>", "ivol"], "cagr": [0.07, -0.02, 0.05]})
    page = render_sweep(summary, metric="cagr", params=["strategy.kind"], title="kinds")
    parse(page)
    svg = re.search(r"<svg\b.*?</svg>", page, re.S)
    assert svg is not None
    assert svg.group(0).count("Z") == 3  # one closed rectangle per value
    assert "&lt;mr&gt;</text>" in svg.group(0)
    assert "−2%" in svg.group(0)


# ------------------------------------------------------------------------------ format_metric


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


# ------------------------------------------------------------------------------ summary_table


def _render(table: object) -> str:
    console = Console(record=True, width=120, color_system=None)
    console.print(table)
    return console.export_text()


def test_summary_table_lists_the_runner_metrics() -> None:
    text = _render(summary_table(METRICS, run_id=RUN_ID, out_dir="runs/x"))
    assert RUN_ID in text
    assert "runs/x" in text
    for name in SUMMARY_METRICS:
        assert METRIC_LABELS[name] in text
        assert format_metric(name, METRICS[name]) in text


def test_summary_table_handles_missing_and_null_metrics() -> None:
    text = _render(summary_table({"sharpe": None}, run_id=RUN_ID, out_dir="runs/x"))
    assert text.count("—") == len(SUMMARY_METRICS)


# ------------------------------------------------------------------------------ sweep page


def test_sweep_one_param_sorts_best_first_with_nulls_last() -> None:
    summary = pl.DataFrame(
        {
            "backtest.cost_bps": [0.0, 5.0, 10.0, 20.0],
            "sharpe": [0.9, None, 1.1, 0.2],
            "cagr": [0.05, 0.04, 0.06, 0.01],
        }
    )
    page = render_sweep(summary, metric="sharpe", params=["backtest.cost_bps"], title="cost sweep")
    parse(page)
    assert page.count("<svg") == 1
    assert "http://" not in page
    sweep = re.search(r'<table class="sweep">(.*?)</table>', page, re.S)
    assert sweep is not None
    key_cells = re.findall(r'<td class="num key">([^<]*)</td>', sweep.group(1))
    assert key_cells == ["1.10", "0.90", "0.20", "—"]


def test_sweep_lower_is_better_metric_sorts_ascending() -> None:
    summary = pl.DataFrame({"strategy.lookback": [63, 126, 252], "ann_vol": [0.2, 0.1, 0.3]})
    page = render_sweep(summary, metric="ann_vol", params=["strategy.lookback"], title="t")
    assert re.findall(r'<td class="num key">([^<]*)</td>', page) == ["10.00%", "20.00%", "30.00%"]


def test_sweep_two_params_draws_a_heatmap_with_the_best_cell_marked() -> None:
    grid = [(lb, tn) for lb in (63, 126, 252) for tn in (20, 50)]
    summary = pl.DataFrame(
        {
            "strategy.lookback": [g[0] for g in grid],
            "allocation.top_n": [g[1] for g in grid],
            "sharpe": [0.1 * i for i in range(len(grid))],
            "run_id": [f"r{i}" for i in range(len(grid))],
        }
    )
    page = render_sweep(
        summary, metric="sharpe", params=["strategy.lookback", "allocation.top_n"], title="grid"
    )
    parse(page)
    assert "http://" not in page
    heat = re.search(r'<table class="heatmap">(.*?)</table>', page, re.S)
    assert heat is not None
    rows = re.findall(r"<tr><th>(\d+)</th>(.*?)</tr>", heat.group(1), re.S)
    assert [r[0] for r in rows] == ["63", "126", "252"]
    assert all(len(re.findall(r"<td", r[1])) == 2 for r in rows)
    assert re.findall(r'<td class="num best"[^>]*>([^<]*)</td>', heat.group(1)) == ["0.50"]
    assert "r5" in page


def test_sweep_with_no_rows_and_many_params_renders() -> None:
    empty = pl.DataFrame(
        schema={"a": pl.Int64, "b": pl.Int64, "c": pl.Float64, "sharpe": pl.Float64}
    )
    for params in (["a"], ["a", "b"], ["a", "b", "c"]):
        parse(render_sweep(empty, metric="sharpe", params=params, title="empty"))


def test_sweep_unknown_metric_is_a_config_error() -> None:
    summary = pl.DataFrame({"a": [1], "sharpe": [1.0]})
    with pytest.raises(ConfigError, match="`cagr`"):
        render_sweep(summary, metric="cagr", params=["a"], title="t")
