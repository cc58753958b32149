"""The tables of the run page: metrics, monthly heatmap, drawdowns, distribution, trades, costs.

Each function returns escaped HTML for one section's content; the run page puts it in a section.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import polars as pl

from qpipe.views.analytics import Distribution, Drawdown
from qpipe.views.format import (
    EM_DASH,
    METRIC_GROUPS,
    MONTHS,
    esc,
    format_metric,
    label,
    pct,
    robust_scale,
    signed_colour,
)
from qpipe.views.html import data_table, kv_table
from qpipe.views.trades import Costs, TradeStats


def fmt_pct(value: float | None, decimals: int = 2) -> str:
    """``0.1234`` -> ``12.34%``; an em dash when missing."""
    if value is None or not math.isfinite(value):
        return EM_DASH
    return f"{value * 100:,.{decimals}f}%"


def fmt_num(value: float | None, decimals: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return EM_DASH
    return f"{value:,.{decimals}f}"


def metrics_table(
    invested: Mapping[str, float | int | None],
    full: Mapping[str, float | int | None],
    invested_label: str,
) -> str:
    """Every metric twice: from the first invested day (the default) and over the full span."""
    known = {k for _, keys in METRIC_GROUPS for k in keys}
    groups = [(g, [k for k in keys if k in full or k in invested]) for g, keys in METRIC_GROUPS]
    others = sorted(k for k in full if k not in known)
    if others:
        groups.append(("Other", others))
    parts = []
    for group, keys in groups:
        if not keys:
            continue
        rows = "".join(
            f"<tr><td>{esc(label(k))}</td><td><code>{esc(k)}</code></td>"
            f'<td class="num">{esc(format_metric(k, invested.get(k)))}</td>'
            f'<td class="num full">{esc(format_metric(k, full.get(k)))}</td></tr>'
            for k in keys
        )
        parts.append(f'<tr class="group"><th colspan="4">{esc(group)}</th></tr>{rows}')
    if not parts:
        return '<p class="muted">no metrics</p>'
    head = (
        f'<thead><tr><th></th><th></th><th class="num">{esc(invested_label)}</th>'
        '<th class="num">full span (metrics.json)</th></tr></thead>'
    )
    return f'<table class="metrics">{head}<tbody>{"".join(parts)}</tbody></table>'


def monthly_table(monthly: pl.DataFrame) -> str:
    """Years x months heatmap of compounded monthly returns, plus the calendar year."""
    if monthly.height == 0:
        return '<p class="muted">no returns</p>'
    cells = {(y, m): r for y, m, r in monthly.iter_rows()}
    years = sorted({y for y, _ in cells})
    yearly: dict[int, float] = {}
    for y in years:
        growth = 1.0
        for m in range(1, 13):
            if (y, m) in cells and math.isfinite(cells[(y, m)]):
                growth *= 1.0 + cells[(y, m)]
        yearly[y] = growth - 1.0
    month_scale = robust_scale(list(cells.values()))
    year_scale = robust_scale(list(yearly.values()))
    head = "".join(f"<th>{m}</th>" for m in MONTHS)
    rows = []
    for y in years:
        tds = [
            f'<td style="{signed_colour(cells.get((y, m)), month_scale)}">'
            f"{pct(cells.get((y, m)))}</td>"
            for m in range(1, 13)
        ]
        v = yearly[y]
        tds.append(f'<td class="year" style="{signed_colour(v, year_scale)}">{pct(v)}</td>')
        rows.append(f"<tr><th>{y}</th>{''.join(tds)}</tr>")
    return (
        '<div class="scroll"><table class="heatmap"><thead><tr><th></th>'
        f"{head}<th>Year</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        '<p class="muted">Monthly returns in %, compounded from daily returns; the last column is '
        "the calendar year. Colour scale: 95th percentile of |return|.</p>"
    )


def yearly_table(
    years: Sequence[int], strat: Sequence[float], bench: Sequence[float] | None
) -> str:
    rows = []
    for i, y in enumerate(years):
        b = bench[i] if bench is not None else None
        diff = strat[i] - b if b is not None and math.isfinite(b) else None
        rows.append([str(y), fmt_pct(strat[i]), fmt_pct(b), fmt_pct(diff)])
    return data_table(
        ["year", "strategy", "benchmark", "difference"], rows, [False, True, True, True]
    )


def drawdowns_table(periods: Sequence[Drawdown]) -> str:
    if not periods:
        return '<p class="muted">no drawdown: equity never fell below its running maximum</p>'
    rows = [
        [
            esc(p.start),
            esc(p.trough),
            esc(p.recovery) if p.recovery else "not recovered",
            fmt_pct(p.depth),
            f"{p.length:,}",
            f"{p.to_recover:,}" if p.to_recover is not None else EM_DASH,
        ]
        for p in periods
    ]
    head = ["start (peak)", "trough", "recovery", "depth", "length (days)", "to recover (days)"]
    return data_table(head, rows, [False, False, False, True, True, True])


def distribution_table(d: Distribution) -> str:
    def day(x: tuple[object, float] | None) -> str:
        return EM_DASH if x is None else f"{fmt_pct(x[1])} ({esc(x[0])})"

    rows = [
        ("days", f"{d.n:,}"),
        ("mean / std (daily)", f"{fmt_pct(d.mean, 3)} / {fmt_pct(d.std, 3)}"),
        ("skew", fmt_num(d.skew)),
        ("excess kurtosis", fmt_num(d.kurtosis)),
        ("95% VaR (1 day, historical)", fmt_pct(d.var95)),
        ("95% CVaR (mean beyond VaR)", fmt_pct(d.cvar95)),
        ("best day", day(d.best_day)),
        ("worst day", day(d.worst_day)),
        ("best month", day(d.best_month)),
        ("worst month", day(d.worst_month)),
    ]
    return kv_table(rows)


def trades_table(t: TradeStats, capital: float) -> str:
    rows = [
        ("fills", f"{t.fills:,} in {t.symbols:,} symbols"),
        ("traded notional", f"{fmt_num(t.traded_notional)} "
         f"({fmt_num(t.traded_notional / capital)}× the capital)"),
        ("closed round trips", f"{t.round_trips:,} ({t.open_positions:,} positions still open)"),
        ("average holding period", EM_DASH if t.avg_holding_days is None
         else f"{t.avg_holding_days:,.1f} calendar days"),
        ("win rate (per round trip)", fmt_pct(t.win_rate, 1)),
        ("profit factor", fmt_num(t.profit_factor)),
        ("average win / loss", f"{fmt_num(t.avg_win, 4)} / {fmt_num(t.avg_loss, 4)}"),
    ]  # fmt: skip
    return kv_table(rows)


def costs_table(c: Costs) -> str:
    def row(name: str, value: float) -> list[str]:
        bps = value / c.traded_notional * 1e4 if c.traded_notional > 0 else float("nan")
        return [name, fmt_num(value, 6), fmt_pct(value / c.capital, 3), fmt_num(bps, 2)]

    rows = [
        row("fees", c.fees),
        row("slippage", c.slippage),
        row("borrow (estimated)", c.borrow),
        row("total", c.total),
    ]
    head = ["cost", "amount (capital units)", "% of initial capital", "bps of traded notional"]
    return data_table(head, rows, [False, True, True, True])


def holdings_table(weights: pl.DataFrame, top: int = 15) -> str:
    if weights.height == 0:
        return '<p class="muted">no rebalances (empty weights)</p>'
    last_date = weights.get_column("date").max()
    last = (
        weights.filter(pl.col("date") == last_date)
        .filter(pl.col("weight") != 0)
        .with_columns(pl.col("weight").abs().alias("_abs"))
        .sort(["_abs", "symbol"], descending=[True, False])
    )
    n = last.height
    gross = float(last.get_column("_abs").sum()) if n else 0.0
    net = float(last.get_column("weight").sum()) if n else 0.0
    rows = [[esc(s), pct(w, 2)] for s, w in last.head(top).select("symbol", "weight").iter_rows()]
    shown = f"top {min(top, n)} of {n}" if n > top else f"{n}"
    return (
        f'<p class="muted">Target weights on {esc(last_date)}: {shown} names, '
        f"gross {pct(gross)}%, net {pct(net)}%.</p>"
        + data_table(["symbol", "weight %"], rows, [False, True], cls="holdings")
    )
