"""Long frames to dense matrices, shared by the accounting and the batched sweep: the symbol
universe in byte-wise order, day numbers, a scatter that refuses a repeated cell, option checks.
"""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import polars as pl

from qpipe.errors import BacktestError

__all__ = ["_check_rate", "_codes", "_day_number", "_day_numbers", "_dense", "_universe"]


def _check_rate(name: str, value: float, low: float, high: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and low <= value <= high):
        msg = f"`{name}` must be a finite number in [{low:g}, {high:g}], got {value}"
        raise BacktestError(msg)
    return value


def _day_numbers(frame: pl.DataFrame) -> np.ndarray:
    return frame["date"].cast(pl.Int32).to_numpy().astype(np.int64)


def _dense(
    days: np.ndarray,
    codes: np.ndarray,
    values: np.ndarray,
    shape: tuple[int, int],
    what: str,
) -> np.ndarray:
    """Scatter long rows of finite values into a NaN matrix; a repeated cell is an error."""
    out = np.full(shape, np.nan)
    out[days, codes] = values
    # values are finite, so fewer filled cells than rows means two rows hit one cell
    if int(np.count_nonzero(~np.isnan(out))) != len(days):
        msg = f"{what} frame has duplicate (`date`, `symbol`) rows"
        raise BacktestError(msg)
    return out


def _codes(symbols: pl.Series, universe: pl.Series) -> np.ndarray:
    """Column index of each symbol in the sorted universe (an Enum's physical code)."""
    return symbols.cast(pl.Enum(universe)).to_physical().to_numpy().astype(np.int64)


def _universe(symbols: pl.Series) -> tuple[pl.Series, np.ndarray]:
    """The distinct symbols in byte-wise order, and each row's index into them.

    Goes through a Categorical so that the strings are hashed once, not sorted per row.
    """
    cat = symbols.cast(pl.Categorical)
    phys = cat.to_physical().to_numpy().astype(np.int64)
    distinct = cat.unique()
    names = distinct.cast(pl.String)
    order = names.arg_sort().to_numpy()
    code_of = np.zeros(int(phys.max()) + 1, np.int64)
    code_of[distinct.to_physical().to_numpy()[order]] = np.arange(order.size)
    return names.gather(order).alias("symbol"), code_of[phys]


def _day_number(d: date) -> int:
    return (d - date(1970, 1, 1)).days
