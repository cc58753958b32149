"""The run report (one self-contained HTML page), the sweep page and the terminal summary.

Everything a researcher opens after a run is rendered here, from frames already in memory:

* :func:`render_report` builds ``report.html``: headline figures, equity against the benchmark,
  drawdown, rolling Sharpe, turnover and exposure charts (inline SVG), a
  monthly-returns heatmap and the latest holdings (HTML tables coloured inline), the metrics
  table, the resolved config and the run id. The page loads nothing from the network.
* :func:`render_sweep` builds the page of a parameter sweep: the sorted table and, for two
  parameters, a heatmap of the chosen metric.
* :func:`summary_table` is the compact table the runner prints with rich.
* :func:`format_metric` is the one place where a metric value becomes text; all three use it.

Charts are written as SVG text by ``_chart``, one small renderer for exactly what the pages need
(lines, step lines, a filled area, stems, bars, reference levels; date, numeric or category x
axes). A whole report renders in about 20 ms, against 0.35-0.75 s when matplotlib drew the charts
(plus 0.6 s to import it); there is no global state and the same inputs give the same bytes.
"""

from __future__ import annotations

import datetime as dt
import functools
import html
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import polars as pl

from qpipe.errors import ConfigError

if TYPE_CHECKING:
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
        The run folder, shown in the caption so the user knows where the outputs are.

    Returns
    -------
    rich.table.Table
        Two metric/value column pairs; print it with ``rich.console.Console().print(table)``.
    """
    from rich import box
    from rich.table import Table

    table = Table(
        title=f"qpipe run {run_id}",
        caption=f"outputs: {out_dir}",
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
# inline SVG charts

# Geometry in SVG user units; CSS scales a chart to the page width (about 1.1 px per unit).
_W = 960
# Margins around the plot area: top (legend), right, bottom (date labels), left (tick labels).
_MARGIN: tuple[int, int, int, float] = (29, 12, 35, 60.0)
_FONT = 12
_C_AXIS = "#9a9a9a"
_C_GRID = "#e9e9e9"
_C_TEXT = "#555555"
_EPOCH = dt.date(1970, 1, 1)

_Kind = Literal["line", "step", "area", "stems", "hline", "bars"]
_XY = tuple[np.ndarray, np.ndarray]
_Lim = tuple[float, float] | None


class _Layer(NamedTuple):
    """One thing drawn on a chart: a line, a step line, a filled area, stems, bars or a level."""

    kind: _Kind
    x: np.ndarray  # days since 1970-01-01 on a date axis, else numbers or category positions
    y: np.ndarray  # for "hline", y[0] is the level
    color: str
    label: str = ""  # shown in the legend when not empty
    width: float = 1.45
    opacity: float = 1.0
    dash: bool = False
    markers: bool = False
    z: int = 2  # drawing order (higher on top); the legend keeps the order layers are given


def _hline(
    level: float, color: str = _C_AXIS, label: str = "", width: float = 0.95, *, dash: bool = False
) -> _Layer:
    return _Layer("hline", np.empty(0), np.array([level]), color, label, width, dash=dash)


def _days(values: np.ndarray) -> np.ndarray:
    return values.astype("datetime64[D]").astype(np.int64).astype(float)


@functools.lru_cache(maxsize=8192)  # a path repeats the same small steps thousands of times
def _tenths(t: int) -> str:
    """``t`` tenths as short text: ``12``, ``1.5``, ``-.3``."""
    s = f"{abs(t) // 10}.{abs(t) % 10}" if t % 10 else str(abs(t) // 10)
    s = s[1:] if s.startswith("0.") else s
    return f"-{s}" if t < 0 else s


def _num(v: float) -> str:
    """Coordinate text with at most one decimal."""
    return _tenths(round(v * 10))


def _path(px: np.ndarray, py: np.ndarray) -> str:
    """Path data for a polyline: absolute start, then relative steps; NaNs break the line."""
    ok = np.isfinite(px) & np.isfinite(py)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], ok.view(np.int8), [0]))))
    parts = []
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        x, y = _thin(px[a:b], py[a:b])
        qx, qy = np.rint(x * 10).astype(np.int64), np.rint(y * 10).astype(np.int64)
        steps = " ".join(map(_tenths, np.column_stack((np.diff(qx), np.diff(qy))).ravel().tolist()))
        # A lone point becomes a zero-length segment: with round caps it shows as a dot.
        parts.append(
            f"M{_tenths(int(qx[0]))} {_tenths(int(qy[0]))}" + (f"l{steps}" if steps else "h0")
        )
    return "".join(parts)


def _thin(px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep the first, last, lowest and highest point of each pixel column: the same picture."""
    col = np.floor(px).astype(np.int64)
    if px.size <= 4 * (col[-1] - col[0] + 1):
        return px, py
    first = np.concatenate(([True], col[1:] != col[:-1]))
    order = np.lexsort((py, col))
    low = np.concatenate(([True], col[order][1:] != col[order][:-1]))
    pick = (first, np.roll(first, -1), order[low], order[np.roll(low, -1)])
    keep = np.unique(np.concatenate([np.flatnonzero(p) if p.dtype == bool else p for p in pick]))
    return px[keep], py[keep]


def _window(lay: _Layer, x0: float, x1: float) -> tuple[np.ndarray, np.ndarray]:
    """The part of a layer inside [x0, x1], cut at the edges as a clip path would cut it."""
    x, y = lay.x, lay.y
    if lay.kind == "hline" or x.size == 0 or (x[0] >= x0 and x[-1] <= x1):
        return x, y
    if lay.kind in {"stems", "bars"}:
        inside = (x >= x0) & (x <= x1)
        return x[inside], y[inside]
    # One point beyond each edge (x is sorted), moved onto the edge; a step's value holds.
    step = lay.kind == "step"
    a = max(int(np.searchsorted(x, x0, "right")) - 1, 0)
    b = int(np.searchsorted(x, x1, "right")) + (not step)
    x, y = x[a:b].copy(), y[a:b].copy()
    for i, j, edge in ((0, 1, x0), (-1, -2, x1)):
        if x.size > 1 and (x[i] - edge) * (1 if i else -1) > 0:
            if not step:
                y[i] = y[j] + (y[i] - y[j]) * (edge - x[j]) / (x[i] - x[j])
            x[i] = edge
    return x, y


def _nice_ticks(lo: float, hi: float, most: int) -> list[float]:
    raw = (hi - lo) / max(most, 2)  # step <= 2 * raw <= hi - lo: never an empty list
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))
    k0, k1 = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    return [k * step for k in range(k0, k1 + 1)]


def _tick_text(ticks: Sequence[float], pct: bool) -> list[str]:
    vals = [t * 100 if pct else t for t in ticks]
    step = abs(vals[1] - vals[0]) if len(vals) > 1 else abs(vals[0]) or 1.0
    d = next(d for d in range(7) if abs(round(step, d) - step) <= step * 1e-6)
    out = [f"{0.0 if round(v, d) == 0 else v:,.{d}f}".replace("-", "−") for v in vals]
    return [f"{s}%" for s in out] if pct else out


def _ord(day: dt.date) -> float:
    return float((day - _EPOCH).days)


def _date_ticks(x0: float, x1: float, most: int) -> list[tuple[float, str]]:
    """Year ticks, or months (labelled with the year in January), or days for short ranges."""
    a = _EPOCH + dt.timedelta(days=math.ceil(x0))
    b = _EPOCH + dt.timedelta(days=math.floor(x1))
    if x1 - x0 >= 3 * 365:
        years = range(a.year + (a > dt.date(a.year, 1, 1)), b.year + 1)
        step = next(s for s in (1, 2, 5, 10, 20, 50, 100, 1000) if len(years) <= most * s)
        return [(_ord(dt.date(y, 1, 1)), str(y)) for y in years if y % step == 0]
    if x1 - x0 >= 60:
        m0, m1 = a.year * 12 + a.month - (a.day == 1), b.year * 12 + b.month - 1
        step = next(s for s in (1, 2, 3, 4, 6, 12) if m1 - m0 + 1 <= most * s)
        days = [dt.date(m // 12, m % 12 + 1, 1) for m in range(m0, m1 + 1) if m % step == 0]
        out = [(_ord(d), str(d.year) if d.month == 1 else _MONTHS[d.month - 1]) for d in days]
        if out and not out[0][1].isdigit():  # no January in view: say the year once
            out[0] = (out[0][0], f"{out[0][1]} {days[0].year}")
        return out
    step = next(s for s in (1, 2, 7, 14) if (b - a).days + 1 <= most * s)
    days = [a + dt.timedelta(i) for i in range((b - a).days + 1)]
    return [
        (_ord(d), f"{_MONTHS[d.month - 1]} {d.day}")
        for d in days
        if (d.toordinal() - 1) % step == 0
    ]  # 7: Mondays


def _chart(
    title: str,
    layers: Sequence[_Layer],
    *,
    height: int = 230,
    xaxis: Literal["date", "num", "cat"] = "date",
    xlim: tuple[float, float] | None = None,
    ylim: tuple[float, float] | None = None,
    pct: bool = False,
    empty: str = "",
    categories: Sequence[str] = (),
    xlabel: str = "",
    ylabel: str = "",
) -> str:
    """Draw one chart as an SVG fragment to inline in the page.

    Layers are drawn by ``z`` then in order; x and y ranges default to the data (y padded by 5%,
    as are numeric x axes). ``empty`` (or no finite y value) draws the axes and that text
    instead. The SVG has a ``viewBox`` (CSS scales it), a ``<title>`` and an ``aria-label``, no
    ids and no references, and the same inputs always give the same text.
    """
    finite = [lay.y[np.isfinite(lay.y)] for lay in layers]
    empty = empty or ("" if any(v.size for v in finite) else "no data")
    top, right, bottom, left = _MARGIN
    bottom += 18 * bool(xlabel) + 28 * bool(categories)
    x0, x1 = xlim or (0.0, 1.0)
    if xaxis == "cat":
        x0, x1 = -0.6, len(categories) - 0.4
    elif xlim is None:
        xs = np.concatenate([lay.x for lay in layers if lay.kind != "hline"] + [np.empty(0)])
        xs = xs[np.isfinite(xs)]
        if xs.size:
            x0, x1 = float(xs.min()), float(xs.max())
            pad = (x1 - x0) * 0.05 * (xaxis == "num")
            x0, x1 = x0 - pad, x1 + pad
    x0, x1 = (x0 - 1, x1 + 1) if x1 <= x0 else (x0, x1)
    labels = [lay.label for lay in layers if lay.label]
    desc = f"{title} chart" + (f": {', '.join(labels)}" if labels and not empty else "")
    if xaxis == "date" and not empty:
        first, last = (str(_EPOCH + dt.timedelta(days=math.ceil(v))) for v in (x0, x1 - 0.5))
        desc += f"; {first} to {last}"
    desc += f" ({empty})" if empty else ""
    out = [
        f'<svg viewBox="0 0 {_W} {height}" role="img" aria-label="{_esc(desc)}" '
        f'font-size="{_FONT}"><title>{_esc(desc)}</title>'
    ]
    if empty:
        left += 20 * bool(ylabel)
        out.append(
            f'<path d="M{_num(left)} {top}V{height - bottom}H{_W - right}" stroke="{_C_AXIS}" '
            f'stroke-width="1.07" fill="none"/><text x="{_num((left + _W - right) / 2)}" '
            f'y="{(top + height - bottom) // 2}" fill="#888" text-anchor="middle">'
            f"{_esc(empty)}</text></svg>"
        )
        return "".join(out)

    if ylim is None:
        base = [np.zeros(1)] if any(lay.kind in {"stems", "bars", "area"} for lay in layers) else []
        ys = np.concatenate([*finite, *base])
        y0, y1 = float(ys.min()), float(ys.max())
        if y1 - y0 <= 1e-12 * max(1.0, abs(y1)):
            y0, y1 = y0 - (abs(y0) * 0.05 or 0.5), y1 + (abs(y1) * 0.05 or 0.5)
        pad = (y1 - y0) * 0.05
        ylim = (y0 - pad, y1 + pad)
    y0, y1 = ylim
    bottom_y = height - bottom
    yticks = _nice_ticks(y0, y1, (bottom_y - top) // 24)  # a label every 2 font sizes at most
    ytext = _tick_text(yticks, pct)
    left = max(left, 14 + 0.6 * _FONT * max(map(len, ytext), default=0)) + 20 * bool(ylabel)
    right_x = _W - right

    def fx(v: np.ndarray) -> np.ndarray:
        return left + (v - x0) * ((right_x - left) / (x1 - x0))

    def fy(v: np.ndarray) -> np.ndarray:
        return bottom_y - (v - y0) * ((bottom_y - top) / (y1 - y0))

    if xaxis == "date":
        xticks = _date_ticks(x0, x1, min(12, int(right_x - left) // 70))
    elif xaxis == "num":
        nums = _nice_ticks(x0, x1, int(right_x - left) // 80)
        xticks = list(zip(nums, _tick_text(nums, False), strict=True))
    else:
        xticks = list(enumerate(categories))
    xpix = fx(np.array([t for t, _ in xticks], dtype=float)).tolist()
    ypix = fy(np.array(yticks, dtype=float)).tolist()
    L, T, R, B = (_num(v) for v in (left, top, right_x, bottom_y))

    grid = "".join(f"M{_num(x)} {T}V{B}" for x in xpix) + "".join(
        f"M{L} {_num(y)}H{R}" for y in ypix
    )
    out.append(f'<path d="{grid}" stroke="{_C_GRID}" stroke-width=".8" fill="none"/>')
    zero = _num(float(fy(np.zeros(1))[0]))
    for lay in sorted(layers, key=lambda lay: lay.z):
        lx, ly = _window(lay, x0, x1)
        px, py, c = fx(lx), fy(ly), lay.color
        ok = np.isfinite(px) & np.isfinite(py)
        style = f'stroke="{c}" stroke-width="{lay.width:g}"' + (
            f' stroke-opacity="{lay.opacity:g}"' if lay.opacity < 1 else ""
        )
        if lay.kind == "hline":
            d = f"M{L} {_num(py[0])}H{R}"
        elif lay.kind == "stems":
            d = "".join(f"M{_num(x)} {zero}V{_num(y)}" for x, y in zip(px[ok], py[ok], strict=True))
        elif lay.kind == "bars":
            half = 0.4 * (right_x - left) / (x1 - x0)
            d = "".join(
                f"M{_num(x - half)} {zero}H{_num(x + half)}V{_num(y)}H{_num(x - half)}Z"
                for x, y in zip(px[ok], py[ok], strict=True)
            )
            out.append(f'<path d="{d}" fill="{c}"/>')
            continue
        elif lay.kind == "area":
            d = _path(px, np.where(ok, py, float(zero))) + f"V{zero}H{_num(px[0])}Z"
            out.append(f'<path d="{d}" fill="{c}" fill-opacity="{lay.opacity:g}"/>')
            continue
        else:
            if lay.kind == "step":  # hold each value until the next x ("post")
                px, py = np.repeat(px, 2)[1:], np.repeat(py, 2)[:-1]
            d = _path(px, py)
        dash = ' stroke-dasharray="5 3"' if lay.dash else ""
        out.append(
            f'<path d="{d}" {style}{dash} fill="none" stroke-linejoin="round" '
            'stroke-linecap="round"/>'
        )
        if lay.markers:
            dots = "".join(f"M{_num(x)} {_num(y)}h0" for x, y in zip(px[ok], py[ok], strict=True))
            out.append(f'<path d="{dots}" stroke="{c}" stroke-width="6" stroke-linecap="round"/>')

    ticks = "".join(f"M{_num(x)} {B}v4" for x in xpix)
    out.append(
        f'<path d="M{L} {T}V{B}H{R}" stroke="{_C_AXIS}" stroke-width="1.07" fill="none"/>'
        f'<path d="{ticks}" stroke="{_C_TEXT}" stroke-width=".8"/>'
        f'<g fill="{_C_TEXT}" text-anchor="end">'
        + "".join(
            f'<text x="{_num(left - 6)}" y="{_num(y + 4)}">{_esc(t)}</text>'
            for y, t in zip(ypix, ytext, strict=True)
        )
    )
    if categories:  # long names: slanted
        out.extend(
            f'<text transform="translate({_num(x + 4)} {_num(bottom_y + 14)}) rotate(-30)">'
            f"{_esc(t)}</text>"
            for x, (_, t) in zip(xpix, xticks, strict=True)
        )
    out.append(f'</g><g fill="{_C_TEXT}" text-anchor="middle">')
    if not categories:
        for x, (_, t) in zip(xpix, xticks, strict=True):
            half = 0.3 * _FONT * len(t)  # keep a label at the edge inside the picture
            x = min(max(x, half), _W - half)
            out.append(f'<text x="{_num(x)}" y="{_num(bottom_y + 18)}">{_esc(t)}</text>')
    if xlabel:
        out.append(f'<text x="{_num((left + right_x) / 2)}" y="{height - 8}">{_esc(xlabel)}</text>')
    if ylabel:
        out.append(
            f'<text transform="translate(16 {_num((top + bottom_y) / 2)}) rotate(-90)">'
            f"{_esc(ylabel)}</text>"
        )
    out.append("</g>")

    # Legend in the top margin, so it never hides a line.
    x, legend = left, []
    for lay in layers:
        if not lay.label:
            continue
        if lay.kind in {"area", "bars"}:
            handle = (
                f'<rect x="{_num(x)}" y="{top - 20}" width="22" height="9" fill="{lay.color}"'
                f' fill-opacity="{lay.opacity:g}"/>'
            )
        else:
            dash = ' stroke-dasharray="5 3"' if lay.dash else ""
            handle = (
                f'<path d="M{_num(x)} {top - 15.5}h22" stroke="{lay.color}" '
                f'stroke-width="{lay.width:g}"{dash}/>'
            )
        legend.append(f'{handle}<text x="{_num(x + 28)}" y="{top - 11.5}">{_esc(lay.label)}</text>')
        x += 28 + 0.53 * 11.5 * len(lay.label) + 20
    if legend:
        out.append(f'<g font-size="11.5" fill="#333333">{"".join(legend)}</g>')
    out.append("</svg>")
    return "".join(out)


def _chart_equity(x: np.ndarray, growth: np.ndarray, bench: _XY | None, xlim: _Lim) -> str:
    layers = [_Layer("line", x, growth, _C_STRATEGY, "strategy", width=1.75, z=3)]
    if bench is not None and bench[0].size:
        layers.append(_Layer("line", *bench, _C_BENCH, "benchmark (equal weight)"))
    layers.append(_hline(1.0))
    return _chart("Equity", layers, height=326, xlim=xlim, empty="" if x.size else "no data")


def _chart_drawdown(x: np.ndarray, drawdown: np.ndarray, bench: _XY | None, xlim: _Lim) -> str:
    legend = bench is not None and bench[0].size > 0
    layers = [
        _Layer("area", x, drawdown, "#c0392b", "strategy" if legend else "", opacity=0.28),
        _Layer("line", x, drawdown, "#a93226", width=1.2),
    ]
    both = drawdown
    if bench is not None and legend:
        layers.append(_Layer("line", *bench, _C_BENCH, "benchmark", width=1.05, opacity=0.8))
        both = np.concatenate((drawdown, bench[1]))
    low = float(np.nanmin(both)) if np.isfinite(both).any() else 0.0
    ylim = (min(low * 1.08, -0.01), 0.005)
    return _chart(
        "Drawdown", layers, xlim=xlim, ylim=ylim, pct=True, empty="" if x.size else "no data"
    )


def _chart_rolling_sharpe(x: np.ndarray, sharpe: np.ndarray, full: float | None, xlim: _Lim) -> str:
    layers = [_Layer("line", x, sharpe, _C_STRATEGY, f"{ROLLING_SHARPE_WINDOW}-day"), _hline(0.0)]
    if full is not None:
        layers.append(_hline(full, _C_BENCH, f"full period {full:.2f}", 1.35, dash=True))
    empty = (
        "" if np.isfinite(sharpe).any() else f"fewer than {ROLLING_SHARPE_WINDOW} days of returns"
    )
    return _chart("Rolling Sharpe ratio", layers, xlim=xlim, empty=empty)


def _chart_turnover(x: np.ndarray, turnover: np.ndarray, xlim: _Lim) -> str:
    traded = np.isfinite(turnover) & (turnover > 0)
    # One stem per trading day: a bar per day would be 2,520 mostly-zero bars.
    layers = [_Layer("stems", x[traded], turnover[traded], _C_STRATEGY, width=1.6)]
    top = float(turnover[traded].max()) * 1.08 if traded.any() else 1.0
    empty = "" if traded.any() else "no trades"
    return _chart("Turnover", layers, xlim=xlim, ylim=(0.0, top), pct=True, empty=empty)


def _chart_exposure(gross: _XY, net: _XY | None, *, step: bool, xlim: _Lim) -> str:
    kind: _Kind = "step" if step else "line"
    layers = [_Layer(kind, *gross, _C_STRATEGY, "gross")]
    if net is not None:
        layers.append(_Layer(kind, *net, _C_BENCH, "net"))
    layers.append(_hline(0.0))
    empty = "" if gross[0].size else "no exposure data"
    return _chart("Exposure", layers, xlim=xlim, pct=True, empty=empty)


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
        bench = (_days(b_dates), b_eq / b_cap)
        bench_dd = (bench[0], _drawdown(b_eq, b_cap))
        bench_total = float(b_eq[-1] / b_cap - 1.0)

    if "gross_exposure" in equity.columns:
        gross = (_days(dates), _to_np(equity, "gross_exposure"))
        net = (
            (gross[0], _to_np(equity, "net_exposure")) if "net_exposure" in equity.columns else None
        )
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
        gross, net = (_days(w_dates), w_gross), (_days(w_dates), w_net)
        exposure_step = True
        exposure_note = (
            "Target gross (Σ|w|) and net (Σw) weights at each rebalance, held until the next "
            "(the equity frame has no daily exposure columns)."
        )

    # Every chart gets the same x range, so they line up down the page.
    days = _days(dates)
    xlim = (float(days[0]), float(days[-1])) if days.size else None
    charts = {
        "equity": _chart_equity(days, growth, bench, xlim),
        "drawdown": _chart_drawdown(days, drawdown, bench_dd, xlim),
        "sharpe": _chart_rolling_sharpe(days, sharpe, _finite(metrics.get("sharpe")), xlim),
        "turnover": _chart_turnover(days, turnover, xlim),
        "exposure": _chart_exposure(gross, net, step=exposure_step, xlim=xlim),
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
    data = frame.select(param, metric).sort(param)
    xs = data.get_column(param)
    ys = _to_np(data, metric)
    title = f"{_label(metric)} by {param}"
    kw: dict[str, Any] = {"height": 269, "pct": metric in _PERCENT, "xlabel": param}
    kw["ylabel"] = _label(metric)
    if data.height == 0 or not np.isfinite(ys).any():
        return _chart(title, [], empty="no data", **kw)
    if xs.dtype.is_numeric():
        x = xs.cast(pl.Float64).fill_null(float("nan")).to_numpy()
        line = _Layer("line", x, ys, _C_STRATEGY, width=1.75, markers=True)
        return _chart(title, [line], xaxis="num", **kw)
    labels = [str(v) for v in xs.to_list()]
    bars = _Layer("bars", np.arange(len(labels), dtype=float), np.nan_to_num(ys), _C_STRATEGY)
    return _chart(title, [bars], xaxis="cat", categories=labels, **kw)


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
