"""``sweep.html``: the views helper draws it; this module hands it the table, the links and the
trial-aware statistics of the sweep's best trial.

At the end of a finished sweep :func:`judge` computes the statistics as ``python -m qpipe stats
SWEEP_ID`` does (N from the ledger, SR0, the DSR and MinTRL of the best trial, the PBO up to
:data:`~qpipe.research.sweep_stats.PBO_LIMIT` finished trials), records ``trial_stats`` and keeps
them in the manifest (``stats``; the PBO's halvings in ``pbo.arrow``), so every later drawing
of the page (after a ``sweep promote``) shows them too. When they cannot be computed the page
says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from qpipe._fs import write_bytes_atomic
from qpipe.errors import QpipeError
from qpipe.sweep.resume import SweepFolder
from qpipe.sweep.task import DEFAULT_EVALUATOR

__all__ = ["judge", "write_page"]


def judge(
    folder: SweepFolder,
    ledger: Path,
    store: Path,
    evaluator: str,
    summary: pl.DataFrame,
    params: Sequence[str],
    metric: str,
) -> str:
    """Judge the finished sweep's best trial, keep the result in the manifest, draw
    ``sweep.html`` with it; return the one-line verdict (``DSR 0.41 with N = 240 trials:
    ...``, or ``DSR not computed: why``). A sweep whose statistics cannot be computed is not
    an error: the page says why."""
    line = _judge(folder, ledger, store, evaluator)
    write_page(folder, summary, params, metric)
    return line


def _judge(folder: SweepFolder, ledger: Path, store: Path, evaluator: str) -> str:
    from qpipe.research.sweep_stats import judge_sweep, save_stats

    manifest = folder.manifest()
    if evaluator != DEFAULT_EVALUATOR:
        why = (
            f"the sweep's evaluator `{evaluator}` is not the batched backtest `{DEFAULT_EVALUATOR}`"
        )
        folder.write_manifest({**manifest, "stats": {"why": why}})
        return f"DSR not computed: {why}"
    try:
        stats = judge_sweep(folder.sweep_id, ledger, store)
    except QpipeError as exc:
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        folder.write_manifest({**manifest, "stats": {"why": why}})
        return f"DSR not computed: {why}"
    folder.write_manifest({**manifest, "stats": save_stats(stats, folder.path)})
    return stats.line


def _research(folder: SweepFolder, manifest: dict[str, Any]) -> Any:
    """The page's research sections from the manifest's ``stats`` (None before a judgement)."""
    from qpipe.research.pages import sweep_not_judged, sweep_research
    from qpipe.research.sweep_stats import load_stats

    data = manifest.get("stats")
    if not isinstance(data, dict):
        return None
    if "why" in data:
        return sweep_not_judged(folder.sweep_id, str(data["why"]))
    try:
        return sweep_research(load_stats(folder.sweep_id, data, folder.path))
    except (OSError, KeyError, TypeError, ValueError) as exc:
        return sweep_not_judged(folder.sweep_id, f"the kept statistics cannot be read: {exc}")


def write_page(
    folder: SweepFolder, summary: pl.DataFrame, params: Sequence[str], metric: str
) -> bool:
    """Write ``sweep.html`` atomically; False when it cannot be drawn (e.g. no trial has the
    metric: the table is still in ``summary.arrow``).

    A promoted trial (``sweep.json``'s ``promoted``) gets a ``run_id``, so its row links to its
    report; the others show the ``sweep promote`` command.
    """
    from qpipe.views import render_sweep

    manifest = folder.manifest()
    promoted = {int(k): v for k, v in manifest.get("promoted", {}).items()}
    frame = summary.with_columns(
        pl.col("trial")
        .replace_strict(promoted, default=None, return_dtype=pl.String)
        .alias("run_id")
    )
    try:
        html = render_sweep(
            frame,
            metric=metric,
            params=list(params),
            title=f"sweep {folder.sweep_id}",
            sweep_id=folder.sweep_id,
            research=_research(folder, manifest),
        )
    except QpipeError:
        return False
    write_bytes_atomic(folder.path / "sweep.html", html.encode("utf-8"))
    return True
