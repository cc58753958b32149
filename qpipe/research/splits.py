"""Out-of-sample splits of a trading calendar: walk-forward and combinatorial purged CV.

A split is plain frozen data: each :class:`Fold` holds its training and test windows as
inclusive date ranges (training may be several ranges), and every fold and every
:class:`Splits` has a ``digest`` (SHA-256 of its canonical JSON) that the ledger records.
Nothing here reads files or prices; ``dates`` is the sorted trading calendar.

How the windows are laid out, in trading days (positions in ``dates``):

- **walk-forward** (:func:`walk_forward`): fold k tests ``[s_k, s_k + test)`` with
  ``s_k = train + purge + k * step``; it trains on the ``train`` days that end ``purge`` days
  before ``s_k`` (anchored: on every day from the first up to there). Only full test windows
  are made.
- **combinatorial purged** (:func:`combinatorial_purged`): the calendar is cut into
  ``n_groups`` contiguous groups (the first ``len(dates) % n_groups`` one day longer); each of
  the C(N, k) combinations of ``k = n_test_groups`` groups is a test set and the other groups
  train, minus ``purge`` days on both sides of every test block and ``embargo`` more days after
  it. The C(N-1, k-1) backtest *paths* reuse every group's out-of-sample result once each
  (:attr:`Splits.paths`).

Why ``purge`` is the warm-up plus the holding horizon (:func:`purge_default`): an observation
on day i uses prices from ``i - warmup`` (its features) to ``i + holding`` (the return of the
position taken that day). Dropping ``purge >= holding`` days before a test block keeps every
training horizon out of the test block; dropping ``purge >= warmup`` days after it keeps every
training feature from reading test prices.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from qpipe._canonical import canonical_digest
from qpipe.errors import ResearchError

if TYPE_CHECKING:
    from qpipe.config import ThreadSafeConfig

__all__ = [
    "DateRange",
    "Fold",
    "Splits",
    "canonical_digest",
    "check_test_window",
    "combinatorial_purged",
    "holding_days",
    "purge_default",
    "range_mask",
    "walk_forward",
]

Method = Literal["walk_forward", "cpcv"]

# Longest holding period between two rebalances, in trading days: a calendar month holds at
# most 23 weekdays, an ISO week 5.
_HOLDING = {"daily": 1, "weekly": 5, "month_end": 23, "month_start": 23}


@dataclass(frozen=True, slots=True)
class DateRange:
    """Trading days from ``start`` to ``end``, both included."""

    start: dt.date
    end: dt.date

    def to_list(self) -> list[str]:
        return [self.start.isoformat(), self.end.isoformat()]


@dataclass(frozen=True, slots=True)
class Fold:
    """One split: train on ``train``, evaluate on ``test`` (ranges in time order).

    ``test_groups`` names the CPCV groups in the test set (empty for walk-forward).
    """

    index: int
    train: tuple[DateRange, ...]
    test: tuple[DateRange, ...]
    test_groups: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "train": [r.to_list() for r in self.train],
            "test": [r.to_list() for r in self.test],
            "test_groups": list(self.test_groups),
        }

    @property
    def digest(self) -> str:
        return canonical_digest(self.to_dict())


@dataclass(frozen=True, slots=True)
class Splits:
    """The folds of one split method, its parameters and (CPCV) its groups and paths.

    ``paths[p][g]`` is the index of the fold whose test result path ``p`` uses for group ``g``.
    """

    method: Method
    params: tuple[tuple[str, int | bool], ...]
    folds: tuple[Fold, ...]
    groups: tuple[DateRange, ...] = ()
    paths: tuple[tuple[int, ...], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "params": dict(self.params),
            "folds": [f.to_dict() for f in self.folds],
            "groups": [g.to_list() for g in self.groups],
            "paths": [list(p) for p in self.paths],
        }

    @property
    def digest(self) -> str:
        return canonical_digest(self.to_dict())

    def __len__(self) -> int:
        return len(self.folds)


def _calendar(dates: Iterable[Any]) -> list[dt.date]:
    """The trading calendar as strictly increasing ``datetime.date`` values."""
    values = dates.to_list() if hasattr(dates, "to_list") else list(dates)
    out = [v if type(v) is dt.date else _as_date(v) for v in values]
    if any(b <= a for a, b in itertools.pairwise(out)):
        msg = "`dates` must be strictly increasing trading dates (sorted, no duplicates)"
        raise ResearchError(msg)
    return out


def _as_date(v: Any) -> dt.date:
    if isinstance(v, dt.datetime):
        return v.date()
    if isinstance(v, dt.date):
        return v
    if isinstance(v, np.datetime64):
        return dt.date.fromisoformat(str(v.astype("datetime64[D]")))
    if isinstance(v, str):
        return dt.date.fromisoformat(v)
    msg = f"`dates` holds {type(v).__name__} values; expected dates"
    raise ResearchError(msg)


def _at_least(name: str, value: int, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        msg = f"`{name}` must be an integer number of trading days, got {value!r}"
        raise ResearchError(msg)
    if value < low:
        msg = f"`{name}` must be >= {low}, got {value}"
        raise ResearchError(msg)
    return int(value)


def _ranges(days: list[dt.date], spans: Sequence[tuple[int, int]]) -> tuple[DateRange, ...]:
    """Half-open index spans ``[a, b)`` as date ranges, dropping empty spans."""
    return tuple(DateRange(days[a], days[b - 1]) for a, b in spans if b > a)


def walk_forward(
    dates: Iterable[Any],
    train: int,
    test: int,
    step: int | None = None,
    anchored: bool = False,
    purge: int | None = None,
    embargo: int = 0,
) -> Splits:
    """Rolling (or anchored) train/test windows over the trading calendar.

    Parameters
    ----------
    dates
        The trading calendar, strictly increasing (dates, ISO strings or a Polars date Series).
    train, test
        Window lengths in trading days.
    step
        Trading days between successive test windows; default ``test`` (test windows tile).
    anchored
        Train from the first date (an expanding window) instead of the last ``train`` days.
    purge
        Trading days left out between a training window and its test window; ``None`` is 0.
        Use :func:`purge_default` for the strategy's warm-up plus holding horizon.
    embargo
        Trading days after each test block kept out of training. A walk-forward fold trains
        only on the past, so nothing follows its test block; accepted for a uniform signature
        and recorded in the parameters.

    Returns
    -------
    Splits
        ``method="walk_forward"``, one fold per full test window, in time order.

    >>> days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(10)]
    >>> s = walk_forward(days, train=4, test=2, purge=1)
    >>> [(f.train[0].start.day, f.train[0].end.day, f.test[0].start.day) for f in s.folds]
    [(1, 4, 6), (3, 6, 8)]
    """
    days = _calendar(dates)
    train = _at_least("train", train, 1)
    test = _at_least("test", test, 1)
    step = test if step is None else _at_least("step", step, 1)
    purge = 0 if purge is None else _at_least("purge", purge, 0)
    embargo = _at_least("embargo", embargo, 0)
    if purge >= train:
        msg = f"`purge` ({purge} trading days) must be < `train` ({train})"
        raise ResearchError(msg)
    need = train + purge + test
    if need > len(days):
        msg = (
            f"walk-forward windows `train` + `purge` + `test` = {need} trading days are longer "
            f"than the data ({len(days)} trading days)"
        )
        raise ResearchError(msg)
    folds = []
    for k, start in enumerate(range(train + purge, len(days) - test + 1, step)):
        first = 0 if anchored else start - purge - train
        folds.append(
            Fold(k, _ranges(days, [(first, start - purge)]), _ranges(days, [(start, start + test)]))
        )
    params = {
        "train": train, "test": test, "step": step, "anchored": bool(anchored),
        "purge": purge, "embargo": embargo,
    }  # fmt: skip
    return Splits("walk_forward", tuple(params.items()), tuple(folds))


def _group_bounds(n: int, n_groups: int) -> list[tuple[int, int]]:
    """``n_groups`` contiguous half-open spans over ``n`` days, the first ``n % n_groups``
    one day longer (as ``numpy.array_split``)."""
    size, extra = divmod(n, n_groups)
    bounds, a = [], 0
    for g in range(n_groups):
        b = a + size + (1 if g < extra else 0)
        bounds.append((a, b))
        a = b
    return bounds


def _train_mask(
    n: int, bounds: list[tuple[int, int]], test_groups: tuple[int, ...], purge: int, embargo: int
) -> np.ndarray:
    """Training days: not in a test group, nor within ``purge`` days before a test block,
    nor within ``purge + embargo`` days after one."""
    test = np.zeros(n, dtype=bool)
    for g in test_groups:
        test[bounds[g][0] : bounds[g][1]] = True
    keep = ~test
    edges = np.diff(np.concatenate(([0], test.view(np.int8), [0])))
    for a in np.flatnonzero(edges == 1):  # a test block starts at a
        keep[max(0, a - purge) : a] = False
    for b in np.flatnonzero(edges == -1):  # a test block ends before b
        keep[b : b + purge + embargo] = False
    return keep


def _spans(mask: np.ndarray) -> list[tuple[int, int]]:
    """The maximal runs of True in ``mask`` as half-open index spans."""
    edges = np.diff(np.concatenate(([0], mask.view(np.int8), [0])))
    return list(
        zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True)
    )


def _paths(combos: list[tuple[int, ...]], n_groups: int) -> tuple[tuple[int, ...], ...]:
    """Path p takes, for group g, the p-th split (in combination order) that tests g."""
    testing = [[i for i, c in enumerate(combos) if g in c] for g in range(n_groups)]
    n_paths = len(testing[0])
    return tuple(tuple(testing[g][p] for g in range(n_groups)) for p in range(n_paths))


def combinatorial_purged(
    dates: Iterable[Any],
    n_groups: int,
    n_test_groups: int,
    purge: int | None = None,
    embargo: int = 0,
) -> Splits:
    """Combinatorial purged cross-validation (López de Prado) over the trading calendar.

    Parameters
    ----------
    dates
        The trading calendar, strictly increasing.
    n_groups
        N contiguous groups (>= 2, at most one per trading day).
    n_test_groups
        k groups tested per split (1 <= k < N); there are C(N, k) splits and C(N-1, k-1) paths.
    purge
        Trading days dropped from training on both sides of each test block; ``None`` is 0.
    embargo
        More trading days dropped from training after each test block.

    Returns
    -------
    Splits
        ``method="cpcv"``; fold i tests the i-th combination in lexicographic order.

    >>> days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(12)]
    >>> s = combinatorial_purged(days, n_groups=4, n_test_groups=2)
    >>> len(s.folds), len(s.paths), s.folds[0].test_groups
    (6, 3, (0, 1))
    """
    days = _calendar(dates)
    n_groups = _at_least("n_groups", n_groups, 2)
    n_test_groups = _at_least("n_test_groups", n_test_groups, 1)
    purge = 0 if purge is None else _at_least("purge", purge, 0)
    embargo = _at_least("embargo", embargo, 0)
    if n_test_groups >= n_groups:
        msg = f"`n_test_groups` ({n_test_groups}) must be < `n_groups` ({n_groups})"
        raise ResearchError(msg)
    if n_groups > len(days):
        msg = f"`n_groups` ({n_groups}) is larger than the data ({len(days)} trading days)"
        raise ResearchError(msg)
    bounds = _group_bounds(len(days), n_groups)
    shortest = min(b - a for a, b in bounds)
    if purge >= shortest:
        msg = f"`purge` ({purge} trading days) must be < the group length ({shortest})"
        raise ResearchError(msg)
    combos = list(itertools.combinations(range(n_groups), n_test_groups))
    folds = []
    for i, combo in enumerate(combos):
        keep = _train_mask(len(days), bounds, combo, purge, embargo)
        if not keep.any():
            msg = f"`purge` + `embargo` ({purge} + {embargo}) leave split {i} no training days"
            raise ResearchError(msg)
        test_mask = np.zeros(len(days), dtype=bool)
        for g in combo:
            test_mask[bounds[g][0] : bounds[g][1]] = True
        folds.append(Fold(i, _ranges(days, _spans(keep)), _ranges(days, _spans(test_mask)), combo))
    params = {
        "n_groups": n_groups,
        "n_test_groups": n_test_groups,
        "purge": purge,
        "embargo": embargo,
    }
    return Splits(
        "cpcv", tuple(params.items()), tuple(folds), _ranges(days, bounds), _paths(combos, n_groups)
    )


def range_mask(dates: Iterable[Any], ranges: Sequence[DateRange]) -> np.ndarray:
    """A boolean array over ``dates``: True where a date lies in one of ``ranges``."""
    days = np.array(_calendar(dates), dtype="datetime64[D]")
    mask = np.zeros(days.size, dtype=bool)
    for r in ranges:
        mask |= (days >= np.datetime64(r.start)) & (days <= np.datetime64(r.end))
    return mask


def holding_days(cfg: ThreadSafeConfig) -> int:
    """The holding horizon: the longest stretch, in trading days, between two rebalances."""
    rule = cfg.allocation.rebalance
    return int(cfg.allocation.every_k) if rule == "every_k" else _HOLDING[rule]


def purge_default(cfg: ThreadSafeConfig) -> int:
    """The strategy's warm-up plus its holding horizon, in trading days.

    The warm-up is :func:`qpipe.strategy.warmup_days` (the price rows the strategy's weights on
    a date read: the longest feature look-back, e.g. ``lookback`` for momentum, whose ``skip``
    lies inside it); the holding horizon is :func:`holding_days`.
    """
    from qpipe.strategy import warmup_days

    return warmup_days(cfg) + holding_days(cfg)


def check_test_window(test: int, cfg: ThreadSafeConfig, *, what: str = "`test`") -> None:
    """Raise if a test window of ``test`` trading days can hold no full rebalance period."""
    need = holding_days(cfg)
    if test < need:
        rule = cfg.allocation.rebalance
        msg = (
            f"{what} ({test} trading days) is shorter than one rebalance period "
            f"(`allocation.rebalance` = {rule}: {need} trading days)"
        )
        raise ResearchError(msg)
