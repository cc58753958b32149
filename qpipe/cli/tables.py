"""Rich tables the commands print (the library formats numbers; this module lays them out)."""

from __future__ import annotations

from collections.abc import Mapping

from rich import box
from rich.table import Table

__all__ = ["summary_table"]

_SIGNED = {"total_return", "cagr", "sharpe", "alpha_ann"}


def summary_table(metrics: Mapping[str, float | int | None], *, run_id: str, out_dir: str) -> Table:
    """The compact table the runner prints at the end of a run.

    Two metric/value column pairs; a missing metric shows as an em dash; the run folder is the
    caption so the user knows where the outputs are.
    """
    from qpipe.views import EM_DASH, METRIC_LABELS, SUMMARY_METRICS, format_metric

    table = Table(
        title=f"qpipe run {run_id}",
        # the report's headline starts at the first invested day (docs/report.md): say which
        caption=f"whole span (metrics.json); cost in units of capital\noutputs: {out_dir}",
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
        if key in _SIGNED and text != EM_DASH and value is not None:
            text = f"[green]{text}[/]" if float(value) > 0 else f"[red]{text}[/]"
        label = METRIC_LABELS.get(key, key.replace("_", " ").capitalize())
        cells.append((label, text))
    half = (len(cells) + 1) // 2
    for i in range(half):
        right = cells[i + half] if i + half < len(cells) else ("", "")
        table.add_row(*cells[i], *right)
    return table
