"""An independent, row-by-row reference of the backtest convention, for tests only.

Written from the text of DESIGN.md "Backtest convention" and docs/backtest.md (optional
features), with plain Python lists and dicts; it shares no code with ``qpipe.backtest``.
Slow on purpose: clarity over speed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

FULL_FILL_TOLERANCE = 1e-9


@dataclass
class RefDay:
    date: date
    equity: float
    ret: float | None
    turnover: float
    cost: float
    cash: float
    unfilled: float
    gross: float
    net: float
    ruined: bool


@dataclass
class RefResult:
    days: list[RefDay] = field(default_factory=list)
    trades: list[tuple[date, str, float, float, float, float]] = field(default_factory=list)
    n_rebalances: int = 0
    ruined_on: date | None = None


def reference_backtest(
    prices: list[dict],
    weights: list[dict],
    *,
    initial_capital: float = 1.0,
    cost_bps: float = 0.0,
    slippage_bps: float = 0.0,
    execution: str = "close",
    borrow_bps: float = 0.0,
    cash_rate: float = 0.0,
    start: date | None = None,
    end: date | None = None,
) -> RefResult:
    """Backtest price rows (date, symbol, close[, open]) and weight rows (date, symbol, weight)."""
    c = cost_bps / 10_000
    s = slippage_bps / 10_000
    close_of: dict[date, dict[str, float]] = {}
    open_of: dict[date, dict[str, float]] = {}
    last_price_date: dict[str, date] = {}
    for row in prices:
        close_of.setdefault(row["date"], {})[row["symbol"]] = row["close"]
        if row.get("open") is not None:
            open_of.setdefault(row["date"], {})[row["symbol"]] = row["open"]
        if row["symbol"] not in last_price_date or row["date"] > last_price_date[row["symbol"]]:
            last_price_date[row["symbol"]] = row["date"]
    all_dates = sorted(close_of)
    data_end = all_dates[-1]
    dates = [d for d in all_dates if (start is None or d >= start) and (end is None or d <= end)]

    targets: dict[date, dict[str, float]] = {}
    for row in weights:
        targets.setdefault(row["date"], {})[row["symbol"]] = row["weight"]

    # next-open execution: the weights of one price date trade on the next price date
    todays_targets: dict[date, dict[str, float]] = {}
    for k, d in enumerate(dates):
        if execution == "close":
            if d in targets:
                todays_targets[d] = targets[d]
        elif k > 0 and dates[k - 1] in targets:
            todays_targets[d] = targets[dates[k - 1]]

    cash = initial_capital
    held: dict[str, float] = {}
    last_close: dict[str, float] = {}
    ruined = False
    result = RefResult()
    previous_equity = initial_capital
    for k, d in enumerate(dates):
        if k > 0:
            if cash > 0:
                cash = cash + cash * (cash_rate / 252)
            short_value = 0.0
            for sym in sorted(held):
                if held[sym] < 0:
                    short_value = short_value - held[sym] * last_close[sym]
            cash = cash - short_value * (borrow_bps / 10_000 / 252)

        if execution == "close":
            for sym, px in close_of[d].items():
                last_close[sym] = px
            trade_price = dict(close_of[d])
        else:
            trade_price = dict(open_of.get(d, {}))

        def mark(sym: str, trade_price: dict[str, float] = trade_price) -> float:
            return trade_price[sym] if sym in trade_price else last_close[sym]

        value = cash
        for sym in sorted(held):
            if held[sym] != 0:
                value = value + held[sym] * mark(sym)
        if value <= 0 and not ruined:
            ruined = True
            result.ruined_on = d

        orders = []  # (key, symbol, target shares)
        if not ruined:
            if d in todays_targets:
                if execution == "close":
                    result.n_rebalances += 1
                for sym in sorted(trade_price):
                    w = todays_targets[d].get(sym, 0.0)
                    key = w * value - held.get(sym, 0.0) * trade_price[sym]
                    if key != 0:
                        orders.append((key, sym, w * value / trade_price[sym]))
            for sym in sorted(held):
                delisted = last_price_date[sym] < data_end and d > last_price_date[sym]
                if delisted and held[sym] != 0:
                    orders.append((-held[sym] * last_close[sym], sym, 0.0))
        if execution == "next_open" and d in targets and not ruined:
            result.n_rebalances += 1
        orders.sort(key=lambda o: (o[0], o[1].encode("utf-8")))

        traded = fees = unfilled = 0.0
        for _, sym, target in orders:
            p = mark(sym)
            have = held.get(sym, 0.0)
            q = target - have
            if q == 0:
                continue
            if q < 0:  # a sale (or a short sale) always fills
                fill = p * (1 - s)
                notional = q * fill
                fee = abs(notional) * c
                cash = cash + (abs(notional) - fee)
                held[sym] = target
            else:
                fill = p * (1 + s)
                notional = q * fill
                fee = notional * c
                price_all = notional + fee
                if cash <= 0:
                    unfilled += notional
                    continue
                if abs(price_all - cash) <= FULL_FILL_TOLERANCE * cash:
                    cash = 0.0
                    held[sym] = target
                elif price_all > cash:
                    bought = cash / ((1 + c) * fill)
                    unfilled += (q - bought) * fill
                    q = bought
                    notional = q * fill
                    fee = notional * c
                    cash = 0.0
                    held[sym] = have + q
                    if q == 0:
                        continue
                else:
                    cash = cash - price_all
                    held[sym] = target
            result.trades.append((d, sym, q, fill, notional, fee))
            traded += abs(notional)
            fees += fee

        if execution == "next_open":
            for sym, px in close_of[d].items():
                last_close[sym] = px
        equity = cash
        gross = net = 0.0
        for sym in sorted(held):
            if held[sym] != 0:
                equity = equity + held[sym] * last_close[sym]
                gross = gross + abs(held[sym] * last_close[sym])
                net = net + held[sym] * last_close[sym]
        result.days.append(
            RefDay(
                date=d,
                equity=equity,
                ret=equity / previous_equity - 1 if previous_equity > 0 else None,
                turnover=traded / value if traded else 0.0,
                cost=fees,
                cash=cash,
                unfilled=unfilled,
                gross=gross,
                net=net,
                ruined=ruined,
            )
        )
        previous_equity = equity
    return result
