"""The price panel a batched sweep shares: long prices pivoted once to dense arrays.

:func:`build_panel` pivots the long prices of a :class:`~qpipe.store.DatasetRef` exactly as
:func:`qpipe.backtest.simulate` does (price dates ascending, symbols in byte-wise order, NaN =
no price) and stores the arrays as ordinary content-addressed Arrow IPC entries:

- ``axes``: one row per price date (``day``, the Int32 day number);
- ``symbols``: one row per symbol (``symbol``, ``last_row``: the index of its last price date);
- ``close`` (and ``open`` when the prices have it): one Float64 column of T x N values, the
  row-major (date, symbol) matrix flattened, NaN where there is no price;
- ``last_close``: the same with each symbol's last close carried forward (the marks of the
  accounting: a held symbol with no price counts at its last close).

A :class:`PanelRef` names these entries by path and digest (a few hundred bytes, picklable), so
a sweep task receives the reference and memory-maps the matrices (no copy; an Arrow buffer with
no nulls is one contiguous, aligned float64 buffer that numpy wraps as is).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc

from qpipe.backtest.accounting import _dense, _universe
from qpipe.backtest.metrics import equal_weight_benchmark
from qpipe.errors import BacktestError, StoreError
from qpipe.store import ArrowStore, DatasetRef

__all__ = ["Panel", "PanelRef", "build_panel", "open_panel"]


@dataclass(frozen=True, slots=True)
class PanelRef:
    """References to a pivoted price panel in the store (paths and digests only)."""

    prices: DatasetRef
    axes: DatasetRef
    symbols: DatasetRef
    close: DatasetRef
    last_close: DatasetRef
    benchmark: DatasetRef
    open: DatasetRef | None = None
    benchmark_prices: DatasetRef | None = None  # None: the prices are their own benchmark

    @property
    def digest(self) -> str:
        """The digest of the long prices the panel was built from (what identifies it)."""
        return self.prices.digest


@dataclass(frozen=True)
class Panel:
    """An opened panel: memory-mapped arrays (read-only views)."""

    ref: PanelRef
    days: np.ndarray  # int64 day numbers, ascending (T)
    symbols: pl.Series  # byte-wise sorted (N)
    last_row: np.ndarray  # int64 index of each symbol's last price date (N)
    close: np.ndarray  # float64 (T, N), NaN = no price
    last_close: np.ndarray  # float64 (T, N): the last close up to each date, NaN before any
    open: np.ndarray | None  # float64 (T, N) or None
    bench_return: np.ndarray  # float64 (T,): benchmark return on each price date (0 if none)
    bench_has: np.ndarray  # bool (T,): the benchmark has that date

    @property
    def shape(self) -> tuple[int, int]:
        return self.close.shape


def _pivot(
    prices: pl.DataFrame, column: str, days: np.ndarray, codes: np.ndarray, n_sym: int
) -> np.ndarray:
    d_idx = np.searchsorted(days, prices["date"].cast(pl.Int32).to_numpy().astype(np.int64))
    values = prices[column].cast(pl.Float64)
    if column == "close":
        return _dense(d_idx, codes, values.to_numpy(), (days.size, n_sym), "prices")
    out = np.full((days.size, n_sym), np.nan)
    out[d_idx, codes] = values.fill_null(np.nan).to_numpy()
    return out


def _forward_fill(close: np.ndarray) -> np.ndarray:
    """Each symbol's last close up to each date (NaN before its first price)."""
    rows = np.where(np.isnan(close), 0, np.arange(close.shape[0])[:, None])
    np.maximum.accumulate(rows, axis=0, out=rows)
    return close[rows, np.arange(close.shape[1])]


def _put_flat(store: ArrowStore, name: str, matrix: np.ndarray) -> DatasetRef:
    """Store a matrix as one Float64 column in ONE record batch, so it maps as one buffer.

    (The store's writer splits at ``BATCH_ROWS``; a 3,000 x 2,520 panel would be two chunks.)
    The bytes depend only on the values, so equal panels get equal digests.
    """
    table = pa.table({name: pa.array(np.ascontiguousarray(matrix).ravel(), pa.float64())})
    tmp = store.staging_file("panel.")
    try:
        with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=max(1, table.num_rows))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        msg = f"cannot write the price panel in store `{store.root}`: {exc.strerror or exc}"
        raise StoreError(msg) from None
    return store.adopt(tmp)


def build_panel(
    prices_ref: DatasetRef, store: ArrowStore, benchmark_ref: DatasetRef | None = None
) -> PanelRef:
    """Pivot the prices of ``prices_ref`` once and store the dense arrays; return their refs.

    Idempotent: equal prices give equal entries (equal digests). ``open`` is stored when the
    prices have that column (for ``backtest.execution = "next_open"``). The benchmark is the
    equal-weight universe of ``benchmark_ref`` (benchmark prices, as ``data.benchmark`` gives
    a run), default the prices themselves, as :func:`qpipe.run` does.

    Raises
    ------
    BacktestError
        The prices are empty, miss ``date``/``symbol``/``close`` or repeat a (date, symbol).
    """
    prices = store.open(prices_ref)
    for col in ("date", "symbol", "close"):
        if col not in prices.columns:
            msg = f"prices `{prices_ref.path}` are missing column `{col}`"
            raise BacktestError(msg)
    if prices.height == 0:
        msg = f"prices `{prices_ref.path}` are empty; nothing to backtest"
        raise BacktestError(msg)
    days = prices["date"].unique().sort().cast(pl.Int32).to_numpy().astype(np.int64)
    symbols, codes = _universe(prices["symbol"])
    close = _pivot(prices, "close", days, codes, symbols.len())
    last_row = np.full(symbols.len(), -1, np.int64)
    np.maximum.at(last_row, codes, np.searchsorted(days, prices["date"].cast(pl.Int32).to_numpy()))
    axes = store.put(pl.DataFrame({"day": pl.Series(days.astype(np.int32), dtype=pl.Int32)}))
    syms = store.put(pl.DataFrame({"symbol": symbols, "last_row": last_row}))
    close_ref = _put_flat(store, "close", close)
    last_ref = _put_flat(store, "last_close", _forward_fill(close))
    open_ref = None
    if "open" in prices.columns:
        open_ref = _put_flat(store, "open", _pivot(prices, "open", days, codes, symbols.len()))
    bench_prices = prices if benchmark_ref is None else store.open(benchmark_ref)
    bench = store.put(equal_weight_benchmark(bench_prices))
    return PanelRef(prices_ref, axes, syms, close_ref, last_ref, bench, open_ref, benchmark_ref)


def _matrix(store: ArrowStore, ref: DatasetRef, shape: tuple[int, int]) -> np.ndarray:
    column = store.open(ref).to_series(0)
    values = column.to_numpy(allow_copy=False)  # the memory-mapped buffer itself
    return values.reshape(shape)


def open_panel(ref: PanelRef, store: ArrowStore) -> Panel:
    """Memory-map the panel's arrays (no copy of the matrices)."""
    days = store.open(ref.axes)["day"].to_numpy().astype(np.int64)
    sym = store.open(ref.symbols)
    shape = (days.size, sym.height)
    open_ = _matrix(store, ref.open, shape) if ref.open is not None else None
    bench = store.open(ref.benchmark)
    b_days = bench["date"].cast(pl.Int32).to_numpy().astype(np.int64)
    pos = np.searchsorted(days, b_days)
    ok = pos < days.size
    ok[ok] = days[pos[ok]] == b_days[ok]
    bench_return = np.zeros(days.size)
    bench_has = np.zeros(days.size, np.bool_)
    bench_return[pos[ok]] = bench["return"].cast(pl.Float64).to_numpy()[ok]
    bench_has[pos[ok]] = True
    return Panel(
        ref=ref,
        days=days,
        symbols=sym["symbol"],
        last_row=sym["last_row"].to_numpy(),
        close=_matrix(store, ref.close, shape),
        last_close=_matrix(store, ref.last_close, shape),
        open=open_,
        bench_return=bench_return,
        bench_has=bench_has,
    )
