"""The run report: :class:`ReportInputs` in, one self-contained ``report.html`` out.

The page measures the strategy from its first invested day (the warm-up before it is not the
strategy's record; the benchmark is cut to the same span) and keeps the full-span numbers of
``metrics.json`` beside them. Every section has a stable ``id`` (docs/report.md lists them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl

from qpipe.errors import DataFormatError
from qpipe.views import analytics as an
from qpipe.views import run_charts
from qpipe.views.charts import ChartSet
from qpipe.views.format import EM_DASH, esc, format_metric
from qpipe.views.html import page, section, toc
from qpipe.views.provenance import audit_html, provenance_html
from qpipe.views.research import ResearchPage, facts_html, research_sections
from qpipe.views.run_tables import (
    costs_table,
    distribution_table,
    drawdowns_table,
    holdings_table,
    metrics_table,
    monthly_table,
    trades_table,
)
from qpipe.views.trades import cost_breakdown, has_shorts, trade_stats

__all__ = ["ReportInputs", "render_report", "render_run_page"]


@dataclass(frozen=True)
class ReportInputs:
    """Everything the run page shows; frames are read, never modified.

    ``equity``: ``date``, ``equity``, ``return``, ``turnover`` (+ ``cost``, ``gross_exposure``,
    ``net_exposure`` when present). ``benchmark_equity``: ``date``, ``equity`` (+ ``return``).
    ``weights``: ``date``, ``symbol``, ``weight``. ``trades``: the fills of ``trades.arrow``.
    ``prices`` (``date``, ``symbol``, ``close``) is only read for the long/short split of a book
    with shorts. ``audit``/``validation``/``provenance`` come from the run's ledger records
    (:func:`qpipe.views.provenance.from_records`). ``backtest``: the ``[backtest]`` config
    section (cost, slippage and borrow rates, initial capital). ``span``: ``"invested"`` (the
    default) measures from the first invested day, ``"full"`` from the first price date.
    ``research``: the out-of-sample research sections (a walk-forward's stitched run: the
    verdict, IS vs OOS, PBO, MinTRL, folds), shown after the headline; None for a plain run,
    whose page is then exactly what it was without them.
    """

    equity: pl.DataFrame
    weights: pl.DataFrame
    metrics: Mapping[str, float | int | None]
    run_id: str
    benchmark_equity: pl.DataFrame | None = None
    trades: pl.DataFrame | None = None
    prices: pl.DataFrame | None = None
    audit: Mapping[str, Any] | None = None
    validation: Sequence[Mapping[str, Any]] = ()
    provenance: Mapping[str, Any] = field(default_factory=dict)
    backtest: Mapping[str, Any] = field(default_factory=dict)
    config_toml: str = ""
    title: str = "qpipe backtest"
    created: str = ""
    span: Literal["invested", "full"] = "invested"
    research: ResearchPage | None = None


def _sorted_frame(frame: pl.DataFrame, name: str, required: Sequence[str]) -> pl.DataFrame:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        msg = f"`{name}` frame lacks column(s) {', '.join(f'`{c}`' for c in missing)}"
        raise DataFormatError(msg)
    return frame.sort("date") if frame.height > 1 else frame


@dataclass(frozen=True)
class Span:
    """The measured span: the equity rows from ``start`` on, rebased at the capital before it."""

    equity: pl.DataFrame
    bench: pl.DataFrame | None  # date, return on the same dates
    capital: float
    start_row: int
    metrics: dict[str, float | int | None]


def measured_span(inputs: ReportInputs) -> Span:
    """The equity (and benchmark) from the first invested day, and its metrics."""
    from qpipe.backtest.metrics import compute_metrics

    full = _sorted_frame(inputs.equity, "equity", ("date", "equity", "return", "turnover"))
    eq_all, ret_all = an.to_np(full, "equity"), an.to_np(full, "return")
    start = an.first_invested_index(full) if inputs.span == "invested" else 0
    capital = an.base_capital(eq_all, ret_all) if start == 0 else float(eq_all[start - 1])
    equity = full.slice(start)
    bench = None
    if inputs.benchmark_equity is not None and inputs.benchmark_equity.height:
        b = _sorted_frame(inputs.benchmark_equity, "benchmark_equity", ("date", "equity"))
        if "return" not in b.columns:
            b = b.with_columns(pl.col("equity").pct_change().fill_null(0.0).alias("return"))
        bench = b.join(equity.select("date"), on="date", how="semi").select("date", "return")
    weights = inputs.weights
    first = equity.get_column("date").min() if equity.height else None
    n_reb = weights.filter(pl.col("date") >= first).get_column("date").n_unique() if first else 0
    if start == 0:
        metrics = dict(inputs.metrics)
    else:
        metrics = compute_metrics(
            equity.with_columns(pl.col("cost").fill_null(0.0))
            if "cost" in equity.columns
            else equity.with_columns(pl.lit(0.0).alias("cost")),
            initial_capital=capital,
            n_rebalances=int(n_reb),
            benchmark_returns=bench,
        )
    return Span(equity, bench, capital, start, metrics)


def render_run_page(inputs: ReportInputs) -> str:
    """Render ``report.html`` from :class:`ReportInputs` (a pure function of its inputs).

    Raises :class:`~qpipe.errors.DataFormatError` if a frame lacks a required column (a
    missing column is the data's fault, not the config's).
    """
    weights = _sorted_frame(inputs.weights, "weights", ("date", "symbol", "weight"))
    inputs = _replace_weights(inputs, weights)
    span = measured_span(inputs)
    charts = ChartSet()
    drawn = run_charts.time_charts(charts, span, inputs)
    dd = an.drawdown(an.to_np(span.equity, "equity"), span.capital)
    dates = span.equity.get_column("date")
    returns = span.equity.get_column("return")
    dist = an.distribution(dates, returns)
    years_html = run_charts.yearly(charts, span)
    research = _research(charts, inputs.research)
    sections = [
        ("headline", "Headline", _tiles(span)),
        *((sid, title, content) for sid, title, content, _ in research),
        ("equity", "Equity", drawn["equity"]),
        ("equity-log", "Equity (log scale)", drawn["equity-log"]),
        ("drawdown", "Drawdown", drawn["drawdown"]),
        ("worst-drawdowns", "Worst 5 drawdowns", drawdowns_table(an.worst_drawdowns(dates, dd))),
        ("yearly-returns", "Yearly returns vs the benchmark", years_html),
        ("monthly-returns", "Monthly returns",
         monthly_table(an.period_returns(dates, returns, "month"))),
        ("return-distribution", "Distribution of daily returns",
         run_charts.histogram(charts, an.to_np(span.equity, "return")) + distribution_table(dist)),
        ("rolling-sharpe", "Rolling Sharpe ratio", drawn["rolling-sharpe"]),
        ("rolling-volatility", "Rolling volatility", drawn["rolling-volatility"]),
        ("rolling-beta", "Rolling beta", drawn["rolling-beta"]),
        ("turnover", "Turnover", drawn["turnover"]),
        ("exposure", "Exposure", drawn["exposure"]),
        *_trading_sections(charts, inputs, span),
        ("metrics", "Metrics", metrics_table(span.metrics, inputs.metrics, _span_label(span))),
        ("holdings", "Latest holdings", holdings_table(weights)),
        ("audit", "Audit", audit_html(inputs.audit, inputs.validation)),
        ("provenance", "Provenance", provenance_html(inputs.provenance)),
        ("configuration", "Configuration", f"<pre>{esc(inputs.config_toml)}</pre>"),
    ]  # fmt: skip
    notes = {**run_charts.NOTES, **{sid: note for sid, _, _, note in research}}
    body = toc((sid, title) for sid, title, _ in sections) + "".join(
        section(sid, title, content, notes.get(sid, "")) for sid, title, content in sections
    )
    return page(f"{inputs.title} · {inputs.run_id}", _header(inputs, span), body, charts.script())


def _research(charts: ChartSet, data: ResearchPage | None) -> list[tuple[str, str, str, str]]:
    """The research sections, led by one with the study's facts; none for a plain run."""
    if data is None:
        return []
    return [("research", data.title, facts_html(data), ""), *research_sections(data, charts)]


def _replace_weights(inputs: ReportInputs, weights: pl.DataFrame) -> ReportInputs:
    from dataclasses import replace

    return replace(inputs, weights=weights)


def _trading_sections(
    charts: ChartSet, inputs: ReportInputs, span: Span
) -> list[tuple[str, str, str]]:
    capital = float(inputs.backtest.get("initial_capital") or span.capital or 1.0)
    out = []
    if inputs.trades is not None:
        trades = inputs.trades.filter(pl.col("date") >= span.equity.get_column("date").min())
        out.append(("trades", "Trade statistics", trades_table(trade_stats(trades), capital)))
        costs = cost_breakdown(span.equity, trades, inputs.backtest, capital)
        out.append(("costs", "Costs", costs_table(costs)))
    if inputs.trades is not None and has_shorts(inputs.weights, span.equity):
        content = run_charts.long_short(charts, inputs, span, capital)
        out.append(("long-short", "Long vs short contribution", content))
    return out


def _span_label(span: Span) -> str:
    if span.start_row == 0 or not span.equity.height:
        return "full span"
    first = span.equity.get_column("date").min()
    return f"from {first!s} (first invested day)"


def _header(inputs: ReportInputs, span: Span) -> str:
    eq = span.equity
    if eq.height:
        first, last = eq.get_column("date").min(), eq.get_column("date").max()
        period = f"{esc(first)} → {esc(last)} ({eq.height:,} days)"
        if span.start_row:
            period += f"; {span.start_row:,} warm-up days before the first investment not measured"
    else:
        period = "no data"
    return (
        f"<h1>{esc(inputs.title)}</h1>"
        f'<div class="meta">run <code>{esc(inputs.run_id)}</code> · created '
        f"{esc(inputs.created or EM_DASH)} · {period}</div>"
    )


def _tile(label: str, name: str, value: float | int | None) -> str:
    text = format_metric(name, value)
    cls = ""
    if text != EM_DASH and name in {"total_return", "cagr", "sharpe", "max_drawdown"}:
        cls = " pos" if float(value) > 0 else (" neg" if float(value) < 0 else "")  # type: ignore[arg-type]
    return (
        f'<div class="tile"><div class="k">{esc(label)}</div>'
        f'<div class="v{cls}">{esc(text)}</div></div>'
    )


def _tiles(span: Span) -> str:
    m = span.metrics
    bench_total = None
    if span.bench is not None and span.bench.height:
        r = an.to_np(span.bench, "return")
        bench_total = float(np.prod(1.0 + np.nan_to_num(r)) - 1.0)
    tiles = [
        _tile("Total return", "total_return", m.get("total_return")),
        _tile("CAGR", "cagr", m.get("cagr")),
        _tile("Sharpe", "sharpe", m.get("sharpe")),
        _tile("Max drawdown", "max_drawdown", m.get("max_drawdown")),
        _tile("Volatility", "ann_vol", m.get("ann_vol")),
        _tile("Benchmark return", "total_return", bench_total),
    ]
    return f'<div class="tiles">{"".join(tiles)}</div>'


def render_report(
    *,
    equity: pl.DataFrame,
    benchmark_equity: pl.DataFrame | None,
    weights: pl.DataFrame,
    metrics: Mapping[str, float | int | None],
    config_toml: str,
    run_id: str,
    title: str = "qpipe backtest",
    created: str = "",
    **extra: Any,
) -> str:
    """The 0.1 keyword interface: builds :class:`ReportInputs` and calls :func:`render_run_page`.

    ``extra`` takes the other :class:`ReportInputs` fields (``trades``, ``audit``, ...).
    """
    return render_run_page(
        ReportInputs(
            equity=equity,
            benchmark_equity=benchmark_equity,
            weights=weights,
            metrics=metrics,
            config_toml=config_toml,
            run_id=run_id,
            title=title,
            created=created,
            **extra,
        )
    )
