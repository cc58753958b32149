"""Formatting: the one place a metric value becomes text, plus labels and HTML escaping.

Pure functions with no I/O and no rich: the pages, the sweep table, the ledger listing and the
terminal summary (``qpipe.cli``) all format metrics with :func:`format_metric`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "EM_DASH",
    "LOWER_IS_BETTER",
    "METRIC_LABELS",
    "SUMMARY_METRICS",
    "format_metric",
    "label",
]

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

METRIC_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
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

PERCENT = frozenset(
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
RATIO = frozenset({"sharpe", "sortino", "calmar", "beta", "information_ratio"})
COUNT = frozenset({"n_rebalances"})
# Metrics where smaller is better: a sweep sorts them ascending.
LOWER_IS_BETTER = frozenset({"ann_vol", "tracking_error", "total_cost", "turnover_ann"})

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


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
    if name in PERCENT:
        return f"{x * 100:,.2f}%"
    if name in RATIO:
        return f"{x:,.2f}"
    if name in COUNT or (isinstance(value, int | np.integer) and not isinstance(value, float)):
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


def label(name: str) -> str:
    return METRIC_LABELS.get(name, name.replace("_", " ").capitalize())


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def pct(value: float | None, decimals: int = 1) -> str:
    """``0.1234`` -> ``"12.3"`` (no % sign: table headers say the unit); empty for missing."""
    if value is None or not math.isfinite(value):
        return ""
    return f"{value * 100:.{decimals}f}"


def signed_colour(value: float | None, scale: float) -> str:
    """Background for a signed value: white at 0 towards red (negative) or green (positive)."""
    if value is None or not math.isfinite(value) or scale <= 0:
        return ""
    t = min(abs(value) / scale, 1.0) * 0.85
    rgb = (192, 57, 43) if value < 0 else (26, 140, 80)
    r, g, b = (round(255 + (c - 255) * t) for c in rgb)
    fg = "#ffffff" if t > 0.55 else "#1d1d1d"
    return f"background:#{r:02x}{g:02x}{b:02x};color:{fg}"


def robust_scale(values: Sequence[float | None]) -> float:
    """Colour scale: the 95th percentile of |value|, so one outlier does not wash out the rest."""
    finite = np.abs(np.asarray([v for v in values if v is not None and math.isfinite(v)]))
    if finite.size == 0:
        return 0.0
    return float(np.quantile(finite, 0.95)) or float(finite.max())
