"""The accounting of many trials over one panel, and their metrics, one trial at a time.

:class:`TrialSim` reads a trial's ``[backtest]`` keys and checks them as
:func:`~qpipe.backtest.simulate` does; :func:`simulate_trials` runs the trials that share one
set of dense target weights and yields each trial's outcome (metrics, status, error, seconds).
The window, delisting rows and execution rows are derived from the panel exactly as
``simulate`` derives them from long frames, so the kernel sees the same inputs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np

from qpipe.backtest._batch_kernel import run_many
from qpipe.backtest._kernel import run_kernel
from qpipe.backtest.accounting import _check_finite, _check_rate, _day_number
from qpipe.backtest.batch_config import TrialConfig
from qpipe.backtest.metrics import metrics_from_arrays
from qpipe.backtest.panel import Panel
from qpipe.conventions import PERIODS_PER_YEAR
from qpipe.errors import BacktestError, QpipeError

__all__ = ["BATCH", "TrialSim", "simulate_trials", "trial_equity"]

# Trials per run_many call: their daily arrays (4 x 8 bytes x dates each) are alive together.
BATCH = 64


def _iso(name: str, value: str) -> date | None:
    """``backtest.start``/``end`` as the backtest stage reads them (``""`` = unbounded)."""
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        msg = f"`backtest.{name}` must be an ISO date (YYYY-MM-DD) or empty, got {value!r}"
        raise BacktestError(msg) from None


@dataclass
class TrialSim:
    """One trial's backtest settings, checked (the errors ``simulate`` would raise)."""

    pos: int
    cfg: TrialConfig
    capital: float = field(init=False)
    c: float = field(init=False)
    slip: float = field(init=False)
    borrow_d: float = field(init=False)
    cash_d: float = field(init=False)
    use_open: bool = field(init=False)

    def __post_init__(self) -> None:
        b = self.cfg.backtest
        self.capital = float(b.initial_capital)
        self.c = _check_rate("cost_bps", b.cost_bps, 0.0, 10_000.0) / 1e4
        self.slip = _check_rate("slippage_bps", b.slippage_bps, 0.0, 10_000.0) / 1e4
        self.borrow_d = (
            _check_rate("borrow_bps", b.borrow_bps, 0.0, 10_000.0) / 1e4 / PERIODS_PER_YEAR
        )
        self.cash_d = _check_rate("cash_rate", b.cash_rate, -1.0, 100.0) / PERIODS_PER_YEAR
        self.use_open = b.execution == "next_open"

    def window(self, days: np.ndarray) -> tuple[int, int]:
        """Panel rows ``[a, b)`` of the backtest window (``simulate``'s ``win``)."""
        start = _iso("start", self.cfg.backtest.start)
        end = _iso("end", self.cfg.backtest.end)
        lo = days[0] if start is None else max(days[0], _day_number(start))
        hi = days[-1] if end is None else min(days[-1], _day_number(end))
        a = int(np.searchsorted(days, lo, side="left"))
        b = int(np.searchsorted(days, hi, side="right"))
        if a >= b:
            msg = f"no price dates between `start` {start} and `end` {end}"
            raise BacktestError(msg)
        return a, b


def _dead_from(panel: Panel, a: int, b: int) -> np.ndarray:
    """First window row after each symbol's last price (the window length if it never ends)."""
    n_win = b - a
    dead = np.clip(panel.last_row + 1 - a, 0, n_win).astype(np.int64)
    dead[panel.last_row >= panel.days.size - 1] = n_win
    return dead


def _exec_rows(reb_rows: np.ndarray, a: int, b: int, use_open: bool) -> tuple[np.ndarray, Any]:
    """``exec_row`` of the window and which weight rows fall in it."""
    sel = (reb_rows >= a) & (reb_rows < b)
    row_of = np.full(b - a, -1, np.int64)
    row_of[reb_rows[sel] - a] = np.arange(int(sel.sum()))
    if not use_open:
        return row_of, sel
    exec_row = np.full(b - a, -1, np.int64)
    exec_row[1:] = row_of[:-1]  # weights of date t trade at the open of the next date
    return exec_row, sel


def _metrics(
    sim: TrialSim, panel: Panel, a: int, b: int, daily: tuple[np.ndarray, ...], n_reb: int
) -> dict[str, Any]:
    equity, turnover, cost, gross = daily
    prev = np.concatenate(([sim.capital], equity[:-1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        ret = np.where(prev > 0, equity / prev - 1.0, np.nan)
        gross_x = np.where(equity > 0, gross / equity, np.nan)
    has_r = ~np.isnan(ret)
    both = has_r & panel.bench_has[a:b]
    values = metrics_from_arrays(
        equity,
        ret[has_r],
        turnover,
        cost,
        initial_capital=sim.cfg.backtest.initial_capital,
        n_rebalances=n_reb,
        exposure=gross_x[~np.isnan(gross_x)],
        aligned_returns=ret[both],
        aligned_benchmark=panel.bench_return[a:b][both],
    )
    # as metrics.json: non-finite is null, counts are ints
    return {k: (None if v is None or not math.isfinite(v) else v) for k, v in values.items()}


def _run(
    panel: Panel, reb_rows: np.ndarray, wmat: np.ndarray, sim: TrialSim
) -> tuple[int, int, np.ndarray, tuple[np.ndarray, ...]]:
    """``run_kernel`` over the trial's window: ``(a, b, sel, kernel outputs)``."""
    a, b = sim.window(panel.days)
    if sim.use_open and panel.open is None:
        msg = "execution `next_open` needs an `open` column in the prices frame"
        raise BacktestError(msg)
    exec_row, sel = _exec_rows(reb_rows, a, b, sim.use_open)
    weights = np.ascontiguousarray(wmat[sel])
    open_ = panel.open[a:b] if sim.use_open and panel.open is not None else np.empty((0, 0))
    out = run_kernel(
        panel.close[a:b],
        open_,
        sim.use_open,
        weights,
        exec_row,
        _dead_from(panel, a, b),
        sim.capital,
        sim.c,
        sim.slip,
        sim.borrow_d,
        sim.cash_d,
    )
    equity, cash = out[0], out[1]
    t_day, t_sym, t_shares = out[8:11]
    _check_finite(equity, cash, t_day, t_sym, t_shares, panel.days[a:b], panel.symbols)
    return a, b, sel, out


def _one(panel: Panel, reb_rows: np.ndarray, wmat: np.ndarray, sim: TrialSim) -> dict[str, Any]:
    a, b, sel, out = _run(panel, reb_rows, wmat, sim)
    equity, _cash, turnover, cost, _unfilled, gross, _net, ruined = out[:8]
    n_reb = int((~ruined[reb_rows[sel] - a]).sum())
    return _metrics(sim, panel, a, b, (equity, turnover, cost, gross), n_reb)


def trial_equity(
    panel: Panel, reb_rows: np.ndarray, wmat: np.ndarray, cfg: TrialConfig
) -> tuple[int, np.ndarray]:
    """One trial's end-of-day equity over its window: ``(first panel row, equity)``.

    The accounting of a metrics row (``run_many`` for the fast convention, as a sweep runs
    it, else ``run_kernel``); research reads the daily curve (CPCV, PBO, the DSR of a trial).
    """
    sim = TrialSim(-1, cfg)
    if _fast(sim):
        a, b = sim.window(panel.days)
        exec_row, sel = _exec_rows(reb_rows, a, b, False)
        equity, *_, bad = run_many(
            panel.close[a:b],
            panel.last_close[a:b],
            np.ascontiguousarray(wmat[sel]),
            exec_row,
            _dead_from(panel, a, b),
            np.array([sim.capital]),
            np.array([sim.c]),
            np.array([sim.slip]),
        )
        if not bad[0] and np.isfinite(equity[0]).all():
            return a, equity[0]
    a, _b, _sel, out = _run(panel, reb_rows, wmat, sim)  # raises the exact error if any
    return a, out[0]


def _outcome(metrics: dict[str, Any] | None, exc: QpipeError | None = None) -> dict[str, Any]:
    if exc is not None:
        error = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return {"metrics": {}, "status": "failed", "error": error}
    return {"metrics": metrics, "status": "ok", "error": None}


def _fast(sim: TrialSim) -> bool:
    """Whether :func:`run_many` covers the trial (close execution, no accruals)."""
    return not sim.use_open and sim.borrow_d == 0.0 and sim.cash_d == 0.0


def _run_batch(
    panel: Panel, reb_rows: np.ndarray, wmat: np.ndarray, sims: list[TrialSim], a: int, b: int
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Trials with one window and the fast convention, BATCH at a time through run_many."""
    exec_row, sel = _exec_rows(reb_rows, a, b, False)
    weights = np.ascontiguousarray(wmat[sel])
    dead = _dead_from(panel, a, b)
    reb_in = reb_rows[sel] - a
    close = panel.close[a:b]
    last = panel.last_close[a:b]
    for lo in range(0, len(sims), BATCH):
        part = sims[lo : lo + BATCH]
        t0 = time.perf_counter()
        equity, turnover, cost, gross, ruined, bad = run_many(
            close,
            last,
            weights,
            exec_row,
            dead,
            np.array([s.capital for s in part]),
            np.array([s.c for s in part]),
            np.array([s.slip for s in part]),
        )
        share = (time.perf_counter() - t0) / len(part)
        for k, sim in enumerate(part):
            t1 = time.perf_counter()
            try:
                if bad[k] or not np.isfinite(equity[k]).all():
                    _one(panel, reb_rows, wmat, sim)  # raises the exact overflow error
                daily = (equity[k], turnover[k], cost[k], gross[k])
                n_reb = int((~ruined[k, reb_in]).sum())
                outcome = _outcome(_metrics(sim, panel, a, b, daily, n_reb))
            except QpipeError as exc:
                outcome = _outcome(None, exc)
            outcome["seconds"] = share + time.perf_counter() - t1
            yield sim.pos, outcome


def simulate_trials(
    panel: Panel,
    reb_rows: np.ndarray,
    wmat: np.ndarray,
    trials: Sequence[tuple[int, TrialConfig]],
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each trial's outcome over the shared weights; a QpipeError fails only its trial.

    Trials with the common convention are batched per window through :func:`run_many`; the
    others (next-open execution, borrow cost, cash interest) run ``run_kernel`` one by one.
    Outcomes come in no particular order (the position says where each belongs).
    """
    fast: dict[tuple[int, int], list[TrialSim]] = {}
    for pos, cfg in trials:
        t0 = time.perf_counter()
        try:
            sim = TrialSim(pos, cfg)
            if _fast(sim):
                fast.setdefault(sim.window(panel.days), []).append(sim)
                continue
            outcome = _outcome(_one(panel, reb_rows, wmat, sim))
        except QpipeError as exc:
            outcome = _outcome(None, exc)
        outcome["seconds"] = time.perf_counter() - t0
        yield pos, outcome
    for (a, b), sims in fast.items():
        yield from _run_batch(panel, reb_rows, wmat, sims, a, b)
