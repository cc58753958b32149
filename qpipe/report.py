"""The run report (one self-contained HTML page), the sweep page and the terminal summary.

Everything a researcher opens after a run is rendered here, from frames already in memory:

* :func:`render_report` builds ``report.html``: headline figures, equity against the benchmark,
  drawdown, rolling Sharpe, turnover and exposure charts (inline SVG drawn by matplotlib), a
  monthly-returns heatmap and the latest holdings (HTML tables coloured inline), the metrics
  table, the resolved config and the run id. The page loads nothing from the network.
* :func:`render_sweep` builds the page of a parameter sweep: the sorted table and, for two
  parameters, a heatmap of the chosen metric.
* :func:`summary_table` is the compact table the runner prints with rich.
* :func:`format_metric` is the one place where a metric value becomes text; all three use it.

Matplotlib is imported lazily (only when a page is rendered) and driven through
:class:`matplotlib.figure.Figure` directly, never through ``pyplot``: no backend is selected and no
global figure state is touched, so rendering is headless and leaves a notebook's backend alone.
"""

from __future__ import annotations

import html
import io
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from qpipe.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from rich.table import Table

__all__ = [
    "METRIC_LABELS",
    "SUMMARY_METRICS",
    "format_metric",
    "render_report",
    "render_sweep",
    "summary_table",
]

TRADING_DAYS = 252
ROLLING_SHARPE_WINDOW = 126
EM_DASH = "—"

# Display names, in the order the metrics table shows them (DESIGN.md, "Metrics").
METRIC_LABELS: dict[str, str] = {
    "total_return": "Total return",
    "cagr": "CAGR",
    "hit_rate": "Hit rate",
    "ann_vol": "Volatility (ann.)",
    "max_drawdown": "Max drawdown",
    "sharpe": "Sharpe ratio",
    "sortino": "Sortino ratio",
    "calmar": "Calmar ratio",
    "turnover_ann": "Turnover (ann.)",
    "total_cost": "Total cost",
    "n_rebalances": "Rebalances",
    "exposure": "Exposure (mean gross)",
    "beta": "Beta",
    "alpha_ann": "Alpha (ann.)",
    "tracking_error": "Tracking error",
    "information_ratio": "Information ratio",
}

_METRIC_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Return", ("total_return", "cagr", "hit_rate")),
    ("Risk", ("ann_vol", "max_drawdown", "sharpe", "sortino", "calmar")),
    ("Trading", ("turnover_ann", "total_cost", "n_rebalances", "exposure")),
    ("Benchmark", ("beta", "alpha_ann", "tracking_error", "information_ratio")),
)

# The runner's terminal summary, in this order.
SUMMARY_METRICS: tuple[str, ...] = (
    "total_return",
    "cagr",
    "sharpe",
    "sortino",
    "max_drawdown",
    "ann_vol",
    "turnover_ann",
    "total_cost",
    "beta",
    "information_ratio",
    "n_rebalances",
)

_PERCENT = frozenset(
    {
        "total_return",
        "cagr",
        "ann_vol",
        "max_drawdown",
        "alpha_ann",
        "tracking_error",
        "hit_rate",
        "exposure",
        "turnover_ann",
    }
)
_RATIO = frozenset({"sharpe", "sortino", "calmar", "beta", "information_ratio"})
_COUNT = frozenset({"n_rebalances"})
# Metrics where smaller is better: a sweep sorts them ascending.
_LOWER_IS_BETTER = frozenset({"ann_vol", "tracking_error", "total_cost", "turnover_ann"})

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# Palette (colour-blind safe blue/orange pair; red/green only for signed heatmap cells).
_C_STRATEGY = "#1f4e79"
_C_BENCH = "#e08214"
_C_NEG = (192, 57, 43)
_C_POS = (26, 140, 80)

_RC: dict[Any, Any] = {
    "svg.fonttype": "none",  # text stays text: smaller SVG, selectable labels
    "font.size": 9,
    "font.sans-serif": ["DejaVu Sans", "Helvetica", "Arial"],
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#9a9a9a",
    "axes.linewidth": 0.8,
    "axes.grid": True,
    "axes.axisbelow": True,
    "axes.titlesize": 10,
    "axes.titlelocation": "left",
    "grid.color": "#e9e9e9",
    "grid.linewidth": 0.6,
    "xtick.color": "#555555",
    "ytick.color": "#555555",
    "xtick.major.size": 3,
    "ytick.major.size": 0,
    "legend.frameon": False,
    "legend.fontsize": 8.5,
    "lines.linewidth": 1.3,
    "path.simplify": True,
    # Drop vertices that move the line by under half a point: 2,520-point series shrink a lot
    # and the change is invisible at this size.
    "path.simplify_threshold": 0.5,
}

_FIG_W = 10.0
_FIG_H = 3.0


# --------------------------------------------------------------------------------------------
# formatting


def format_metric(name: str, value: float | int | None) -> str:
    """Format one metric value for display; the single place metric text is made.

    Percentages for returns, volatility, drawdown, alpha, tracking error, hit rate, exposure and
    turnover; two decimals for ratios (Sharpe, Sortino, Calmar, beta, IR); thousands separators for
    counts; and an em dash for ``None``, NaN or infinite values (a zero denominator).

    Parameters
    ----------
    name
        The metric key as in ``metrics.json`` (e.g. ``"sharpe"``). Unknown keys get a generic
        numeric format.
    value
        The value, or ``None``.

    Returns
    -------
    str
        The display text.

    Examples
    --------
    >>> format_metric("cagr", 0.0712), format_metric("sharpe", 1.234), format_metric("beta", None)
    ('7.12%', '1.23', '—')
    """
    if value is None or isinstance(value, bool):
        return EM_DASH if value is None else str(value)
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value) if isinstance(value, str) else EM_DASH
    if not math.isfinite(x):
        return EM_DASH
    if name in _PERCENT:
        return f"{x * 100:,.2f}%"
    if name in _RATIO:
        return f"{x:,.2f}"
    if name in _COUNT or (isinstance(value, int | np.integer) and not isinstance(value, float)):
        return f"{round(x):,d}"
    return _format_number(x)


def _format_number(x: float) -> str:
    """Readable number for money-like or unknown quantities (costs in units of capital)."""
    ax = abs(x)
    if ax == 0:
        return "0"
    if ax >= 1_000:
        return f"{x:,.0f}"
    if ax >= 1:
        return f"{x:,.2f}"
    if ax >= 1e-4:
        return f"{x:.4f}"
    return f"{x:.2e}"


def _label(name: str) -> str:
    return METRIC_LABELS.get(name, name.replace("_", " ").capitalize())


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


# --------------------------------------------------------------------------------------------
# terminal summary


def summary_table(metrics: Mapping[str, float | int | None], *, run_id: str, out_dir: str) -> Table:
    """Build the compact rich table the runner prints at the end of a run.

    Parameters
    ----------
    metrics
        The flat metrics mapping (``metrics.json``). Missing keys show as an em dash.
    run_id
        The run id, shown in the title.
    out_dir
        The run folder, shown in the caption so the user knows where ``report.html`` is.

    Returns
    -------
    rich.table.Table
        Two metric/value column pairs; print it with ``rich.console.Console().print(table)``.
    """
    from rich import box
    from rich.table import Table

    table = Table(
        title=f"qpipe run {run_id}",
        caption=f"report: {out_dir}",
        box=box.SIMPLE_HEAD,
        title_justify="left",
        caption_justify="left",
        pad_edge=False,
    )
    for _ in range(2):
        table.add_column("metric", style="dim", no_wrap=True)
        table.add_column("value", justify="right", no_wrap=True)
    cells: list[tuple[str, str]] = []
    for key in SUMMARY_METRICS:
        value = metrics.get(key)
        text = format_metric(key, value)
        if key in {"total_return", "cagr", "sharpe", "alpha_ann"} and text != EM_DASH:
            text = f"[green]{text}[/]" if float(value) > 0 else f"[red]{text}[/]"  # type: ignore[arg-type]
        cells.append((_label(key), text))
    half = (len(cells) + 1) // 2
    for i in range(half):
        left = cells[i]
        right = cells[i + half] if i + half < len(cells) else ("", "")
        table.add_row(*left, *right)
    return table


# --------------------------------------------------------------------------------------------
# series derived from the equity frame


def _to_np(frame: pl.DataFrame, column: str) -> np.ndarray:
    return frame.get_column(column).cast(pl.Float64).fill_null(float("nan")).to_numpy().copy()


def _base_capital(equity: np.ndarray, returns: np.ndarray) -> float:
    """Capital before the first day: E_0 / (1 + r_0), as the metrics contract defines r_0."""
    if equity.size == 0:
        return 1.0
    r0 = returns[0] if returns.size else 0.0
    if math.isfinite(r0) and r0 > -1.0 and math.isfinite(equity[0]):
        base = float(equity[0] / (1.0 + r0))
        if base > 0:
            return base
    return float(equity[0]) if equity[0] > 0 else 1.0


def _drawdown(equity: np.ndarray, capital: float) -> np.ndarray:
    """E / running max(E) - 1 with the running maximum starting at the capital (contract)."""
    if equity.size == 0:
        return equity
    peak = np.maximum.accumulate(np.concatenate(([capital], equity)))[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        return equity / peak - 1.0


def _rolling_sharpe(returns: pl.Series, window: int) -> np.ndarray:
    mean = returns.rolling_mean(window, min_samples=window)
    std = returns.rolling_std(window, min_samples=window, ddof=1)
    out = (mean / std * math.sqrt(TRADING_DAYS)).fill_null(float("nan")).to_numpy().copy()
    out[~np.isfinite(out)] = np.nan
    return out


def _monthly_returns(dates: pl.Series, returns: pl.Series) -> pl.DataFrame:
    """Compounded return per (year, month) from daily returns, sorted."""
    frame = pl.DataFrame({"date": dates, "r": returns.cast(pl.Float64)}).sort("date")
    return (
        frame.with_columns(
            pl.col("date").dt.year().alias("year"), pl.col("date").dt.month().alias("month")
        )
        .group_by("year", "month")
        .agg(((pl.col("r").fill_null(0.0) + 1.0).product() - 1.0).alias("ret"))
        .sort("year", "month")
    )


# --------------------------------------------------------------------------------------------
# matplotlib → inline SVG


def _new_figure(
    height: float = _FIG_H, *, left: float = 0.62, bottom: float = 0.36
) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(_FIG_W, height))
    # Fixed margins in inches instead of constrained layout: the layout engine measured ~0.14 s
    # per chart (it lays out every tick label twice), more than drawing the data.
    fig.subplots_adjust(
        left=left / _FIG_W, right=1 - 0.12 / _FIG_W, bottom=bottom / height, top=1 - 0.3 / height
    )
    ax = fig.add_subplot()
    return fig, ax


def _date_axis(ax: Axes, dates: np.ndarray) -> None:
    import matplotlib.dates as mdates

    if dates.size > 1:  # the same x range on every chart, so they line up on the page
        ax.set_xlim(dates[0], dates[-1])

    locator = mdates.AutoDateLocator(minticks=4, maxticks=12)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _percent_axis(ax: Axes, decimals: int | None = None) -> None:
    from matplotlib.ticker import PercentFormatter

    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=decimals))


def _legend(ax: Axes) -> None:
    # Above the plot area, in the top margin, so it never hides a line.
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=4, borderaxespad=0.2)


def _no_data(ax: Axes, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#888888")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


_SVG_START = re.compile(r"^.*?(?=<svg\b)", re.S)
_SVG_METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.S)
_SVG_XMLNS = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')
_SVG_SIZE = re.compile(r'\s(width|height)="[\d.]+pt"')
_SVG_ID = re.compile(r'\sid="([^"]+)"')
_SVG_REF = re.compile(r'#([^"\s)]+)')


def _svg(fig: Figure, name: str) -> str:
    """Render a figure to an SVG fragment ready to inline in HTML.

    The XML prolog, DOCTYPE (an external DTD URL), metadata and namespace declarations are
    removed: HTML5 does not need them and the page must reference nothing outside itself. Ids are
    salted with the chart name so several inline SVGs never share an id.
    """
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": f"qpipe-{name}"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = _SVG_START.sub("", text, count=1)
    text = _SVG_METADATA.sub("", text, count=1)
    text = _SVG_XMLNS.sub("", text)
    text = _SVG_SIZE.sub("", text)  # the viewBox stays; CSS scales the chart to the page width
    # Matplotlib names every group (`figure_1`, `axes_1`, ...): the same ids in every chart would
    # repeat in the page. Keep only ids that something references (salted clip paths, markers).
    used = set(_SVG_REF.findall(text))
    text = _SVG_ID.sub(lambda m: m.group(0) if m.group(1) in used else "", text)
    return text.replace("<svg ", f'<svg role="img" aria-label="{_esc(name)}" ', 1).strip()


def _chart_equity(
    dates: np.ndarray,
    growth: np.ndarray,
    bench: tuple[np.ndarray, np.ndarray] | None,
) -> str:
    fig, ax = _new_figure(3.4)
    if dates.size == 0:
        _no_data(ax)
    else:
        ax.plot(dates, growth, color=_C_STRATEGY, label="strategy", zorder=3)
        if bench is not None and bench[0].size:
            ax.plot(bench[0], bench[1], color=_C_BENCH, lw=1.1, label="benchmark (equal weight)")
        ax.axhline(1.0, color="#9a9a9a", lw=0.7, zorder=1)
        _legend(ax)
        _date_axis(ax, dates)
    return _svg(fig, "equity")


def _chart_drawdown(
    dates: np.ndarray, drawdown: np.ndarray, bench_dd: tuple[np.ndarray, np.ndarray] | None
) -> str:
    fig, ax = _new_figure(2.4)
    if dates.size == 0:
        _no_data(ax)
    else:
        ax.fill_between(dates, drawdown, 0.0, color="#c0392b", alpha=0.28, lw=0, label="strategy")
        ax.plot(dates, drawdown, color="#a93226", lw=0.9)
        if bench_dd is not None and bench_dd[0].size:
            ax.plot(bench_dd[0], bench_dd[1], color=_C_BENCH, lw=0.8, alpha=0.8, label="benchmark")
            _legend(ax)
        both = drawdown if bench_dd is None else np.concatenate((drawdown, bench_dd[1]))
        low = float(np.nanmin(both)) if np.isfinite(both).any() else 0.0
        ax.set_ylim(min(low * 1.08, -0.01), 0.005)
        _percent_axis(ax, 0)
        _date_axis(ax, dates)
    return _svg(fig, "drawdown")


def _chart_rolling_sharpe(dates: np.ndarray, sharpe: np.ndarray, full: float | None) -> str:
    fig, ax = _new_figure(2.4)
    if not np.isfinite(sharpe).any():
        _no_data(ax, f"fewer than {ROLLING_SHARPE_WINDOW} days of returns")
    else:
        ax.plot(dates, sharpe, color=_C_STRATEGY, lw=1.1, label=f"{ROLLING_SHARPE_WINDOW}-day")
        ax.axhline(0.0, color="#9a9a9a", lw=0.7)
        if full is not None and math.isfinite(full):
            ax.axhline(full, color=_C_BENCH, lw=1.0, ls="--", label=f"full period {full:.2f}")
        _legend(ax)
        _date_axis(ax, dates)
    return _svg(fig, "rolling-sharpe")


def _chart_turnover(dates: np.ndarray, turnover: np.ndarray) -> str:
    fig, ax = _new_figure(2.4)
    traded = np.isfinite(turnover) & (turnover > 0)
    if not traded.any():
        _no_data(ax, "no trades")
    else:
        # One stem per trading day: a line per day would be 2,520 mostly-zero bars.
        ax.vlines(dates[traded], 0.0, turnover[traded], color=_C_STRATEGY, lw=1.2)
        ax.set_ylim(0.0, float(turnover[traded].max()) * 1.08)
        _percent_axis(ax, 0)
        _date_axis(ax, dates)
    return _svg(fig, "turnover")


def _chart_exposure(
    dates: np.ndarray,
    gross: tuple[np.ndarray, np.ndarray] | None,
    net: tuple[np.ndarray, np.ndarray] | None,
    *,
    step: bool,
) -> str:
    fig, ax = _new_figure(2.4)
    if gross is None or gross[0].size == 0:
        _no_data(ax, "no exposure data")
    else:
        kw: dict[str, Any] = {"where": "post"} if step else {}
        draw = ax.step if step else ax.plot
        draw(gross[0], gross[1], color=_C_STRATEGY, lw=1.1, label="gross", **kw)
        if net is not None:
            draw(net[0], net[1], color=_C_BENCH, lw=1.1, label="net", **kw)
        ax.axhline(0.0, color="#9a9a9a", lw=0.7)
        _legend(ax)
        _percent_axis(ax, 0)
        _date_axis(ax, dates)
    return _svg(fig, "exposure")


# --------------------------------------------------------------------------------------------
# coloured HTML tables


def _signed_colour(value: float | None, scale: float) -> str:
    """Background for a signed value: white at 0 towards red (negative) or green (positive)."""
    if value is None or not math.isfinite(value) or scale <= 0:
        return ""
    t = min(abs(value) / scale, 1.0) * 0.85
    rgb = _C_NEG if value < 0 else _C_POS
    r, g, b = (round(255 + (c - 255) * t) for c in rgb)
    fg = "#ffffff" if t > 0.55 else "#1d1d1d"
    return f"background:#{r:02x}{g:02x}{b:02x};color:{fg}"


def _robust_scale(values: Sequence[float]) -> float:
    """Colour scale: the 95th percentile of |value|, so one outlier does not wash out the rest."""
    finite = np.abs(np.asarray([v for v in values if v is not None and math.isfinite(v)]))
    if finite.size == 0:
        return 0.0
    return float(np.quantile(finite, 0.95)) or float(finite.max())


def _pct(value: float | None, decimals: int = 1) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return f"{value * 100:.{decimals}f}"


def _monthly_table(monthly: pl.DataFrame) -> str:
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
    month_scale = _robust_scale(list(cells.values()))
    year_scale = _robust_scale(list(yearly.values()))
    head = "".join(f"<th>{m}</th>" for m in _MONTHS)
    rows = []
    for y in years:
        tds = []
        for m in range(1, 13):
            v = cells.get((y, m))
            tds.append(f'<td style="{_signed_colour(v, month_scale)}">{_pct(v)}</td>')
        v = yearly[y]
        tds.append(f'<td class="year" style="{_signed_colour(v, year_scale)}">{_pct(v)}</td>')
        rows.append(f"<tr><th>{y}</th>{''.join(tds)}</tr>")
    return (
        '<table class="heatmap"><thead><tr><th></th>'
        f"{head}<th>Year</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        '<p class="muted">Monthly returns in %, compounded from daily returns; the last column is '
        "the calendar year. Colour scale: 95th percentile of |return|.</p>"
    )


def _metrics_table(metrics: Mapping[str, float | int | None]) -> str:
    known = {k for _, keys in _METRIC_GROUPS for k in keys}
    groups = [(g, [k for k in keys if k in metrics]) for g, keys in _METRIC_GROUPS]
    others = sorted(k for k in metrics if k not in known)
    if others:
        groups.append(("Other", others))
    parts = []
    for group, keys in groups:
        if not keys:
            continue
        rows = "".join(
            f"<tr><td>{_esc(_label(k))}</td><td><code>{_esc(k)}</code></td>"
            f'<td class="num">{_esc(format_metric(k, metrics[k]))}</td></tr>'
            for k in keys
        )
        parts.append(f'<tr class="group"><th colspan="3">{_esc(group)}</th></tr>{rows}')
    if not parts:
        return '<p class="muted">no metrics</p>'
    return f'<table class="metrics"><tbody>{"".join(parts)}</tbody></table>'


def _holdings_table(weights: pl.DataFrame, top: int = 15) -> str:
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
    rows = "".join(
        f'<tr><td>{_esc(s)}</td><td class="num">{_pct(w, 2)}</td></tr>'
        for s, w in last.head(top).select("symbol", "weight").iter_rows()
    )
    shown = f"top {min(top, n)} of {n}" if n > top else f"{n}"
    return (
        f'<p class="muted">Target weights on {_esc(last_date)}: {shown} names, '
        f"gross {_pct(gross)}%, net {_pct(net)}%.</p>"
        f'<table class="holdings"><thead><tr><th>symbol</th><th class="num">weight %</th></tr>'
        f"</thead><tbody>{rows}</tbody></table>"
    )


# --------------------------------------------------------------------------------------------
# page


_CSS = """
:root{--fg:#1d1d1d;--muted:#6b6b6b;--line:#e3e3e3;--accent:#1f4e79;--bg:#f6f7f9}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
 font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1120px;margin:0 auto;padding:24px 20px 48px}
header h1{font-size:22px;margin:0 0 4px}
header .meta{color:var(--muted);font-size:13px}
header code,td code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:14px 18px;
 margin:16px 0}
section h2{font-size:15px;margin:0 0 8px;color:var(--accent)}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:10px;margin:16px 0}
.tile{background:#fff;border:1px solid var(--line);border-radius:8px;padding:10px 14px}
.tile .k{color:var(--muted);font-size:12px}.tile .v{font-size:20px;font-weight:600}
.pos{color:#1a7f4b}.neg{color:#b03a2e}
figure{margin:0}figure svg{width:100%;height:auto;display:block}
.muted{color:var(--muted);font-size:12px;margin:6px 0}
.cols{display:grid;grid-template-columns:minmax(0,3fr) minmax(0,2fr);gap:16px}
@media (max-width:860px){.cols{grid-template-columns:1fr}}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
td,th{padding:3px 8px;text-align:left}
.num{text-align:right}
table.metrics{width:100%}
table.metrics td{border-bottom:1px solid var(--line)}
table.metrics tr.group th{padding-top:10px;color:var(--muted);font-weight:600;font-size:12px;
 text-transform:uppercase;letter-spacing:.04em}
table.holdings{width:100%}table.holdings td{border-bottom:1px solid var(--line)}
.scroll{overflow-x:auto}
table.heatmap{font-size:12px}
table.heatmap th{color:var(--muted);font-weight:600;text-align:center}
table.heatmap td{text-align:right;min-width:48px;border:1px solid #fff}
table.heatmap td.year{font-weight:600;border-left:3px solid #fff}
table.heatmap td.best{outline:2px solid var(--fg);outline-offset:-2px;font-weight:700}
table.sweep{width:100%;font-size:13px}
table.sweep th{border-bottom:2px solid var(--line)}
table.sweep td{border-bottom:1px solid var(--line)}
table.sweep td.key,table.sweep th.key{background:#eef3f8;font-weight:600}
pre{background:#fafafa;border:1px solid var(--line);border-radius:6px;padding:10px;
 overflow-x:auto;font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
footer{color:var(--muted);font-size:12px;text-align:center}
"""


def _page(title: str, header: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        f"<header>{header}</header>\n{body}\n"
        "<footer>generated by qpipe · self-contained page, no external resources</footer>\n"
        "</main>\n</body>\n</html>\n"
    )


def _section(title: str, content: str, note: str = "") -> str:
    note_html = f'<p class="muted">{note}</p>' if note else ""
    return f"<section><h2>{_esc(title)}</h2>{content}{note_html}</section>\n"


def _tile(label: str, name: str, value: float | int | None) -> str:
    text = format_metric(name, value)
    cls = ""
    if text != EM_DASH and name in {"total_return", "cagr", "sharpe", "max_drawdown"}:
        cls = " pos" if float(value) > 0 else (" neg" if float(value) < 0 else "")  # type: ignore[arg-type]
    return (
        f'<div class="tile"><div class="k">{_esc(label)}</div>'
        f'<div class="v{cls}">{_esc(text)}</div></div>'
    )


def _sorted_frame(frame: pl.DataFrame, name: str, required: Sequence[str]) -> pl.DataFrame:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        msg = f"`{name}` frame lacks column(s) {', '.join(f'`{c}`' for c in missing)}"
        raise ConfigError(msg)
    return frame.sort("date") if frame.height > 1 else frame


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
) -> str:
    """Render the self-contained HTML report of one backtest run.

    Parameters
    ----------
    equity
        One row per price date: ``date``, ``equity``, ``return``, ``turnover``, ``cost`` and,
        when present, ``gross_exposure`` and ``net_exposure`` (fractions of equity).
    benchmark_equity
        ``date``, ``equity`` of the benchmark (the equal-weight universe by default), or ``None``.
    weights
        Target weights, long format ``date``, ``symbol``, ``weight`` (rebalance dates only).
    metrics
        The flat metrics mapping of ``metrics.json``; ``None`` values show as an em dash.
    config_toml
        The resolved config as TOML text; shown escaped in a ``<pre>``.
    run_id
        The run id, shown in the header.
    title
        Page title.
    created
        When the run was made (e.g. ISO-8601 UTC), shown in the header; not generated here so
        the page is a pure function of its inputs.

    Returns
    -------
    str
        A complete HTML document with inline CSS and inline SVG charts; it references no
        external URL. Every string taken from the inputs is HTML-escaped.

    Raises
    ------
    ConfigError
        If a frame lacks a required column.
    """
    import matplotlib

    equity = _sorted_frame(equity, "equity", ("date", "equity", "return", "turnover"))
    weights = _sorted_frame(weights, "weights", ("date", "symbol", "weight"))
    if benchmark_equity is not None:
        benchmark_equity = _sorted_frame(benchmark_equity, "benchmark_equity", ("date", "equity"))

    dates = equity.get_column("date").to_numpy()
    eq = _to_np(equity, "equity")
    ret = _to_np(equity, "return")
    capital = _base_capital(eq, ret)
    growth = eq / capital
    drawdown = _drawdown(eq, capital)
    sharpe = _rolling_sharpe(equity.get_column("return").cast(pl.Float64), ROLLING_SHARPE_WINDOW)
    turnover = _to_np(equity, "turnover")

    bench = bench_dd = None
    bench_total: float | None = None
    if benchmark_equity is not None and benchmark_equity.height:
        b_eq = _to_np(benchmark_equity, "equity")
        b_ret = (
            _to_np(benchmark_equity, "return")
            if "return" in benchmark_equity.columns
            else np.zeros_like(b_eq)
        )
        b_cap = _base_capital(b_eq, b_ret)
        b_dates = benchmark_equity.get_column("date").to_numpy()
        bench = (b_dates, b_eq / b_cap)
        bench_dd = (b_dates, _drawdown(b_eq, b_cap))
        bench_total = float(b_eq[-1] / b_cap - 1.0)

    if "gross_exposure" in equity.columns:
        gross = (dates, _to_np(equity, "gross_exposure"))
        net = (dates, _to_np(equity, "net_exposure")) if "net_exposure" in equity.columns else None
        exposure_step = False
        exposure_note = (
            "Gross (Σ|position|) and net (Σ position) exposure as a share of equity, daily."
        )
    else:
        by_date = (
            weights.group_by("date")
            .agg(pl.col("weight").abs().sum().alias("gross"), pl.col("weight").sum().alias("net"))
            .sort("date")
        )
        w_dates = by_date.get_column("date").to_numpy()
        w_gross, w_net = _to_np(by_date, "gross"), _to_np(by_date, "net")
        if w_dates.size and dates.size and dates[-1] > w_dates[-1]:
            # Hold the last target until the last date so the step spans the whole chart.
            w_dates = np.concatenate((w_dates, dates[-1:]))
            w_gross = np.concatenate((w_gross, w_gross[-1:]))
            w_net = np.concatenate((w_net, w_net[-1:]))
        gross, net = (w_dates, w_gross), (w_dates, w_net)
        exposure_step = True
        exposure_note = (
            "Target gross (Σ|w|) and net (Σw) weights at each rebalance, held until the next "
            "(the equity frame has no daily exposure columns)."
        )

    with matplotlib.rc_context(_RC):
        charts = {
            "equity": _chart_equity(dates, growth, bench),
            "drawdown": _chart_drawdown(dates, drawdown, bench_dd),
            "sharpe": _chart_rolling_sharpe(dates, sharpe, _finite(metrics.get("sharpe"))),
            "turnover": _chart_turnover(dates, turnover),
            "exposure": _chart_exposure(dates, gross, net, step=exposure_step),
        }

    monthly = _monthly_returns(equity.get_column("date"), equity.get_column("return"))

    period = (
        f"{_esc(equity.get_column('date').min())} → {_esc(equity.get_column('date').max())} "
        f"({equity.height:,} days)"
        if equity.height
        else "no data"
    )
    header = (
        f"<h1>{_esc(title)}</h1>"
        f'<div class="meta">run <code>{_esc(run_id)}</code> · created {_esc(created or EM_DASH)}'
        f" · {period}</div>"
    )
    tiles = "".join(
        [
            _tile("Total return", "total_return", metrics.get("total_return")),
            _tile("CAGR", "cagr", metrics.get("cagr")),
            _tile("Sharpe", "sharpe", metrics.get("sharpe")),
            _tile("Max drawdown", "max_drawdown", metrics.get("max_drawdown")),
            _tile("Volatility", "ann_vol", metrics.get("ann_vol")),
            _tile("Benchmark return", "total_return", bench_total),
        ]
    )
    cost_total = float(np.nansum(_to_np(equity, "cost"))) if "cost" in equity.columns else None
    body = "".join(
        [
            f'<div class="tiles">{tiles}</div>\n',
            _section(
                "Equity",
                f"<figure>{charts['equity']}</figure>",
                "Equity divided by the starting capital, after costs; the benchmark is rebased "
                "the same way.",
            ),
            _section(
                "Drawdown",
                f"<figure>{charts['drawdown']}</figure>",
                "Equity over its running maximum (starting at the capital) minus 1.",
            ),
            _section(
                "Rolling Sharpe ratio",
                f"<figure>{charts['sharpe']}</figure>",
                f"mean / std (ddof 1) of daily returns over {ROLLING_SHARPE_WINDOW} trading days "
                f"× √{TRADING_DAYS}; risk-free rate 0.",
            ),
            _section(
                "Monthly returns",
                f'<div class="scroll">{_monthly_table(monthly)}</div>',
            ),
            _section(
                "Turnover",
                f"<figure>{charts['turnover']}</figure>",
                "Traded notional / pre-trade portfolio value on each trading day"
                + (
                    f"; total cost {_esc(format_metric('total_cost', cost_total))}"
                    if cost_total is not None
                    else ""
                )
                + ".",
            ),
            _section("Exposure", f"<figure>{charts['exposure']}</figure>", exposure_note),
            '<div class="cols">',
            _section("Metrics", _metrics_table(metrics)),
            _section("Latest holdings", _holdings_table(weights)),
            "</div>\n",
            _section("Configuration", f"<pre>{_esc(config_toml)}</pre>"),
        ]
    )
    return _page(f"{title} · {run_id}", header, body)


def _finite(value: object) -> float | None:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


# --------------------------------------------------------------------------------------------
# sweep page


def _sweep_chart(frame: pl.DataFrame, metric: str, param: str) -> str:
    import matplotlib

    data = frame.select(param, metric).sort(param)
    xs = data.get_column(param)
    ys = _to_np(data, metric)
    with matplotlib.rc_context(_RC):
        fig, ax = _new_figure(2.8, left=0.85, bottom=0.7)  # room for axis labels
        if data.height == 0 or not np.isfinite(ys).any():
            _no_data(ax)
        elif xs.dtype.is_numeric():
            ax.plot(xs.to_numpy(), ys, color=_C_STRATEGY, marker="o", ms=4)
            ax.set_xlabel(param)
        else:
            labels = [str(v) for v in xs.to_list()]
            ax.bar(range(len(labels)), np.nan_to_num(ys), color=_C_STRATEGY)
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
            ax.set_xlabel(param)
        if metric in _PERCENT:
            _percent_axis(ax)
        ax.set_ylabel(_label(metric))
        return _svg(fig, f"sweep-{param}")


def _sweep_heatmap(frame: pl.DataFrame, metric: str, rows: str, cols: str) -> str:
    # One cell per (row, col): the best value wins when other parameters vary too.
    lower = metric in _LOWER_IS_BETTER
    row_vals = frame.get_column(rows).unique().sort().to_list()
    col_vals = frame.get_column(cols).unique().sort().to_list()
    cells: dict[tuple[Any, Any], float] = {}
    for r, c, v in frame.select(rows, cols, metric).iter_rows():
        v = _finite(v)
        if v is None or (r, c) in cells:
            continue  # frame is sorted best first, so the first finite value is the best
        cells[(r, c)] = v
    values = list(cells.values())
    lo, hi = (min(values), max(values)) if values else (0.0, 0.0)
    best = lo if lower else hi
    head = "".join(f"<th>{_esc(c)}</th>" for c in col_vals)
    body = []
    for r in row_vals:
        tds = []
        for c in col_vals:
            v = cells.get((r, c))
            if v is None:
                tds.append('<td class="num"></td>')
                continue
            # Sequential scale, worst = white, best = dark green, whichever direction is better.
            t = 0.5 if hi == lo else (v - lo) / (hi - lo)
            t = 1.0 - t if lower else t
            style = _signed_colour(0.05 + 0.95 * t, 1.0)
            cls = "num best" if v == best else "num"
            tds.append(f'<td class="{cls}" style="{style}">{_esc(format_metric(metric, v))}</td>')
        body.append(f"<tr><th>{_esc(r)}</th>{''.join(tds)}</tr>")
    return (
        f'<table class="heatmap"><thead><tr><th class="corner">{_esc(rows)} ↓ / {_esc(cols)} →'
        f"</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        f'<p class="muted">{_esc(_label(metric))} by {_esc(rows)} (rows) and {_esc(cols)} '
        "(columns); darker is better, the best cell is outlined.</p>"
    )


def render_sweep(summary: pl.DataFrame, *, metric: str, params: list[str], title: str) -> str:
    """Render the self-contained HTML page of a parameter sweep.

    Parameters
    ----------
    summary
        One row per parameter set: the parameter columns named in ``params`` and metric columns
        (as in ``metrics.json``); other columns (e.g. ``run_id``) are shown as text.
    metric
        The metric to rank by. Higher is better, except for ``ann_vol``, ``tracking_error``,
        ``total_cost`` and ``turnover_ann``.
    params
        The swept parameter columns, e.g. ``["strategy.lookback", "allocation.top_n"]``.
    title
        Page title.

    Returns
    -------
    str
        A complete HTML document: the table sorted best first (nulls last, ties by parameters),
        a line chart of the metric for one parameter, a heatmap for two.

    Raises
    ------
    ConfigError
        If ``metric`` or a parameter is not a column of ``summary``.
    """
    missing = [c for c in [metric, *params] if c not in summary.columns]
    if missing:
        msg = (
            f"sweep summary lacks column(s) {', '.join(f'`{c}`' for c in missing)} "
            f"(columns: {', '.join(summary.columns)})"
        )
        raise ConfigError(msg)
    lower = metric in _LOWER_IS_BETTER
    frame = summary.with_columns(pl.col(metric).cast(pl.Float64).fill_nan(None).alias("_key"))
    frame = frame.sort(
        ["_key", *params], descending=[not lower] + [False] * len(params), nulls_last=True
    ).drop("_key")

    columns = [*params, metric, *[c for c in frame.columns if c not in {metric, *params}]]
    numeric = {c for c in columns if c not in params and frame.schema[c].is_numeric()}

    def th_class(c: str) -> str:
        return " ".join(k for k, on in (("num", c in numeric), ("key", c == metric)) if on)

    head = '<th class="num">#</th>' + "".join(
        f'<th class="{th_class(c)}">{_esc(c)}</th>' for c in columns
    )
    rows = []
    for i, row in enumerate(frame.select(columns).iter_rows(), start=1):
        tds = []
        for c, v in zip(columns, row, strict=True):
            if c in params:
                tds.append(f"<td>{_esc(v)}</td>")
            elif c in numeric:
                cls = "num key" if c == metric else "num"
                tds.append(f'<td class="{cls}">{_esc(format_metric(c, v))}</td>')
            else:
                tds.append(f"<td>{_esc(EM_DASH if v is None else v)}</td>")
        rows.append(f'<tr><td class="num">{i}</td>{"".join(tds)}</tr>')
    table = (
        f'<div class="scroll"><table class="sweep"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )
    order = "ascending (lower is better)" if lower else "descending (higher is better)"
    sections = []
    if len(params) == 1:
        sections.append(
            _section(
                f"{_label(metric)} by {params[0]}",
                f"<figure>{_sweep_chart(frame, metric, params[0])}</figure>",
            )
        )
    elif len(params) == 2:
        sections.append(
            _section(
                f"{_label(metric)} heatmap",
                f'<div class="scroll">{_sweep_heatmap(frame, metric, params[0], params[1])}</div>',
            )
        )
    sections.append(_section("Results", table, f"Sorted by <code>{_esc(metric)}</code>, {order}."))
    header = (
        f'<h1>{_esc(title)}</h1><div class="meta">{frame.height:,} parameter sets · '
        f"parameters {', '.join(f'<code>{_esc(p)}</code>' for p in params) or EM_DASH} · "
        f"ranked by <code>{_esc(metric)}</code></div>"
    )
    return _page(title, header, "".join(sections))
