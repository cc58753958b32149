"""Where each point-in-time re-run starts and which rows it reads (for :mod:`.pit`).

The plan is made once for all cuts, so each big frame is scanned once: the source prices for the
sampled symbols, every other frame for the dates some cut compares or windows over. Everything
after that works on frames of a few thousand rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from qpipe.stages.base import Pipeline, Step
from qpipe.validation._keys import distinct_dates

__all__ = ["Plan", "make_plan"]


class _History:
    """Each symbol's rows in date order, to find where its trailing window starts.

    ``back(lo, cut, warm)`` is the earliest date among, for every symbol priced in
    ``[lo, cut]``, the row ``warm`` rows before its first row in that range (or its first row).
    Symbols are grouped by integer codes (a hash, not a sort of the strings); frames with null
    keys take the plain Polars path, whose null handling this must match.
    """

    def __init__(self, prices: pl.DataFrame) -> None:
        keys = prices.select("date", "symbol")
        self.frame: pl.DataFrame | None = None
        if keys.null_count().sum_horizontal().item():
            self.frame = keys.sort("symbol", "date").with_columns(
                pl.int_range(pl.len()).over("symbol").alias("_k")
            )
            return
        sym, date = pl.col("symbol"), pl.col("date")
        prev = sym.shift()
        flags = keys.select(
            (prev.is_null() | (sym != prev)).alias("new"),
            (prev.is_null() | (sym > prev) | ((sym == prev) & (date >= date.shift())))
            .all()
            .alias("ordered"),
        )
        if flags["ordered"][0]:  # the store's usual (symbol, date) order: no sort needed
            new_group = flags["new"].to_numpy()
            self.day = keys["date"].cast(pl.Int32).to_numpy()
        else:
            coded = keys.select(
                sym.cast(pl.Categorical).to_physical().cast(pl.Int64).alias("s"),
                date.cast(pl.Int32).alias("d"),
            ).sort("s", "d")
            codes = coded["s"].to_numpy()
            new_group = np.r_[True, codes[1:] != codes[:-1]]
            self.day = coded["d"].to_numpy()
        # rows are grouped by symbol, days ascending within a group
        self.gid = np.cumsum(new_group)
        self.start = np.maximum.accumulate(np.where(new_group, np.arange(new_group.size), 0))

    def back(self, lo: dt.date, cut: dt.date, warm: int) -> dt.date | None:
        if self.frame is not None:
            numbered = self.frame
            firsts = (
                numbered.filter(pl.col("date").is_between(lo, cut))
                .group_by("symbol")
                .agg((pl.col("_k").min() - warm).clip(lower_bound=0).alias("_k"))
            )
            found = numbered.join(firsts, on=["symbol", "_k"], how="semi")["date"].min()
            return found if isinstance(found, dt.date) else None
        epoch = dt.date(1970, 1, 1)
        inside = np.flatnonzero((self.day >= (lo - epoch).days) & (self.day <= (cut - epoch).days))
        if inside.size == 0:
            return None
        g = self.gid[inside]
        first = inside[np.r_[True, g[1:] != g[:-1]]]  # first row in range of each symbol
        group = self.start[first]
        rows = group + np.maximum(first - group - warm, 0)
        return epoch + dt.timedelta(days=int(self.day[rows].min()))


@dataclass(frozen=True)
class Cut:
    """One cut: the date r, the rebalance dates compared, and where a no-shard window starts."""

    date: dt.date
    compared: list[dt.date]
    all_start: dt.date


@dataclass(frozen=True)
class Plan:
    """The cuts, the symbol sample, and each frame narrowed to the rows the cuts need."""

    cuts: list[Cut]
    symbols: list[str]
    warm: int
    by_date: dict[str, pl.DataFrame]  # rows on a compared date or in a no-shard window
    by_symbol: dict[str, pl.DataFrame]  # the sampled symbols' rows up to the last cut
    histories: dict[str, _History] = field(default_factory=dict)

    def inputs(self, step: Step, cut: Cut) -> list[pl.DataFrame]:
        """The step's inputs, truncated after the cut and cut down to what its shard needs."""
        date = pl.col("date")
        shard = step.stage.shard
        if shard == "symbol":
            frames = [self.by_symbol[n] for n in step.inputs]
            keyed = [n for n in step.inputs if {"date", "symbol"} <= set(self.by_symbol[n].columns)]
            back = (
                self.history(keyed[0]).back(cut.compared[0], cut.date, self.warm) if keyed else None
            )
            start = back if isinstance(back, dt.date) else cut.compared[0]
            return [
                f.filter(date.is_between(start, cut.date)) if "date" in f.columns else f
                for f in frames
            ]
        frames = [self.by_date[n] for n in step.inputs]
        if shard == "date":
            return [
                f.filter(date.is_in(cut.compared)) if "date" in f.columns else f for f in frames
            ]
        return [
            f.filter(date.is_between(cut.all_start, cut.date)) if "date" in f.columns else f
            for f in frames
        ]

    def history(self, name: str) -> _History:
        """The sampled symbols' rows of ``name``, to find where a window starts; made once.

        The same for every cut: ``by_symbol`` holds no null key and no row after the last cut,
        and rows after a cut come after it within their symbol, so they move no row before it.
        """
        if name not in self.histories:
            self.histories[name] = _History(self.by_symbol[name])
        return self.histories[name]

    def expected(self, step: Step, name: str, cut: Cut) -> pl.LazyFrame:
        """The full run's output ``name`` on the cut's compared rows (planned, not collected)."""
        return self.restrict(step, self.by_date[name].lazy(), cut)

    def restrict(self, step: Step, frame: pl.LazyFrame, cut: Cut) -> pl.LazyFrame:
        columns = frame.collect_schema()
        out = frame.filter(pl.col("date").is_in(cut.compared)) if "date" in columns else frame
        if step.stage.shard == "symbol" and "symbol" in columns:
            out = out.filter(pl.col("symbol").is_in(self.symbols))
        return out


def _sample(weights: pl.DataFrame, cut_dates: list[dt.date], n: int) -> list[str]:
    """Up to ``n`` symbols held on the cut dates plus ``n`` spread over every symbol the weights
    name. A look-ahead is in the code, so any symbol shows it; the held ones are where it would
    matter."""

    def spread(names: list[str]) -> set[str]:
        return set(names[:: max(1, len(names) // n)][:n])

    held = weights.filter(pl.col("date").is_in(cut_dates) & (pl.col("weight") != 0.0))
    chosen = spread(held["symbol"].unique().sort().to_list())
    chosen |= spread(weights["symbol"].unique().sort().to_list())
    return sorted(s for s in chosen if s is not None)


def _cut_list(
    reb: list[dt.date],
    price_dates: np.ndarray,
    cuts: Sequence[dt.date],
    *,
    warm_all: int,
    window: int,
    every_k: int | None,
) -> list[Cut]:
    epoch = dt.date(1970, 1, 1)
    out: list[Cut] = []
    for cut in cuts:
        compared = [d for d in reb if d <= cut][-window:]
        i = int(np.searchsorted(price_dates, (compared[0] - epoch).days))
        first = max(0, i - warm_all)
        if every_k:  # keep the k-day phase of the schedule
            first = (first // every_k) * every_k
        start = epoch + dt.timedelta(days=int(price_dates[first])) if price_dates.size else cut
        out.append(Cut(cut, compared, min(start, compared[0])))
    return out


def _days(frame: pl.DataFrame) -> np.ndarray:
    return distinct_dates(frame["date"]).cast(pl.Int32).to_numpy()


def _rows_of(
    frame: pl.DataFrame, symbols: list[str], last: dt.date, runs: pl.DataFrame | None
) -> pl.DataFrame:
    """``frame``'s rows of ``symbols`` up to ``last``, in frame order. With ``runs`` (each
    symbol's ``_start``/``_end`` rows, :class:`~qpipe.validation._keys.PriceKeys` of this frame
    in the store's order) they are sliced by position instead of testing every row's symbol."""
    if runs is None:
        return frame.filter(pl.col("symbol").is_in(symbols) & (pl.col("date") <= last))
    spans = runs.filter(pl.col("symbol").is_in(symbols))
    parts = [frame.slice(a, b - a) for a, b in spans.select("_start", "_end").iter_rows()]
    picked = pl.concat(parts) if parts else frame.clear()
    return picked.filter(pl.col("date") <= last)


def make_plan(
    pipeline: Pipeline,
    frames: Mapping[str, pl.DataFrame],
    cuts: Sequence[dt.date],
    *,
    weights_name: str,
    warm: int,
    warm_all: int,
    window: int,
    every_k: int | None,
    symbols: int,
    source_runs: pl.DataFrame | None = None,
) -> Plan:
    """Plan the re-runs: one scan of each big frame, then small frames for every cut.

    The no-shard window counts ``warm_all`` dates among the sampled symbols' price dates: a
    subset of the price dates, so the window is never shorter than asked. An ``every_k``
    schedule needs the exact date index, so it counts the source's own dates. ``source_runs``
    locates each symbol's rows of the source (see :func:`_rows_of`).
    """
    weights = frames[weights_name]
    reb = weights["date"].unique().sort().to_list()
    sample = _sample(weights, list(cuts), symbols)
    last = max(cuts)
    source = pipeline.sources[0]
    per_symbol = {n for s in pipeline.steps if s.stage.shard == "symbol" for n in s.inputs}
    by_symbol = {
        n: _rows_of(frames[n], sample, last, source_runs if n == source else None)
        if {"date", "symbol"} <= set(frames[n].columns)
        else frames[n]
        for n in per_symbol | {source}
    }
    price_dates = _days(frames[source] if every_k else by_symbol[source])
    plan = _cut_list(reb, price_dates, cuts, warm_all=warm_all, window=window, every_k=every_k)
    date = pl.col("date")
    # a cut's compared dates lie in its window [all_start, cut], so the windows cover them
    wanted = pl.any_horizontal([date.is_between(c.all_start, c.date) for c in plan])
    names = {n for s in pipeline.steps for n in s.outputs} | {
        n for s in pipeline.steps if s.stage.shard != "symbol" for n in s.inputs
    }
    by_date = {
        n: frames[n].filter(wanted) if "date" in frames[n].columns else frames[n] for n in names
    }
    return Plan(plan, sample, warm, by_date, by_symbol)
