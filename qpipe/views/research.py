"""The out-of-sample research page: walk-forward, CPCV and trial-aware statistics.

:func:`render_research` takes plain data (frames, arrays, numbers: the research code computes
them) and returns one self-contained HTML page with the sections that apply:

- **verdict**: the one-line verdict and the DSR with N, SR0, V, PSR(0), T and MinTRL;
- **IS vs OOS**: in-sample against out-of-sample Sharpe, one point per (fold or split, set),
  the chosen sets in a second colour; the OLS slope of those points in the note;
- **PBO**: the histogram of the CSCV logits λ with the PBO (the share with λ <= 0);
- **MinTRL**: PSR against SR0 as the track record grows, the 95 % line, and where the actual
  track record and MinTRL lie;
- **tables**: the folds table (walk-forward), paths and per-set distributions (CPCV).

:func:`research_sections` returns the same sections as ``(id, title, html, note)`` with their
charts added to a :class:`~qpipe.views.charts.ChartSet` the caller owns, so the run page
(``report.html`` of a walk-forward's stitched run) and the sweep page (``sweep.html``) embed
them in their own page, with one chart script.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from qpipe.views.charts import BENCH, GREY, NEG, STRATEGY, Chart, ChartSet, Series
from qpipe.views.format import esc
from qpipe.views.html import data_table, kv_table, page, section, toc

__all__ = ["ResearchPage", "Section", "facts_html", "render_research", "research_sections"]

Section = tuple[str, str, str, str]  # id, title, html, note (trusted html)


@dataclass(frozen=True)
class ResearchPage:
    """What the page shows; every part is optional.

    ``is_oos``: (in-sample, out-of-sample, chosen mask) Sharpe arrays. ``psr_curve``: (T values,
    PSR values); the track record T and MinTRL (``stats["n_obs"]``, ``stats["min_trl"]``) are
    marked on it. ``tables``: (section id, title, frame) shown as they are. ``absent``:
    (section id, title, why) for a section that could not be computed: the page says why.
    ``notes``: (section id, text) added under a section (plain text, escaped).
    """

    title: str
    subtitle: str = ""
    facts: Sequence[tuple[str, str]] = ()
    verdict: str = ""
    stats: Mapping[str, Any] | None = None
    is_oos: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    lambdas: np.ndarray | None = None
    pbo: float | None = None
    slope: float | None = None  # PBO: OLS slope of the IS-best trial's OOS on IS Sharpe
    prob_loss: float | None = None  # PBO: share of halvings where the IS-best trial lost OOS
    psr_curve: tuple[np.ndarray, np.ndarray] | None = None
    tables: Sequence[tuple[str, str, pl.DataFrame]] = field(default_factory=tuple)
    absent: Sequence[tuple[str, str, str]] = ()
    notes: Sequence[tuple[str, str]] = ()


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool | str):
        return esc(str(value))
    if isinstance(value, int):
        return f"{value:,}"
    x = float(value)
    return "∞" if math.isinf(x) else ("—" if math.isnan(x) else f"{x:.{digits}g}")


def _stats_section(page_: ResearchPage) -> str:
    s = page_.stats or {}
    rows = [
        ("DSR", _num(s.get("dsr"))),
        ("N (trials counted)", _num(s.get("n_trials"))),
        ("SR (per period)", _num(s.get("sr"))),
        ("SR0 (expected max of N)", _num(s.get("sr0"))),
        ("V (variance of trial SRs)", _num(s.get("sr_variance"))),
        ("PSR(0)", _num(s.get("psr0"))),
        ("T (observations)", _num(s.get("n_obs"))),
        ("MinTRL vs SR0", _num(s.get("min_trl"), 6)),
        ("skew, kurtosis", f"{_num(s.get('skew'))}, {_num(s.get('kurtosis'))}"),
    ]
    line = f"<p><strong>{esc(page_.verdict)}</strong></p>" if page_.verdict else ""
    return line + kv_table(rows)


# A scatter of every CSCV halving (12,870 for S = 16) made a 330 kB page even for 4 trials; this
# many points, evenly spaced in in-sample order, show the same cloud
SCATTER_POINTS = 2_000


def _scatter(charts: ChartSet, data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> str:
    ins, oos, chosen = (np.asarray(a, dtype=float) for a in data)
    order = np.argsort(ins, kind="stable")
    if order.size > SCATTER_POINTS:
        order = order[np.unique(np.linspace(0, order.size - 1, SCATTER_POINTS).round().astype(int))]
    ins, oos, chosen = ins[order], oos[order], chosen[order].astype(bool)
    x = charts.add_x("is-sharpe", ins)
    series = tuple(
        s
        for s in (
            Series("all sets", np.where(chosen, np.nan, oos), GREY, kind="points"),
            Series("chosen", np.where(chosen, oos, np.nan), STRATEGY, kind="points"),
        )
        if np.isfinite(s.values).any() or not ins.size
    )
    chart = Chart("chart-is-oos", "Out-of-sample vs in-sample Sharpe", x, series, "num", "num",
                  xlabel="in-sample Sharpe", empty="" if ins.size else "no trials")  # fmt: skip
    return charts.div(chart)


def _ols_slope(x: Any, y: Any) -> float | None:
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(xs) & np.isfinite(ys)
    if np.count_nonzero(ok) < 2 or np.ptp(xs[ok]) == 0:
        return None
    return float(np.polyfit(xs[ok], ys[ok], 1)[0])


def _lambda_histogram(charts: ChartSet, lambdas: np.ndarray) -> str:
    lam = np.asarray(lambdas, dtype=float)
    lam = lam[np.isfinite(lam)]
    if lam.size == 0:
        return charts.div(Chart("chart-lambda", "λ", "none", (), empty="no halvings"))
    counts, edges = np.histogram(lam, bins=min(40, max(5, lam.size // 50)))
    centres = (edges[:-1] + edges[1:]) / 2
    x = charts.add_x("lambda-bins", centres)
    series = (
        Series("λ <= 0 (overfit)", np.where(centres <= 0, counts, 0), NEG, kind="bars", size=0.9),
        Series("λ > 0", np.where(centres > 0, counts, 0), STRATEGY, kind="bars", size=0.9),
    )
    chart = Chart("chart-lambda", "Logits λ of the IS-best trial's OOS rank", x, series,
                  "num", "num", xlabel="λ = ln(ω / (1 − ω))", height=220)  # fmt: skip
    return charts.div(chart)


def _marker(t: np.ndarray, psr: np.ndarray, at: Any) -> np.ndarray:
    """NaN everywhere but the curve's point nearest to ``at`` (none when ``at`` is off it)."""
    out = np.full(t.size, np.nan)
    if at is not None and t.size and math.isfinite(float(at)) and t[0] <= float(at) <= t[-1]:
        i = int(np.argmin(np.abs(t - float(at))))
        out[i] = psr[i]
    return out


def _psr_curve(
    charts: ChartSet, curve: tuple[np.ndarray, np.ndarray], stats: Mapping[str, Any]
) -> str:
    t, psr = (np.asarray(a, dtype=float) for a in curve)
    x = charts.add_x("track-record", t)
    series = (
        Series("PSR(SR0)", psr, STRATEGY),
        Series("95 %", np.full(t.size, 0.95), BENCH, dash=True),
        Series("track record T", _marker(t, psr, stats.get("n_obs")), NEG, kind="points"),
        Series("MinTRL", _marker(t, psr, stats.get("min_trl")), GREY, kind="points"),
    )
    chart = Chart("chart-min-trl", "PSR against SR0 as the track record grows", x, series,
                  "ratio", "num", xlabel="observations (T)", height=220)  # fmt: skip
    return charts.div(chart)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return _num(value, 4)
    return esc("" if value is None else str(value))


def _frame_table(frame: pl.DataFrame, limit: int = 200) -> str:
    numeric = [dt.is_numeric() for dt in frame.dtypes]
    rows = ([_cell(v) for v in row] for row in frame.head(limit).iter_rows())
    more = (
        f'<p class="muted">first {limit} of {frame.height} rows</p>' if frame.height > limit else ""
    )
    return data_table(frame.columns, rows, numeric) + more


def _trl_note(stats: Mapping[str, Any]) -> str:
    t, trl = stats.get("n_obs"), stats.get("min_trl")
    if t is None or trl is None:
        return "MinTRL is where the curve crosses 95 %."
    return esc(
        f"MinTRL (against SR0, 95 %) = {_num(trl, 6)} observations; the track record has "
        f"T = {_num(t)}: " + ("long enough." if float(trl) <= float(t) else "too short.")
    )


def research_sections(data: ResearchPage, charts: ChartSet) -> list[Section]:
    """The research sections, charts added to ``charts`` (ids: verdict, is-oos, pbo, min-trl,
    then the tables' and the absent sections' ids, in the order given)."""
    parts: list[Section] = []
    if data.stats is not None:
        parts.append(("verdict", "Deflated Sharpe ratio", _stats_section(data), ""))
    if data.is_oos is not None:
        slope = _ols_slope(data.is_oos[0], data.is_oos[1])
        note = "" if slope is None else f"OLS slope of OOS on IS (these points): {_num(slope)}."
        if data.is_oos[0].size > SCATTER_POINTS:
            note += (
                f" Drawn: {SCATTER_POINTS:,} of the {data.is_oos[0].size:,} points, evenly spaced"
                " in in-sample order (the slope uses all of them)."
            )
        parts.append(("is-oos", "In-sample vs out-of-sample", _scatter(charts, data.is_oos), note))
    if data.lambdas is not None:
        note = (
            f"PBO = {_num(data.pbo)}: the share of the {data.lambdas.size:,} halvings with λ ≤ 0."
        )
        if data.slope is not None:
            note += f" Performance degradation (OLS slope of OOS on IS Sharpe): {_num(data.slope)}."
        if data.prob_loss is not None:
            note += f" Probability of an out-of-sample loss: {_num(data.prob_loss)}."
        histogram = _lambda_histogram(charts, data.lambdas)
        parts.append(("pbo", "Probability of backtest overfitting", histogram, note))
    if data.psr_curve is not None:
        curve = _psr_curve(charts, data.psr_curve, data.stats or {})
        note = _trl_note(data.stats or {})
        parts.append(("min-trl", "Minimum track record length", curve, note))
    for sid, title, frame in data.tables:
        parts.append((sid, title, _frame_table(frame), ""))
    for sid, title, why in data.absent:
        parts.append((sid, title, f'<p class="muted">{esc(why)}</p>', ""))
    notes = dict(data.notes)
    return [
        (s, t, c, "; ".join(x for x in (n, esc(notes.get(s, ""))) if x)) for s, t, c, n in parts
    ]


def facts_html(data: ResearchPage) -> str:
    """The subtitle and the facts table (the header of the stand-alone page)."""
    facts = kv_table([(k, esc(v)) for k, v in data.facts]) if data.facts else ""
    return f'<p class="muted">{esc(data.subtitle)}</p>{facts}'


def render_research(data: ResearchPage) -> str:
    """The research page as one self-contained HTML document."""
    charts = ChartSet()
    parts = research_sections(data, charts)
    header = f"<h1>{esc(data.title)}</h1>{facts_html(data)}"
    body = toc((s, t) for s, t, _, _ in parts) + "".join(
        section(s, t, c, n) for s, t, c, n in parts
    )
    return page(data.title, header, body, charts.script())
