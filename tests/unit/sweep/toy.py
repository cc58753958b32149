"""A toy evaluator for orchestration tests: instant, deterministic metrics from the params and
the panel, so chunking, resume and engines are tested without the backtest's cost.

``build_panel``/``evaluate_chunk`` have the signature of ``qpipe.backtest.batch``. A trial with
``skip >= lookback`` is a failed row, as in the real evaluator. Set
``QPIPE_TOY_SLEEP`` (seconds per trial) to make a sweep slow enough to interrupt.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from qpipe.store import ArrowStore, DatasetRef


def build_panel(prices_ref: DatasetRef, store: ArrowStore) -> DatasetRef:
    return prices_ref


def evaluate_chunk(
    panel: DatasetRef,
    base_config: dict[str, Any],
    trials: Sequence[tuple[int, dict[str, Any]]],
    store_root: str,
) -> pa.Table:
    closes = ArrowStore(store_root).open(panel)["close"]
    level = float(closes.mean())
    pause = float(os.environ.get("QPIPE_TOY_SLEEP", "0"))
    rows = []
    for index, params in trials:
        start = time.perf_counter()
        data = {s: dict(t) for s, t in base_config.items()}
        for key, value in params.items():
            section, name = key.split(".")
            data[section][name] = value
        row: dict[str, Any] = {"trial": index, **params}
        s, a, b = data["strategy"], data["allocation"], data["backtest"]
        if s["skip"] >= s["lookback"]:  # the config's own rule, checked cheaply
            msg = f"`strategy.skip` ({s['skip']}) must be < `strategy.lookback` ({s['lookback']})"
            row.update(status="failed", error=msg)
        else:
            x = s["lookback"] / 100 + a["top_n"] / 7 - b["cost_bps"] / 50
            row.update(
                sharpe=math.sin(x) + level / 1e3,
                cagr=x / 10,
                max_drawdown=-abs(math.cos(x)),
                n_rebalances=float(a["top_n"]),
                status="ok",
                error=None,
            )
        time.sleep(pause)
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
    names = list(dict.fromkeys(k for r in rows for k in r))
    return pa.Table.from_pylist([{k: r.get(k) for k in names} for r in rows])
