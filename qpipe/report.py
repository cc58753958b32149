"""Moved to :mod:`qpipe.views`; this name stays so 0.1 imports keep working.

``from qpipe.report import format_metric, render_report, render_sweep`` still works. The
terminal summary table moved to ``qpipe.cli.tables``.
"""

from __future__ import annotations

from qpipe.views import (
    EM_DASH,
    METRIC_LABELS,
    SUMMARY_METRICS,
    ReportInputs,
    format_metric,
    render_report,
    render_run_page,
    render_sweep,
)

__all__ = [
    "EM_DASH",
    "METRIC_LABELS",
    "SUMMARY_METRICS",
    "ReportInputs",
    "format_metric",
    "render_report",
    "render_run_page",
    "render_sweep",
]
