"""The sequential accounting kernel (numba).

:func:`run_kernel` walks the price dates once, carrying cash, shares and each symbol's last
close. Everything is dense: ``close`` and ``open_`` are (dates x symbols) with NaN where a
symbol has no price; ``weights`` holds one row per rebalance and ``exec_row[i]`` says which row
(or -1) trades on date ``i``. See :mod:`qpipe.backtest.accounting` for the convention; this
module only executes it. Arithmetic order is part of the contract with the tests (the reference
implementation agrees to 1e-12): V is summed as cash first, then symbols in column order.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["FULL_FILL_RTOL", "run_kernel"]

# A purchase whose cost is within this relative distance of the cash available fills in full.
FULL_FILL_RTOL = 1e-9


@njit(cache=True)
def _grow(a, n):  # pragma: no cover - compiled
    out = np.empty(max(2 * a.shape[0], n), a.dtype)
    out[: a.shape[0]] = a
    return out


@njit(cache=True)
def run_kernel(
    close,
    open_,
    use_open,
    weights,
    exec_row,
    dead_from,
    capital,
    c,
    slip,
    borrow_d,
    cash_d,
):  # pragma: no cover - compiled; covered through simulate()
    """Run the accounting; return per-day arrays and the trades (see module docstring)."""
    n_days, n_sym = close.shape
    last = np.full(n_sym, np.nan)
    shares = np.zeros(n_sym)
    mark = np.empty(n_sym)
    keys = np.empty(n_sym)
    syms = np.empty(n_sym, np.int64)
    tgt = np.empty(n_sym)

    equity = np.empty(n_days)
    cash_out = np.empty(n_days)
    turnover = np.zeros(n_days)
    cost = np.zeros(n_days)
    unfilled = np.zeros(n_days)
    gross = np.empty(n_days)
    net = np.empty(n_days)
    ruined = np.zeros(n_days, np.bool_)

    cap = max(16, n_sym)
    t_day = np.empty(cap, np.int64)
    t_sym = np.empty(cap, np.int64)
    t_shares = np.empty(cap)
    t_price = np.empty(cap)
    t_notional = np.empty(cap)
    t_cost = np.empty(cap)
    n_tr = 0

    cash = capital
    is_ruined = False
    for i in range(n_days):
        # 1. accruals for the interval since the previous price date, on its closing balances
        if i > 0:
            if cash_d != 0.0 and cash > 0.0:
                cash += cash * cash_d
            if borrow_d > 0.0:
                short_mv = 0.0
                for s in range(n_sym):
                    if shares[s] < 0.0:
                        short_mv -= shares[s] * last[s]
                cash -= short_mv * borrow_d
        # 2. marks: today's close (close execution) or today's open, else the last close
        if not use_open:
            for s in range(n_sym):
                if not np.isnan(close[i, s]):
                    last[s] = close[i, s]
        for s in range(n_sym):
            if use_open and not np.isnan(open_[i, s]):
                mark[s] = open_[i, s]
            else:
                mark[s] = last[s]
        # 3. pre-trade value V, same basis for every target
        value = cash
        for s in range(n_sym):
            if shares[s] != 0.0:
                value += shares[s] * mark[s]
        if not is_ruined and value <= 0.0:
            is_ruined = True
        # 4. the day's order book: rebalance targets for tradable symbols, delisted holdings to 0
        n_ord = 0
        if not is_ruined:
            row = exec_row[i]
            for s in range(n_sym):
                if row >= 0:
                    priced = not np.isnan(open_[i, s]) if use_open else not np.isnan(close[i, s])
                    if priced:
                        w = weights[row, s]
                        key = w * value - shares[s] * mark[s]
                        if key != 0.0:
                            keys[n_ord] = key
                            syms[n_ord] = s
                            tgt[n_ord] = w * value / mark[s]
                            n_ord += 1
                        continue
                if dead_from[s] <= i and shares[s] != 0.0:
                    keys[n_ord] = -shares[s] * mark[s]
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
                p = mark[s]
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
                        unfilled[i] += notional
                        continue
                    if abs(need - cash) <= FULL_FILL_RTOL * cash:
                        cash = 0.0
                        shares[s] = tgt[j]
                    elif need > cash:
                        qf = cash / ((1.0 + c) * fp)
                        unfilled[i] += (q - qf) * fp
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
                if n_tr == t_day.shape[0]:
                    t_day = _grow(t_day, n_tr + 1)
                    t_sym = _grow(t_sym, n_tr + 1)
                    t_shares = _grow(t_shares, n_tr + 1)
                    t_price = _grow(t_price, n_tr + 1)
                    t_notional = _grow(t_notional, n_tr + 1)
                    t_cost = _grow(t_cost, n_tr + 1)
                t_day[n_tr] = i
                t_sym[n_tr] = s
                t_shares[n_tr] = q
                t_price[n_tr] = fp
                t_notional[n_tr] = notional
                t_cost[n_tr] = fee
                n_tr += 1
                traded += abs(notional)
                fees += fee
            turnover[i] = traded / value
            cost[i] = fees
        # 5. close of day: marks move to today's close, equity at the last known close
        if use_open:
            for s in range(n_sym):
                if not np.isnan(close[i, s]):
                    last[s] = close[i, s]
        e = cash
        g = 0.0
        nt = 0.0
        for s in range(n_sym):
            if shares[s] != 0.0:
                v = shares[s] * last[s]
                e += v
                g += abs(v)
                nt += v
        equity[i] = e
        cash_out[i] = cash
        gross[i] = g
        net[i] = nt
        ruined[i] = is_ruined
    return (
        equity,
        cash_out,
        turnover,
        cost,
        unfilled,
        gross,
        net,
        ruined,
        t_day[:n_tr].copy(),
        t_sym[:n_tr].copy(),
        t_shares[:n_tr].copy(),
        t_price[:n_tr].copy(),
        t_notional[:n_tr].copy(),
        t_cost[:n_tr].copy(),
    )
