"""Shared helpers of the views tests: small seeded frames and an HTML well-formedness checker."""

from __future__ import annotations

import datetime as dt
from html.parser import HTMLParser

import numpy as np
import polars as pl

from qpipe.views import ReportInputs

RUN_ID = "20261126T073512Z-3fa9c1"
CONFIG = '[data]\nsource = "builtin"\nnote = "<script>alert(1)</script> & more"\n'
VOID = {
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
    "track", "wbr",
}  # fmt: skip

METRICS: dict[str, float | int | None] = {
    "total_return": 0.2531,
    "cagr": 0.0712,
    "ann_vol": 0.158,
    "sharpe": 1.234,
    "sortino": 1.5,
    "max_drawdown": -0.2,
    "calmar": 0.356,
    "turnover_ann": 6.0,
    "total_cost": 0.0123,
    "n_rebalances": 15,
    "hit_rate": 0.52,
    "exposure": 0.98,
    "beta": 0.9,
    "alpha_ann": 0.01,
    "tracking_error": 0.05,
    "information_ratio": None,
}


class Checker(HTMLParser):
    """Collects tags and attributes and checks that every element is closed in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend((tag, k, v) for k, v in attrs)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend((tag, k, v) for k, v in attrs)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
            return
        self.stack.pop()


def parse(page: str) -> Checker:
    checker = Checker()
    checker.feed(page)
    checker.close()
    assert checker.errors == []
    assert checker.stack == []
    return checker


def business_days(n: int, start: dt.date = dt.date(2020, 1, 1)) -> pl.Series:
    days = pl.date_range(start, start + dt.timedelta(days=2 * n + 10), "1d", eager=True)
    return days.filter(days.dt.weekday() <= 5).head(n)


def make_equity(
    n: int = 300, *, exposure: bool = True, seed: int = 1, warmup: int = 0
) -> pl.DataFrame:
    """Daily equity of a random strategy; the first ``warmup`` days hold cash (return 0)."""
    rng = np.random.default_rng(seed)
    ret = rng.normal(0.0004, 0.01, n)
    ret[:warmup] = 0.0
    turnover = np.where((np.arange(n) - warmup) % 21 == 0, 0.5, 0.0)
    turnover[:warmup] = 0.0
    frame = pl.DataFrame(
        {
            "date": business_days(n),
            "equity": np.cumprod(1 + ret),
            "return": ret,
            "turnover": turnover,
            "cost": turnover * 1e-3,
        }
    )
    if exposure:
        gross = np.where(np.arange(n) < warmup, 0.0, 0.98)
        frame = frame.with_columns(
            pl.Series("gross_exposure", gross), pl.Series("net_exposure", gross / 2)
        )
    return frame


def make_weights(equity: pl.DataFrame) -> pl.DataFrame:
    dates = equity.get_column("date").gather_every(21).to_list()
    rows = [(d, s, w) for d in dates for s, w in (("AAA", 0.6), ("BBB", -0.25), ("CCC", 0.0))]
    return pl.DataFrame(
        rows, schema={"date": pl.Date, "symbol": pl.String, "weight": pl.Float64}, orient="row"
    )


def make_trades(equity: pl.DataFrame) -> pl.DataFrame:
    """Buy AAA and short BBB on the first day, trim, then close both: two round trips each side."""
    d = equity.get_column("date").to_list()
    rows = [
        (d[0], "AAA", 10.0, 10.0), (d[0], "BBB", -5.0, 20.0),
        (d[20], "AAA", -4.0, 11.0), (d[40], "AAA", -6.0, 12.0),
        (d[40], "BBB", 5.0, 18.0), (d[60], "AAA", 3.0, 9.0),
    ]  # fmt: skip
    frame = pl.DataFrame(
        rows,
        schema={"date": pl.Date, "symbol": pl.String, "shares": pl.Float64, "price": pl.Float64},
        orient="row",
    )
    return frame.with_columns((pl.col("shares") * pl.col("price")).alias("notional")).with_columns(
        (pl.col("notional").abs() * 1e-3).alias("cost")
    )


def make_prices(equity: pl.DataFrame, seed: int = 2) -> pl.DataFrame:
    """Closes of AAA and BBB on every equity date (a random walk from 10 and 20)."""
    rng = np.random.default_rng(seed)
    dates = equity.get_column("date")
    frames = [
        pl.DataFrame({"date": dates, "symbol": sym,
                      "close": start * np.cumprod(1 + rng.normal(0, 0.01, dates.len()))})
        for sym, start in (("AAA", 10.0), ("BBB", 20.0))
    ]  # fmt: skip
    return pl.concat(frames)


def inputs(**overrides: object) -> ReportInputs:
    equity = overrides.pop("equity", None)
    equity = make_equity() if equity is None else equity
    kwargs: dict[str, object] = {
        "equity": equity,
        "benchmark_equity": equity.select("date", (pl.col("equity") * 0.9).alias("equity")),
        "weights": make_weights(equity),
        "trades": make_trades(equity) if equity.height > 60 else None,
        "prices": make_prices(equity),
        "metrics": METRICS,
        "config_toml": CONFIG,
        "run_id": RUN_ID,
        "created": "2026-11-26T07:35:12Z",
    }
    kwargs.update(overrides)
    return ReportInputs(**kwargs)  # type: ignore[arg-type]
