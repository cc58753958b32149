"""Regenerate the example files from the built-in synthetic universe (deterministic).

    python examples/generate.py

- ``prices.csv``: long format, one row per (date, symbol): ``date,symbol,open,high,low,close,
  volume``; 12 symbols over 2022-2023, prices with 2 decimals, whole-share volumes.
- ``weights.csv``: long format ``date,symbol,weight``: on each month-end price date, 0.1 on each
  of the 8 symbols with the best trailing 3-month return (only symbols priced that day).
- ``vendor/<SYMBOL>.csv``: the same prices as a vendor's per-symbol export (``Date, Open, High,
  Low, Close, Adj Close, Volume``) for ``python -m qpipe data import``; ``Adj Close`` is the close
  adjusted for a made-up 2:1 split and dividends, as vendors do.
- ``wide.csv``: the closes as one column per symbol (date x symbols), for ``data import``.
- ``membership.csv``: a point-in-time universe (``symbol,from,to``): eight founding members,
  others joining and leaving during 2022-2023 (one leaves and comes back), for ``--membership``.

The data is synthetic (see docs/data.md, "The built-in universe"): it exercises the machinery and is
no evidence for any strategy.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from qpipe.data import builtin_universe

HERE = Path(__file__).resolve().parent
TICKERS = [
    *("ACME", "BOLT", "CRUX", "DUNE", "EMBR", "FLUX"),
    *("GLOW", "HALO", "IRIS", "JADE", "KILN", "LUXE"),
]


def prices() -> pl.DataFrame:
    raw = builtin_universe(symbols=len(TICKERS), start="2022-01-01", end="2023-12-31", seed=11)
    names = {f"SYM{i + 1:04d}": t for i, t in enumerate(TICKERS)}
    frame = raw.with_columns(
        pl.col("symbol").replace_strict(names),
        pl.col("open", "high", "low", "close").round(2).clip(lower_bound=0.01),
        pl.col("volume").round(0).cast(pl.Int64),
    )
    ohlc = ["open", "high", "low", "close"]
    return frame.with_columns(
        pl.max_horizontal(ohlc).alias("high"), pl.min_horizontal(ohlc).alias("low")
    ).select("date", "symbol", "open", "high", "low", "close", "volume")


def weights(frame: pl.DataFrame) -> pl.DataFrame:
    ranked = frame.sort("symbol", "date").with_columns(
        (pl.col("close") / pl.col("close").shift(63).over("symbol") - 1).alias("ret_3m")
    )
    month_ends = (
        frame.select("date")
        .unique()
        .group_by(pl.col("date").dt.truncate("1mo").alias("month"))
        .agg(pl.max("date"))
    )["date"]
    picks = (
        ranked.filter(pl.col("date").is_in(month_ends.implode()) & pl.col("ret_3m").is_not_null())
        .sort(["date", "ret_3m", "symbol"], descending=[False, True, False])
        .group_by("date", maintain_order=True)
        .head(8)
    )
    return picks.select("date", "symbol", pl.lit(0.1).alias("weight")).sort("date", "symbol")


def vendor_files(frame: pl.DataFrame, folder: Path) -> None:
    """Per-symbol exports as a vendor writes them: raw prices with a 2:1 split, and an
    adjusted close that is smooth across it.

    Every symbol splits 2:1 on 2023-06-01, so its raw Open/High/Low/Close before that date are
    twice the long example's (the raw close halves overnight; volume is left as reported); it
    also pays a 0.5 % dividend, ex 2022-12-15. ``Adj Close`` is the long example's close,
    scaled by 0.995 before the ex-date: back-adjusted for both events, so only the dividend
    shows in its returns. Imported with ``--close raw`` the split is a -50 % day; with
    ``--close adjusted`` it is gone.
    """
    folder.mkdir(exist_ok=True)
    split, ex_dividend = pl.date(2023, 6, 1), pl.date(2022, 12, 15)
    raw = pl.when(pl.col("date") < split).then(2.0).otherwise(1.0)
    adjust = pl.when(pl.col("date") < ex_dividend).then(0.995).otherwise(1.0)
    for (symbol,), rows in frame.group_by("symbol"):
        out = rows.sort("date").select(
            pl.col("date").alias("Date"),
            *[(pl.col(c) * raw).round(4).alias(c.title()) for c in ("open", "high", "low")],
            (pl.col("close") * raw).round(4).alias("Close"),
            (pl.col("close") * adjust).round(4).alias("Adj Close"),
            pl.col("volume").alias("Volume"),
        )
        out.write_csv(folder / f"{symbol}.csv")


MEMBERSHIP = """symbol,from,to
ACME,2022-01-01,
BOLT,2022-01-01,
CRUX,2022-01-01,2023-03-31
DUNE,2023-01-02,
EMBR,2022-01-01,
FLUX,2022-01-01,2022-09-30
FLUX,2023-04-03,
GLOW,2022-01-01,
HALO,2022-07-01,
IRIS,2022-01-01,
JADE,2022-01-01,2023-06-30
KILN,2023-07-03,
"""


def main() -> None:
    frame = prices()
    frame.write_csv(HERE / "prices.csv")
    weights(frame).write_csv(HERE / "weights.csv")
    vendor_files(frame, HERE / "vendor")
    wide = frame.pivot(on="symbol", index="date", values="close", sort_columns=True).sort("date")
    wide.write_csv(HERE / "wide.csv")
    (HERE / "membership.csv").write_text(MEMBERSHIP, encoding="utf-8")


if __name__ == "__main__":
    main()
