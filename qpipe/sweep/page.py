"""``sweep.html``: the views helper draws it; this module hands it the table and the links."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from qpipe._fs import write_bytes_atomic
from qpipe.errors import QpipeError
from qpipe.sweep.resume import SweepFolder

__all__ = ["write_page"]


def write_page(
    folder: SweepFolder, summary: pl.DataFrame, params: Sequence[str], metric: str
) -> bool:
    """Write ``sweep.html`` atomically; False when it cannot be drawn (e.g. no trial has the
    metric: the table is still in ``summary.arrow``).

    A promoted trial (``sweep.json``'s ``promoted``) gets a ``run_id``, so its row links to its
    report; the others show the ``sweep promote`` command.
    """
    from qpipe.views import render_sweep

    promoted = {int(k): v for k, v in folder.manifest().get("promoted", {}).items()}
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
        )
    except QpipeError:
        return False
    write_bytes_atomic(folder.path / "sweep.html", html.encode("utf-8"))
    return True
