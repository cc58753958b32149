"""Batched sweep evaluation: many parameter sets over one shared price panel, as table rows.

:func:`evaluate_chunk` is what a sweep task runs. It receives a :class:`PanelRef` (the panel is
pivoted once per sweep by :func:`build_panel`), the base config as a dict and a list of trials
``(trial_index, {"section.key": value})``, and returns one Arrow row per trial: the trial index,
each parameter, every metric of ``metrics.json``, ``status``, ``error`` and ``seconds``.

How it gets its speed without changing a number:

1. Trials are grouped by signal set (:class:`~qpipe.backtest.batch_config.TrialConfig`): the
   features and signal stages run once per group, on the same prices a run reads.
2. Within a group, target weights are computed once per weight set and shared by the trials
   that differ only in backtest keys (costs, window, ...).
3. Each trial's accounting runs the compiled kernel over the panel's memory-mapped close matrix
   (the same convention and operation order as :func:`~qpipe.backtest.simulate`).
4. Metrics come from :func:`~qpipe.backtest.metrics.metrics_from_arrays`, the implementation
   ``metrics.json`` uses, so a trial's row equals the promoted run's metrics exactly. Only one
   trial's daily arrays are alive at a time.

A trial whose config is invalid, or whose backtest fails for a data reason (a
:class:`~qpipe.errors.QpipeError`), becomes a ``failed`` row with a one-line error.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import polars as pl
import pyarrow as pa

from qpipe.backtest.batch_config import ConfigBuilder, TrialConfig
from qpipe.backtest.batch_sim import simulate_trials
from qpipe.backtest.batch_weights import SignalSet
from qpipe.backtest.metrics import METRIC_NAMES
from qpipe.backtest.panel import Panel, PanelRef, build_panel, open_panel
from qpipe.errors import BacktestError, ConfigError, QpipeError
from qpipe.store import ArrowStore

__all__ = ["PanelRef", "build_panel", "evaluate_chunk", "result_schema"]

Trial = tuple[int, dict[str, Any]]


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _check_universe(cfg: TrialConfig, panel: Panel) -> None:
    """The run's own limit: ``top_n`` cannot exceed the number of symbols."""
    a, n = cfg.allocation, panel.shape[1]
    if a.scheme in ("top_n", "inverse_vol") and a.top_n > n:
        msg = (
            f"`allocation.top_n` ({a.top_n}) is larger than the universe: the prices have "
            f"{n} symbols; set `allocation.top_n` to at most {n}"
        )
        raise ConfigError(msg)


def _param_type(values: list[Any]) -> pa.DataType:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pa.bool_()
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.int64()
    if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return pa.float64()
    return pa.string()


def _param_column(values: list[Any], kind: pa.DataType) -> pa.Array:
    if kind == pa.float64():
        return pa.array([None if v is None else float(v) for v in values], kind)
    if kind == pa.string():
        return pa.array([None if v is None else str(v) for v in values], kind)
    return pa.array(values, kind)


def result_schema(param_types: Sequence[tuple[str, pa.DataType]]) -> pa.Schema:
    """The chunk table's schema for the given (parameter, type) columns."""
    fields = [pa.field("trial", pa.int64())]
    fields += [pa.field(k, t) for k, t in param_types]
    fields += [
        pa.field(m, pa.int64() if m == "n_rebalances" else pa.float64()) for m in METRIC_NAMES
    ]
    fields += [
        pa.field("status", pa.string()),
        pa.field("error", pa.string()),
        pa.field("seconds", pa.float64()),
    ]
    return pa.schema(fields)


def _table(trials: Sequence[Trial], rows: list[dict[str, Any]]) -> pa.Table:
    keys = list(dict.fromkeys(k for _, params in trials for k in params))
    types = [(k, _param_type([p.get(k) for _, p in trials])) for k in keys]
    schema = result_schema(types)
    columns: list[pa.Array] = [pa.array([i for i, _ in trials], pa.int64())]
    columns += [_param_column([p.get(k) for _, p in trials], t) for k, t in types]
    for m in METRIC_NAMES:
        columns.append(pa.array([r["metrics"].get(m) for r in rows], schema.field(m).type))
    columns.append(pa.array([r["status"] for r in rows], pa.string()))
    columns.append(pa.array([r["error"] for r in rows], pa.string()))
    columns.append(pa.array([r["seconds"] for r in rows], pa.float64()))
    return pa.Table.from_arrays(columns, schema=schema)


def _groups(configs: dict[int, TrialConfig]) -> dict[str, dict[str, list[int]]]:
    """Positions grouped by signal set, then by weight set, in order of first appearance."""
    groups: dict[str, dict[str, list[int]]] = {}
    for pos, cfg in configs.items():
        groups.setdefault(cfg.signal_key, {}).setdefault(cfg.weights_key, []).append(pos)
    return groups


def _failed(error: str, seconds: float = 0.0) -> dict[str, Any]:
    return {"metrics": {}, "status": "failed", "error": error, "seconds": seconds}


def _run_group(
    positions_by_weights: dict[str, list[int]],
    configs: dict[int, TrialConfig],
    prices: pl.DataFrame,
    panel: Panel,
    rows: list[dict[str, Any]],
) -> None:
    """One signal set: its signals once, weights once per weight set, then the trials."""
    t0 = time.perf_counter()
    n_trials = sum(len(p) for p in positions_by_weights.values())
    first = configs[next(iter(positions_by_weights.values()))[0]]
    try:
        signals = SignalSet(first, prices, panel)
    except QpipeError as exc:
        share = (time.perf_counter() - t0) / n_trials
        for positions in positions_by_weights.values():
            for pos in positions:
                rows[pos] = _failed(_first_line(exc), share)
        return
    shared = (time.perf_counter() - t0) / n_trials
    for positions in positions_by_weights.values():
        t1 = time.perf_counter()
        try:
            reb_rows, wmat = signals.weights(configs[positions[0]])
        except QpipeError as exc:
            share = shared + (time.perf_counter() - t1) / len(positions)
            for pos in positions:
                rows[pos] = _failed(_first_line(exc), share)
            continue
        share = shared + (time.perf_counter() - t1) / len(positions)
        trials = [(pos, configs[pos]) for pos in positions]
        for pos, outcome in simulate_trials(panel, reb_rows, wmat, trials):
            outcome["seconds"] += share
            rows[pos] = outcome


def evaluate_chunk(
    panel: PanelRef,
    base_config: dict[str, Any],
    trials: Sequence[tuple[int, dict[str, Any]]],
    store_root: str,
) -> pa.Table:
    """Evaluate ``trials`` over ``panel``; one row per trial, in the given order.

    Parameters
    ----------
    panel
        The sweep's price panel (:func:`build_panel`).
    base_config
        ``ThreadSafeConfig.to_dict()`` of the sweep's base config.
    trials
        ``(trial_index, {"section.key": value, ...})``; each overrides ``base_config``.
    store_root
        The store holding the panel (its entries are memory-mapped, not copied).

    Returns
    -------
    pyarrow.Table
        ``trial`` (int64), one column per parameter key (int64, float64, string or bool), every
        metric of ``metrics.json`` (``n_rebalances`` int64, the others float64; null where the
        run writes null), ``status`` (``ok``/``failed``), ``error`` (null when ok), ``seconds``.
        Deterministic except ``seconds``.

    Raises
    ------
    BacktestError
        For the whole chunk: ``data.benchmark`` is set but the panel was built without the
        benchmark prices (every trial's benchmark metrics would be wrong).
    """
    if base_config.get("data", {}).get("benchmark") and panel.benchmark_prices is None:
        msg = (
            "`data.benchmark` is set but the sweep's price panel has no benchmark prices: "
            "build it with build_panel(prices_ref, store, benchmark_ref)"
        )
        raise BacktestError(msg)
    store = ArrowStore(store_root)
    opened = open_panel(panel, store)
    prices = store.open(panel.prices)
    rows: list[dict[str, Any]] = [{} for _ in trials]
    configs: dict[int, TrialConfig] = {}
    builder = ConfigBuilder(base_config)
    for pos, (_, params) in enumerate(trials):
        t0 = time.perf_counter()
        try:
            cfg = builder.get(params)
            _check_universe(cfg, opened)
            configs[pos] = cfg
        except QpipeError as exc:
            rows[pos] = _failed(_first_line(exc), time.perf_counter() - t0)
    for by_weights in _groups(configs).values():
        _run_group(by_weights, configs, prices, opened, rows)
    return _table(trials, rows)
