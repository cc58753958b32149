"""A stand-in evaluator for sweep tests: each trial is the single-run path (strategy and
backtest stages on a local engine), without a run folder or ledger records.

Slow but obviously right; it has the signature of ``qpipe.backtest.batch`` (``build_panel``,
``evaluate_chunk``) so the orchestration can be tested on its own. The panel is the prices'
stored ref.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from qpipe.config import ThreadSafeConfig
from qpipe.context import RunContext
from qpipe.engines.base import StepCache
from qpipe.engines.local import LocalEngine
from qpipe.errors import QpipeError
from qpipe.store import ArrowStore, DatasetRef


def build_panel(prices_ref: DatasetRef, store: ArrowStore) -> DatasetRef:
    return prices_ref


def _one(cfg: ThreadSafeConfig, ctx: RunContext, store: ArrowStore, cache: StepCache) -> dict:
    from qpipe.api import _backtest_pipeline, _json_number
    from qpipe.strategy import build_strategy

    engine = LocalEngine(threads=1)
    ctx = engine.run(build_strategy(cfg), ctx, store, cache=cache).context
    ctx = engine.run(_backtest_pipeline(cfg), ctx, store, cache=cache).context
    row = store.open(ctx["metrics"]).row(0, named=True)
    return {k: _json_number(k, v) for k, v in row.items()}


def evaluate_chunk(
    panel: DatasetRef,
    base_config: dict[str, Any],
    trials: Sequence[tuple[int, dict[str, Any]]],
    store_root: str,
) -> pa.Table:
    store = ArrowStore(store_root)
    ctx = RunContext({"prices": panel, "benchmark": panel})
    cache = StepCache()
    rows = []
    for index, params in trials:
        start = time.perf_counter()
        data = {s: dict(t) for s, t in base_config.items()}
        for key, value in params.items():
            section, name = key.split(".")
            data[section][name] = value
        row: dict[str, Any] = {"trial": index, **params}
        try:
            metrics = _one(ThreadSafeConfig.from_mapping(data), ctx, store, cache)
            row.update(metrics, status="ok", error=None)
        except QpipeError as exc:
            row.update(status="failed", error=str(exc).splitlines()[0])
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
    names = list(dict.fromkeys(k for r in rows for k in r))
    return pa.Table.from_pylist([{k: r.get(k) for k in names} for r in rows])
