"""The sweep page (``sweep.html``): heatmaps per parameter pair, a sortable top-N, the spread.

Each trial links to its own report when it has a run (``../../<run_id>/report.html``, relative
to ``<out>/sweeps/<sweep_id>/``); a trial without one shows the command that promotes it.
"""

from __future__ import annotations

import itertools
import math
import shlex
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from qpipe.errors import ConfigError
from qpipe.views import analytics as an
from qpipe.views.charts import STRATEGY, Chart, ChartSet, Series, YKind
from qpipe.views.format import EM_DASH, LOWER_IS_BETTER, PERCENT, esc, format_metric, label
from qpipe.views.html import page, section, signed_cell, toc
from qpipe.views.research import ResearchPage, research_sections

__all__ = ["render_sweep", "variance_explained"]

MAX_PAIRS = 6  # more parameters than 4: the pairs of the most explanatory ones only

_SORT_JS = """<script>
document.querySelectorAll("table.sortable").forEach(function (t) {
  t.querySelectorAll("th[data-sort]").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = t.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var dir = th.getAttribute("data-dir") === "asc" ? -1 : 1;
      th.setAttribute("data-dir", dir === 1 ? "asc" : "desc");
      var idx = th.cellIndex, numeric = th.getAttribute("data-sort") === "num";
      rows.sort(function (a, b) {
        var x = a.cells[idx].getAttribute("data-v"), y = b.cells[idx].getAttribute("data-v");
        if (numeric) { x = x === "" ? NaN : +x; y = y === "" ? NaN : +y;
          if (isNaN(x)) return 1; if (isNaN(y)) return -1; return dir * (x - y); }
        return dir * String(x).localeCompare(String(y));
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
</script>
"""


def variance_explained(frame: pl.DataFrame, metric: str, param: str) -> float:
    """Share of the metric's variance explained by one parameter's levels (eta squared)."""
    data = (
        frame.select(param, pl.col(metric).cast(pl.Float64))
        .drop_nulls()
        .filter(pl.col(metric).is_finite())
    )
    if data.height < 2:
        return 0.0
    total = float(data.select(((pl.col(metric) - pl.col(metric).mean()) ** 2).sum()).item())
    if total <= 0:
        return 0.0
    mean = float(data.get_column(metric).mean())  # type: ignore[arg-type]
    groups = data.group_by(param).agg(pl.len().alias("n"), pl.col(metric).mean().alias("m"))
    between = float(groups.select((pl.col("n") * (pl.col("m") - mean) ** 2).sum()).item())
    return between / total


def _pairs(frame: pl.DataFrame, metric: str, params: Sequence[str]) -> list[tuple[str, str]]:
    varied = [p for p in params if frame.get_column(p).n_unique() > 1] or list(params)
    if len(varied) > 4:
        varied = sorted(varied, key=lambda p: -variance_explained(frame, metric, p))[:4]
        varied = [p for p in params if p in varied]
    return list(itertools.combinations(varied, 2))[:MAX_PAIRS]


def _heatmap(frame: pl.DataFrame, metric: str, rows: str, cols: str) -> str:
    """One cell per (row, col) value; the best value wins when other parameters vary too."""
    lower = metric in LOWER_IS_BETTER
    row_vals = frame.get_column(rows).unique().sort().to_list()
    col_vals = frame.get_column(cols).unique().sort().to_list()
    cells: dict[tuple[Any, Any], float] = {}
    for r, c, v in frame.select(rows, cols, metric).iter_rows():
        if v is None or not math.isfinite(v) or (r, c) in cells:
            continue  # frame is sorted best first, so the first finite value is the best
        cells[(r, c)] = float(v)
    values = list(cells.values())
    lo, hi = (min(values), max(values)) if values else (0.0, 0.0)
    best = lo if lower else hi
    head = "".join(f"<th>{esc(c)}</th>" for c in col_vals)
    body = []
    for r in row_vals:
        tds = []
        for c in col_vals:
            v = cells.get((r, c))
            if v is None:
                tds.append('<td class="num"></td>')
                continue
            t = 0.5 if hi == lo else (v - lo) / (hi - lo)
            t = 1.0 - t if lower else t  # darker is better, whichever direction is better
            tds.append(signed_cell(0.05 + 0.95 * t, format_metric(metric, v), best=v == best))
        body.append(f"<tr><th>{esc(r)}</th>{''.join(tds)}</tr>")
    return (
        f'<div class="scroll"><table class="heatmap"><thead><tr><th class="corner">{esc(rows)} ↓ '
        f"/ {esc(cols)} →</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _param_chart(charts: ChartSet, frame: pl.DataFrame, metric: str, param: str) -> str:
    data = frame.select(param, pl.col(metric).cast(pl.Float64)).sort(param)
    xs = data.get_column(param)
    ys = an.to_np(data, metric)
    y: YKind = "pct" if metric in PERCENT else "num"
    empty = "" if np.isfinite(ys).any() else "no data"
    if xs.dtype.is_numeric():
        x = charts.add_x("param", xs.cast(pl.Float64).to_numpy())
        series = (Series(label(metric), ys, STRATEGY, kind="points"),)
        return charts.div(Chart("chart-by-parameter", param, x, series, y, "num", xlabel=param,
                                empty=empty))  # fmt: skip
    x = charts.add_x("param", np.arange(xs.len(), dtype=float))
    series = (Series(label(metric), np.nan_to_num(ys), STRATEGY, kind="bars"),)
    cats = tuple(str(v) for v in xs.to_list())
    return charts.div(Chart("chart-by-parameter", param, x, series, y, "cat", categories=cats,
                            xlabel=param, empty=empty))  # fmt: skip


def _distribution(charts: ChartSet, frame: pl.DataFrame, metric: str) -> str:
    values = an.to_np(frame, metric)
    centres, counts = an.histogram(values, bins=min(40, max(5, int(np.isfinite(values).sum()))))
    x = charts.add_x("metric-bins", centres)
    series = (Series("trials", counts, STRATEGY, kind="bars", size=0.9),)
    return charts.div(Chart("chart-ranking-distribution", label(metric), x, series, "num", "num",
                            xlabel=metric, xpct=metric in PERCENT, height=200,
                            empty="" if centres.size else "no finite values"))  # fmt: skip


def _link(row: dict[str, Any], sweep_id: str | None) -> str:
    run_id, status = row.get("run_id"), row.get("status")
    if run_id and status in (None, "ok"):
        href = f"../../{run_id}/report.html"
        return f'<a href="{esc(href)}">report</a>'
    if sweep_id and row.get("trial") is not None and status in (None, "ok"):
        cmd = f"python -m qpipe sweep promote {shlex.quote(sweep_id)} {row['trial']}"
        return f"<code>{esc(cmd)}</code>"
    return EM_DASH


def _table(frame: pl.DataFrame, metric: str, params: Sequence[str], sweep_id: str | None,
           top: int) -> str:  # fmt: skip
    lead = [c for c in ("trial",) if c in frame.columns]
    rest = [c for c in frame.columns if c not in {metric, *params, *lead, "run_id"}]
    columns = [*lead, *params, metric, *rest]
    numeric = {c for c in columns if c not in params and frame.schema[c].is_numeric()}
    head = (
        '<th class="num" data-sort="num">#</th>'
        + "".join(
            f'<th class="num" data-sort="num">{esc(c)}</th>'
            if c in numeric
            else f'<th data-sort="text">{esc(c)}</th>'
            for c in columns
        )
        + "<th>report</th>"
    )
    rows = []
    for i, row in enumerate(frame.head(top).iter_rows(named=True), start=1):
        tds = [f'<td class="num" data-v="{i}">{i}</td>']
        for c in columns:
            v = row[c]
            raw = "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else v
            text = (
                format_metric(c, v)
                if c in numeric and c != "trial"
                else (EM_DASH if v is None else str(v))
            )
            cls = "num key" if c == metric else ("num" if c in numeric else "")
            tds.append(f'<td class="{cls}" data-v="{esc(raw)}">{esc(text)}</td>')
        tds.append(f"<td>{_link(row, sweep_id)}</td>")
        rows.append(f"<tr>{''.join(tds)}</tr>")
    return (
        f'<div class="scroll"><table class="sweep sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )  # fmt: skip


def render_sweep(
    summary: pl.DataFrame,
    *,
    metric: str,
    params: list[str],
    title: str,
    sweep_id: str | None = None,
    top: int = 100,
    research: ResearchPage | None = None,
) -> str:
    """Render the self-contained HTML page of a parameter sweep.

    ``summary`` has one row per trial: the ``params`` columns, metric columns and optionally
    ``trial``, ``run_id`` and ``status``. The trials are ranked best first by ``metric``
    (descending; ascending for ``ann_vol``, ``tracking_error``, ``total_cost``,
    ``turnover_ann``), nulls last, ties by parameters. Raises :class:`ConfigError` if ``metric``
    or a parameter is not a column. ``research``: the trial-aware statistics of the sweep's best
    trial (verdict, DSR with N and SR0, PBO, MinTRL, the sweeps counted in N), shown before
    the trials table.
    """
    missing = [c for c in [metric, *params] if c not in summary.columns]
    if missing:
        msg = (
            f"sweep summary lacks column(s) {', '.join(f'`{c}`' for c in missing)} "
            f"(columns: {', '.join(summary.columns)})"
        )
        raise ConfigError(msg)
    lower = metric in LOWER_IS_BETTER
    frame = summary.with_columns(pl.col(metric).cast(pl.Float64).fill_nan(None).alias("_key"))
    frame = frame.sort(
        ["_key", *params], descending=[not lower] + [False] * len(params), nulls_last=True
    ).drop("_key")
    charts = ChartSet()
    sections = [("ranking-distribution", f"Distribution of {label(metric)}",
                 _distribution(charts, frame, metric))]  # fmt: skip
    if len(params) == 1:
        sections.append(("by-parameter", f"{label(metric)} by {params[0]}",
                         _param_chart(charts, frame, metric, params[0])))  # fmt: skip
    pairs = _pairs(frame, metric, params) if len(params) >= 2 else []
    if pairs:
        maps = "".join(f"<h3>{esc(a)} × {esc(b)}</h3>{_heatmap(frame, metric, a, b)}"
                       for a, b in pairs)  # fmt: skip
        sections.append(("heatmaps", f"{label(metric)} heatmaps", maps))
    order = "ascending (lower is better)" if lower else "descending (higher is better)"
    shown = f"top {min(top, frame.height):,} of {frame.height:,}"
    extra = research_sections(research, charts) if research is not None else []
    sections.extend((s, t, c) for s, t, c, _ in extra)
    sections.append(("trials", "Trials", _table(frame, metric, params, sweep_id, top)))
    notes = {
        **{s: n for s, _, _, n in extra},
        "heatmaps": "Rows: first parameter, columns: second; darker is better, the best cell is "
        "outlined; when other parameters vary too, a cell shows the best value for its pair.",
        "trials": f"{shown}, sorted by <code>{esc(metric)}</code>, {order}; click a header to "
        "sort. A trial links to its report once it has a run.",
    }
    body = toc((s, t) for s, t, _ in sections) + "".join(
        section(s, t, c, notes.get(s, "")) for s, t, c in sections
    )
    header = (
        f'<h1>{esc(title)}</h1><div class="meta">{frame.height:,} trials · '
        f"parameters {', '.join(f'<code>{esc(p)}</code>' for p in params) or EM_DASH} · "
        f"ranked by <code>{esc(metric)}</code></div>"
    )
    return page(title, header, body, charts.script() + _SORT_JS)
