"""Pages a person opens after a run or a sweep: ``report.html`` and ``sweep.html``.

* :func:`render_run_page` (from :class:`ReportInputs`) is the run report; :func:`render_report` is
  the 0.1 keyword interface to it.
* :func:`render_sweep` is the sweep page.
* :func:`format_metric` is the one place a metric value becomes text (the CLI uses it too).

Charts are drawn in the browser by uPlot (vendored, MIT) from data inlined in the page; the pages
load nothing from the network. See docs/report.md.
"""

from __future__ import annotations

from qpipe.views.format import EM_DASH, METRIC_LABELS, SUMMARY_METRICS, format_metric
from qpipe.views.provenance import from_records
from qpipe.views.run_page import ReportInputs, render_report, render_run_page
from qpipe.views.sweep_page import render_sweep

__all__ = [
    "EM_DASH",
    "METRIC_LABELS",
    "SUMMARY_METRICS",
    "ReportInputs",
    "format_metric",
    "from_records",
    "render_report",
    "render_run_page",
    "render_sweep",
]
