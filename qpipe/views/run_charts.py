"""The charts of the run page, as :class:`~qpipe.views.charts.Chart` specs on one ChartSet."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from qpipe.conventions import PERIODS_PER_YEAR
from qpipe.views import analytics as an
from qpipe.views.charts import BENCH, GREY, NEG, STRATEGY, Chart, ChartSet, Series, level
from qpipe.views.run_tables import yearly_table
from qpipe.views.trades import long_short_pnl

if TYPE_CHECKING:
    from qpipe.views.run_page import ReportInputs, Span

W = an.ROLLING_WINDOW
NOTES = {
    "equity": "Equity divided by the capital at the start of the measured span, after costs; "
    "the benchmark is rebased the same way. Drag to zoom (all time charts follow), "
    "double-click to zoom out; hover for values.",
    "equity-log": "The same on a log scale: equal slopes are equal growth rates.",
    "drawdown": "Equity over its running maximum (starting at the capital) minus 1.",
    "rolling-sharpe": f"mean / std (ddof 1) of daily returns over {W} trading days "
    f"× √{PERIODS_PER_YEAR}; risk-free rate 0.",
    "rolling-volatility": f"std (ddof 1) of daily returns over {W} trading days "
    f"× √{PERIODS_PER_YEAR}.",
    "rolling-beta": f"cov(r, b) / var(b) over {W} trading days against the benchmark's daily "
    "returns.",
    "turnover": "Traded notional / pre-trade portfolio value on each trading day.",
    "exposure": "Gross (Σ|position|) and net (Σ position) exposure as a share of equity.",
    "costs": "Amounts in units of the capital (the starting cash, "
    "<code>backtest.initial_capital</code>). Borrow is estimated from the daily short "
    "exposure; fees and slippage are exact per fill.",
    "long-short": "Close-to-close P&amp;L of the positions held long and short, cumulated, "
    "as a share of the initial capital.",
}


def time_charts(charts: ChartSet, span: Span, inputs: ReportInputs) -> dict[str, str]:
    """Equity (linear and log), drawdown, rolling Sharpe/volatility/beta, turnover, exposure."""
    eq = span.equity
    dates = eq.get_column("date").to_numpy()
    x = charts.add_x("days", dates, dates=True)
    n = dates.size
    e = an.to_np(eq, "equity")
    growth = e / span.capital
    ret = eq.get_column("return").cast(pl.Float64)
    strat = Series("strategy", growth, STRATEGY, width=1.75)
    series = [strat]
    bench_growth = bench_ret = None
    if span.bench is not None and span.bench.height:
        # On the equity's dates: a day the benchmark lacks counts as a 0 return.
        aligned = eq.select("date").join(span.bench, on="date", how="left")
        bench_ret = aligned.get_column("return").cast(pl.Float64).fill_null(0.0)
        bench_growth = np.cumprod(1.0 + np.nan_to_num(bench_ret.to_numpy()))
        series.append(Series("benchmark", bench_growth, BENCH))
    empty = "" if n else "no data"
    log_ok = bool(n) and bool(np.all(growth[np.isfinite(growth)] > 0))
    dd = an.drawdown(e, span.capital)
    dd_series = [Series("strategy", dd, NEG, fill="rgba(192,57,43,.25)", width=1.2)]
    if bench_growth is not None:
        dd_series.append(Series("benchmark", an.drawdown(bench_growth, 1.0), BENCH, width=1.0))
    out = {
        "equity": charts.div(Chart("chart-equity", "Equity", x, (*series,), "num", height=300,
                                   empty=empty)),
        "equity-log": charts.div(Chart("chart-equity-log", "Equity (log)", x, (*series,), "num",
                                       log=True, height=260,
                                       empty=empty or ("" if log_ok else "equity fell to 0"))),
        "drawdown": charts.div(Chart("chart-drawdown", "Drawdown", x, tuple(dd_series), "pct",
                                     empty=empty)),
    }  # fmt: skip
    out.update(_rolling(charts, x, ret, bench_ret, span.metrics.get("sharpe"), empty))
    out.update(_trading(charts, x, eq, empty))
    return out


def _rolling(
    charts: ChartSet,
    x: str,
    ret: pl.Series,
    bench_ret: pl.Series | None,
    full: float | int | None,
    empty: str,
) -> dict[str, str]:
    n = ret.len()
    short = empty or ("" if n >= W else f"fewer than {W} days of returns")
    sharpe = [Series(f"{W}-day", an.rolling_sharpe(ret), STRATEGY)]
    sharpe.append(Series("0", level(n, 0.0), GREY, width=1.0, span=True))
    vol = [Series(f"{W}-day strategy", an.rolling_vol(ret), STRATEGY)]
    beta: list[Series] = []
    if bench_ret is not None:
        vol.append(Series(f"{W}-day benchmark", an.rolling_vol(bench_ret), BENCH))
        beta = [Series(f"{W}-day beta", an.rolling_beta(ret, bench_ret), STRATEGY),
                Series("1", level(n, 1.0), GREY, width=1.0, span=True)]  # fmt: skip
    if isinstance(full, int | float):
        sharpe.append(
            Series("Sharpe over the span", level(n, float(full)), BENCH, dash=True, span=True)
        )
    return {
        "rolling-sharpe": charts.div(
            Chart("chart-rolling-sharpe", "Rolling Sharpe", x, tuple(sharpe), "ratio", empty=short)
        ),
        "rolling-volatility": charts.div(
            Chart(
                "chart-rolling-volatility", "Rolling volatility", x, tuple(vol), "pct", empty=short
            )
        ),
        "rolling-beta": charts.div(
            Chart(
                "chart-rolling-beta",
                "Rolling beta",
                x,
                tuple(beta),
                "ratio",
                empty=short or ("" if beta else "no benchmark"),
            )
        ),
    }


def _trading(charts: ChartSet, x: str, eq: pl.DataFrame, empty: str) -> dict[str, str]:
    traded = eq.filter(pl.col("turnover") > 0)
    tx = charts.add_x("trade-days", traded.get_column("date").to_numpy(), dates=True)
    turnover = Series("turnover", an.to_np(traded, "turnover"), STRATEGY, kind="bars", size=0.6)
    t_empty = empty or ("" if traded.height else "no trades")
    out = {"turnover": charts.div(Chart("chart-turnover", "Turnover", tx, (turnover,), "pct",
                                        height=200, empty=t_empty))}  # fmt: skip
    if "gross_exposure" in eq.columns:
        exp = [Series("gross", an.to_np(eq, "gross_exposure"), STRATEGY)]
        if "net_exposure" in eq.columns:
            exp.append(Series("net", an.to_np(eq, "net_exposure"), BENCH))
        chart = Chart("chart-exposure", "Exposure", x, tuple(exp), "pct", height=200, empty=empty)
    else:
        chart = Chart("chart-exposure", "Exposure", x, (), "pct", empty="no exposure columns")
    out["exposure"] = charts.div(chart)
    return out


def yearly(charts: ChartSet, span: Span) -> str:
    """Calendar-year returns of the strategy and the benchmark: grouped bars and a table."""
    eq = span.equity
    years = an.period_returns(eq.get_column("date"), eq.get_column("return"), "year")
    ys = years.get_column("year").to_list()
    strat = years.get_column("ret").to_list()
    bench = None
    if span.bench is not None and span.bench.height:
        b = an.period_returns(span.bench.get_column("date"), span.bench.get_column("return"),
                              "year")  # fmt: skip
        by_year = dict(zip(b.get_column("year").to_list(), b.get_column("ret").to_list(),
                           strict=True))  # fmt: skip
        bench = [by_year.get(y, float("nan")) for y in ys]
    x = charts.add_x("years", np.arange(len(ys), dtype=float))
    series = [Series("strategy", np.array(strat), STRATEGY, kind="bars", align=-1, size=0.4)]
    if bench is not None:
        series.append(Series("benchmark", np.array(bench), BENCH, kind="bars", align=1, size=0.4))
    chart = Chart("chart-yearly-returns", "Yearly returns", x, tuple(series), "pct", "cat",
                  categories=tuple(str(y) for y in ys), height=220,
                  empty="" if ys else "no data")  # fmt: skip
    return charts.div(chart) + yearly_table(ys, strat, bench)


def histogram(charts: ChartSet, returns: np.ndarray) -> str:
    centres, counts = an.histogram(returns)
    x = charts.add_x("return-bins", centres)
    chart = Chart("chart-return-distribution", "Daily returns", x,
                  (Series("days", counts, STRATEGY, kind="bars", size=0.9),), "num", "num",
                  height=200, xlabel="daily return", xpct=True,
                  empty="" if centres.size else "no returns")  # fmt: skip
    return charts.div(chart)


def long_short(charts: ChartSet, inputs: ReportInputs, span: Span, capital: float) -> str:
    """Cumulative P&L of the long and the short book (needs ``prices``)."""
    if inputs.prices is None or inputs.trades is None:
        return '<p class="muted">the book has shorts; pass `prices` to split its P&amp;L</p>'
    pnl = long_short_pnl(inputs.trades, inputs.prices)
    pnl = span.equity.select("date").join(pnl, on="date", how="left").fill_null(0.0)
    long_c = np.cumsum(an.to_np(pnl, "long")) / capital
    short_c = np.cumsum(an.to_np(pnl, "short")) / capital
    chart = Chart("chart-long-short", "Long vs short", "days",
                  (Series("long", long_c, STRATEGY), Series("short", short_c, NEG)), "pct",
                  height=220)  # fmt: skip
    total = (
        f'<p class="muted">Long book {long_c[-1] * 100:,.2f}%, short book '
        f"{short_c[-1] * 100:,.2f}% of the initial capital over the span.</p>"
        if long_c.size
        else ""
    )
    return charts.div(chart) + total
