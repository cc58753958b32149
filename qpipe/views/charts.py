"""Charts drawn by uPlot (MIT, vendored in ``assets/``): Python builds specs, a small script draws.

A page holds its chart data once, as JSON in ``<script type="application/json">`` (shared x arrays
by name, so the time charts carry the dates once), plus the uPlot bundle (~51 kB) and
``qpipe-charts.js`` inline: one self-contained file that loads nothing from the network. Each
chart is a ``<div class="chart" id=...>`` the script fills; hover shows values in the legend,
dragging zooms the x axis (time charts zoom together), a double click zooms out.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

import numpy as np

from qpipe.views.format import esc

STRATEGY = "#1f4e79"
BENCH = "#e08214"
NEG = "#c0392b"
GREY = "#8a8a8a"

YKind = Literal["pct", "num", "ratio"]
XKind = Literal["date", "num", "cat"]
SKind = Literal["line", "step", "bars", "points"]


@dataclass(frozen=True)
class Series:
    """One series of a chart; ``values`` line up with the chart's x array (NaN = gap)."""

    label: str
    values: np.ndarray
    color: str = STRATEGY
    kind: SKind = "line"
    width: float = 1.5
    dash: bool = False
    fill: str | None = None  # e.g. "rgba(192,57,43,.25)" fills to zero
    align: int = 0  # bars: -1 left of x, 0 centred, 1 right (grouped bars)
    size: float = 0.8  # bars: share of the slot
    span: bool = False  # draw straight across gaps (a level given by its two end points)


@dataclass(frozen=True)
class Chart:
    """A chart spec: an id (the ``<div>``'s, unique in the page), a shared x array's name."""

    id: str
    title: str
    x: str
    series: tuple[Series, ...]
    y: YKind = "num"
    xkind: XKind = "date"
    log: bool = False
    height: int = 240
    categories: tuple[str, ...] = ()
    xlabel: str = ""
    xpct: bool = False  # a numeric x axis in percent (the return histogram)
    empty: str = ""  # when set, the div shows this text instead of a chart

    @property
    def sync(self) -> bool:
        return self.xkind == "date"


@dataclass
class ChartSet:
    """The charts of one page and their shared x arrays; renders the divs and the one script."""

    xs: dict[str, list[Any]] = field(default_factory=dict)
    charts: list[Chart] = field(default_factory=list)
    days: list[str] = field(default_factory=list)  # x arrays of day numbers (since 1970)

    def add_x(self, name: str, values: np.ndarray, *, dates: bool = False) -> str:
        """Register an x array (``dates``: numpy datetime64 -> day numbers, seconds in the page)."""
        if dates:
            self.xs[name] = values.astype("datetime64[D]").astype(np.int64).tolist()
            self.days.append(name)
        else:
            self.xs[name] = _numbers(np.asarray(values, dtype=float))
        return name

    def div(self, chart: Chart) -> str:
        """The chart's placeholder; remembers the chart for :meth:`script`."""
        if chart.empty:
            return f'<div class="chart empty" id="{esc(chart.id)}">{esc(chart.empty)}</div>'
        self.charts.append(chart)
        labels = ", ".join(s.label for s in chart.series if s.label)
        aria = f"{chart.title} chart" + (f": {labels}" if labels else "")
        return f'<div class="chart" id="{esc(chart.id)}" role="img" aria-label="{esc(aria)}"></div>'

    def script(self) -> str:
        """The data and the drawing code for every chart added (empty when there is none)."""
        if not self.charts:
            return ""
        payload = {"x": self.xs, "days": self.days, "charts": [_spec(c) for c in self.charts]}
        data = json.dumps(payload, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
        return (
            f"<style>{asset('uPlot.min.css')}</style>\n"
            f'<script type="application/json" id="qpipe-chart-data">{data}</script>\n'
            f"<script>{asset('uPlot.iife.min.js')}</script>\n"
            f"<script>{asset('qpipe-charts.js')}</script>\n"
        )


def _spec(c: Chart) -> dict[str, Any]:
    return {
        "id": c.id,
        "x": c.x,
        "xkind": c.xkind,
        "y": c.y,
        "log": c.log,
        "height": c.height,
        "categories": list(c.categories),
        "xlabel": c.xlabel,
        "xpct": c.xpct,
        "zoom": c.xkind != "cat",
        "sync": c.sync,
        "series": [
            {
                "label": s.label,
                "values": _numbers(s.values),
                "color": s.color,
                "kind": s.kind,
                "width": s.width,
                "dash": s.dash,
                "fill": s.fill,
                "align": s.align,
                "size": s.size,
                "span": s.span,
            }
            for s in c.series
        ],
    }


def _numbers(values: np.ndarray) -> list[float | None]:
    """Six significant digits (plenty for a picture, a third of the bytes); NaN -> null."""
    v = np.asarray(values, dtype=float)
    finite = np.isfinite(v)
    mag = np.clip(np.floor(np.log10(np.abs(np.where(finite & (v != 0), v, 1.0)))), -290, 290)
    rounded = np.round(v * 10.0 ** (5 - mag)) / 10.0 ** (5 - mag)
    out: list[float | None] = rounded.tolist()
    if not finite.all():
        for i in np.flatnonzero(~finite).tolist():
            out[i] = None
    return out


def level(n: int, value: float) -> np.ndarray:
    """A reference level: the value at both ends, gaps between (draw it with ``span=True``)."""
    out = np.full(n, np.nan)
    if n and math.isfinite(value):
        out[[0, -1]] = value
    return out


@functools.cache
def asset(name: str) -> str:
    """The text of a file in ``qpipe/views/assets`` (read once per process)."""
    return resources.files("qpipe.views").joinpath("assets", name).read_text(encoding="utf-8")


def asset_names() -> Sequence[str]:
    """The vendored files a page inlines (for the size budget in docs/report.md)."""
    return ("uPlot.min.css", "uPlot.iife.min.js", "qpipe-charts.js")
