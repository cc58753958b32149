"""The accounting kernel for many trials that share one set of target weights (numba).

:func:`run_many` runs :func:`qpipe.backtest._kernel.run_kernel`'s convention (close execution,
no borrow cost, no cash interest: the common sweep) for ``K`` trials that differ in capital,
cost and slippage, over the same close matrix, weights and execution rows. It keeps the same
operation order, so each trial's daily values are the same floats ``run_kernel`` gives; what it
leaves out is work the metrics do not need:

- marks come from the panel's forward-filled close matrix ``last`` (each symbol's last known
  close on each date, which is exactly the kernel's running ``last``), so nothing is updated
  per symbol and day;
- only held symbols are valued on a non-rebalance day (their list, in ascending column order,
  with their shares packed beside it, is rebuilt after each day with fills), in one pass: with
  close execution and no fill that day, the pre-trade value V and the end-of-day equity are the
  same sum of the same terms in the same order, so it is computed once;
- symbols are only scanned on rebalance days (for the order book) and on days with fills;
- no trade log: each trial returns equity, turnover, cost and gross exposure per day, whether
  it was ruined on each day, and a flag if a traded share count or cash was not finite (the
  caller then re-runs that trial with ``run_kernel`` to raise the exact overflow error).

The per-trial loop is one sequential pass over the dates (like ``run_kernel``), which is why
this function is longer than the house limit: splitting it would cost a call per symbol-day.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from qpipe.backtest._kernel import FULL_FILL_RTOL

__all__ = ["momentum_scores", "run_many"]


@njit(cache=True)
def _rebuild_held(shares, dead_from, held, held_shares):  # pragma: no cover - compiled
    """Held symbols in ascending column order, their shares; return (count, first dead row)."""
    nh = 0
    first_dead = np.iinfo(np.int64).max
    for s in range(shares.shape[0]):
        if shares[s] != 0.0:
            held[nh] = s
            held_shares[nh] = shares[s]
            first_dead = min(first_dead, dead_from[s])
            nh += 1
    return nh, first_dead


@njit(cache=True)
def _one_trial(
    close,
    last,
    weights,
    exec_row,
    dead_from,
    capital,
    c,
    slip,
    equity,
    turnover,
    cost,
    gross,
    ruined,
):  # pragma: no cover - compiled; covered through evaluate_chunk
    n_days, n_sym = close.shape
    shares = np.zeros(n_sym)
    held = np.empty(n_sym, np.int64)
    held_shares = np.empty(n_sym)
    keys = np.empty(n_sym)
    syms = np.empty(n_sym, np.int64)
    tgt = np.empty(n_sym)
    nh = 0
    first_dead = np.iinfo(np.int64).max
    cash = capital
    is_ruined = False
    bad = False
    for i in range(n_days):
        # one pass over the held symbols (ascending): the pre-trade value V at the last known
        # close (= the equity if nothing trades today) and the gross exposure
        value = cash
        g = 0.0
        for h in range(nh):
            v = held_shares[h] * last[i, held[h]]
            value += v
            g += abs(v)
        if not is_ruined and value <= 0.0:
            is_ruined = True
        n_ord = 0
        if not is_ruined:
            row = exec_row[i]
            if row >= 0:
                for s in range(n_sym):
                    if not np.isnan(close[i, s]):
                        w = weights[row, s]
                        key = w * value - shares[s] * last[i, s]
                        if key != 0.0:
                            keys[n_ord] = key
                            syms[n_ord] = s
                            tgt[n_ord] = w * value / last[i, s]
                            n_ord += 1
                    elif dead_from[s] <= i and shares[s] != 0.0:
                        keys[n_ord] = -shares[s] * last[i, s]
                        syms[n_ord] = s
                        tgt[n_ord] = 0.0
                        n_ord += 1
            elif i >= first_dead:
                for h in range(nh):
                    s = held[h]
                    if dead_from[s] <= i:
                        keys[n_ord] = -shares[s] * last[i, s]
                        syms[n_ord] = s
                        tgt[n_ord] = 0.0
                        n_ord += 1
        if n_ord > 0:
            # stable sort: ties keep ascending column (= byte-wise symbol) order
            order = np.argsort(keys[:n_ord], kind="mergesort")
            traded = 0.0
            fees = 0.0
            for k in range(n_ord):
                j = order[k]
                s = syms[j]
                p = last[i, s]
                q = tgt[j] - shares[s]
                if q == 0.0:
                    continue
                if q < 0.0:
                    fp = p * (1.0 - slip)
                    notional = q * fp
                    fee = -notional * c
                    cash -= notional + fee
                    shares[s] = tgt[j]
                else:
                    fp = p * (1.0 + slip)
                    notional = q * fp
                    fee = notional * c
                    need = notional + fee
                    if cash <= 0.0:
                        continue
                    if abs(need - cash) <= FULL_FILL_RTOL * cash:
                        cash = 0.0
                        shares[s] = tgt[j]
                    elif need > cash:
                        qf = cash / ((1.0 + c) * fp)
                        q = qf
                        notional = q * fp
                        fee = notional * c
                        cash = 0.0
                        shares[s] += q
                        if q == 0.0:
                            continue
                    else:
                        cash -= need
                        shares[s] = tgt[j]
                if not np.isfinite(q):
                    bad = True
                traded += abs(notional)
                fees += fee
            turnover[i] = traded / value
            cost[i] = fees
            nh, first_dead = _rebuild_held(shares, dead_from, held, held_shares)
            value = cash  # the end-of-day equity after the fills
            g = 0.0
            for h in range(nh):
                v = held_shares[h] * last[i, held[h]]
                value += v
                g += abs(v)
        equity[i] = value
        gross[i] = g
        ruined[i] = is_ruined
        if not np.isfinite(cash):
            bad = True
    return bad


@njit(cache=True)
def run_many(
    close, last, weights, exec_row, dead_from, capital, c, slip
):  # pragma: no cover - compiled; covered through evaluate_chunk
    """Run ``K = capital.size`` trials; return (equity, turnover, cost, gross, ruined, bad).

    ``close`` is the window's close matrix (NaN = no price), ``last`` its forward fill.

    The first five are (K, dates) arrays, ``bad`` is (K,) booleans (see the module docstring).
    """
    n_trials = capital.shape[0]
    n_days = close.shape[0]
    equity = np.empty((n_trials, n_days))
    turnover = np.zeros((n_trials, n_days))
    cost = np.zeros((n_trials, n_days))
    gross = np.empty((n_trials, n_days))
    ruined = np.zeros((n_trials, n_days), np.bool_)
    bad = np.zeros(n_trials, np.bool_)
    for k in range(n_trials):
        bad[k] = _one_trial(
            close,
            last,
            weights,
            exec_row,
            dead_from,
            capital[k],
            c[k],
            slip[k],
            equity[k],
            turnover[k],
            cost[k],
            gross[k],
            ruined[k],
        )
    return equity, turnover, cost, gross, ruined, bad


@njit(cache=True)
def momentum_scores(close, lookback, skip):  # pragma: no cover - compiled
    """``close[t-skip] / close[t-lookback] - 1`` over each symbol's own price rows (NaN = null).

    The ``mom`` feature of :func:`qpipe.stages.features.momentum`, same operations, on the
    dense panel: shifts count a symbol's price dates, so gaps are skipped, not filled.
    """
    n_days, n_sym = close.shape
    out = np.full((n_days, n_sym), np.nan)
    rows = np.empty(n_days, np.int64)
    for s in range(n_sym):
        n = 0
        for t in range(n_days):
            if not np.isnan(close[t, s]):
                rows[n] = t
                if n >= lookback and n >= skip:
                    out[t, s] = close[rows[n - skip], s] / close[rows[n - lookback], s] - 1.0
                n += 1
    return out
