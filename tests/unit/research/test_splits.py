"""Walk-forward and combinatorial purged splits: layout, paths, leakage property, bad input."""

from __future__ import annotations

import datetime as dt
import itertools
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from qpipe.config import ThreadSafeConfig
from qpipe.errors import ResearchError
from qpipe.research import (
    DateRange,
    check_test_window,
    combinatorial_purged,
    holding_days,
    purge_default,
    range_mask,
    walk_forward,
)


def business_days(n: int, start: dt.date = dt.date(2020, 1, 1)) -> list[dt.date]:
    out, d = [], start
    while len(out) < n:
        if d.weekday() < 5:
            out.append(d)
        d += dt.timedelta(days=1)
    return out


def index_sets(days, fold):
    pos = {d: i for i, d in enumerate(days)}

    def expand(ranges):
        return [list(range(pos[r.start], pos[r.end] + 1)) for r in ranges]

    return expand(fold.train), expand(fold.test)


# --- walk-forward --------------------------------------------------------------------------------


def test_walk_forward_rolling_layout_by_hand():
    days = business_days(20)
    s = walk_forward(days, train=6, test=3, purge=2)
    # fold k tests [8 + 3k, 11 + 3k) and trains on [3k, 6 + 3k)
    got = [index_sets(days, f) for f in s.folds]
    assert got == [
        ([list(range(0, 6))], [list(range(8, 11))]),
        ([list(range(3, 9))], [list(range(11, 14))]),
        ([list(range(6, 12))], [list(range(14, 17))]),
        ([list(range(9, 15))], [list(range(17, 20))]),
    ]
    assert s.method == "walk_forward"
    assert dict(s.params) == {
        "train": 6, "test": 3, "step": 3, "anchored": False, "purge": 2, "embargo": 0,
    }  # fmt: skip


def test_walk_forward_anchored_and_step():
    days = business_days(30)
    s = walk_forward(days, train=10, test=5, step=7, anchored=True)
    starts = [index_sets(days, f)[1][0][0] for f in s.folds]
    assert starts == [10, 17, 24]  # 31 would not fit a full test window
    for f in s.folds:
        train, test = index_sets(days, f)
        assert train == [list(range(0, test[0][0]))]


def test_walk_forward_accepts_a_polars_series_and_iso_strings():
    days = business_days(40)
    a = walk_forward(pl.Series(days), 20, 10)
    b = walk_forward([d.isoformat() for d in days], 20, 10)
    assert a == b
    assert a.digest == b.digest
    assert a.digest != walk_forward(days, 20, 10, purge=1).digest
    assert a.folds[0].digest != a.folds[1].digest


def test_splits_round_trip_to_plain_data():
    s = combinatorial_purged(business_days(60), 6, 2, purge=2, embargo=1)
    d = s.to_dict()
    assert d["method"] == "cpcv"
    assert d["params"] == {"n_groups": 6, "n_test_groups": 2, "purge": 2, "embargo": 1}
    assert all(isinstance(x, str) for f in d["folds"] for r in f["train"] for x in r)
    assert len(s) == 15


# --- CPCV ---------------------------------------------------------------------------------------


def test_cpcv_counts_and_paths_6_2():
    days = business_days(600)
    s = combinatorial_purged(days, n_groups=6, n_test_groups=2)
    assert len(s.folds) == math.comb(6, 2) == 15
    assert len(s.paths) == math.comb(5, 1) == 5
    for p in s.paths:
        for g, fold in enumerate(p):
            assert g in s.folds[fold].test_groups
    # every (split, tested group) pair is used by exactly one path
    used = sorted((fold, g) for p in s.paths for g, fold in enumerate(p))
    assert used == sorted((f.index, g) for f in s.folds for g in f.test_groups)


def test_cpcv_purge_and_embargo_by_hand():
    days = business_days(40)  # 4 groups of 10
    s = combinatorial_purged(days, n_groups=4, n_test_groups=1, purge=2, embargo=3)
    train, test = index_sets(days, s.folds[1])  # tests group 1 = [10, 20)
    assert test == [list(range(10, 20))]
    # purge 2 before, purge + embargo = 5 after
    assert train == [list(range(0, 8)), list(range(25, 40))]
    assert s.groups[0] == DateRange(days[0], days[9])


def test_cpcv_unequal_groups_follow_array_split():
    days = business_days(23)
    s = combinatorial_purged(days, n_groups=4, n_test_groups=2)
    sizes = [len(range_mask(days, [g]).nonzero()[0]) for g in s.groups]
    assert sizes == [len(a) for a in np.array_split(np.arange(23), 4)] == [6, 6, 6, 5]


# --- the leakage property -----------------------------------------------------------------------


def assert_no_leak(days, splits, warmup, holding):
    """No training day i has its horizon [i − warmup, i + holding] touching a test day."""
    checked = 0
    for fold in splits.folds:
        train, test = index_sets(days, fold)
        test_days = {i for block in test for i in block}
        for block in train:
            for i in block:
                assert i not in test_days
                for a, b in ((blk[0], blk[-1]) for blk in test):
                    assert i + holding < a or i - warmup > b, (fold.index, i, a, b)
                checked += 1
    return checked


@settings(deadline=None, max_examples=150)
@given(
    warmup=st.integers(0, 40),
    holding=st.integers(1, 25),
    train_extra=st.integers(0, 80),
    test=st.integers(1, 60),
    step=st.one_of(st.none(), st.integers(1, 60)),
    anchored=st.booleans(),
    embargo=st.integers(0, 10),
    spare=st.integers(-5, 200),
)
def test_walk_forward_never_trains_on_a_horizon_into_its_test(
    warmup, holding, train_extra, test, step, anchored, embargo, spare
):
    purge = warmup + holding
    train = purge + 1 + train_extra
    n = train + purge + test + spare
    days = business_days(n)
    if spare < 0:  # the windows do not fit: refused, naming the limit
        with pytest.raises(ResearchError, match="longer than the data"):
            walk_forward(days, train, test, step, anchored, purge, embargo)
        event("rejected")
        return
    s = walk_forward(days, train, test, step, anchored, purge, embargo)
    event("split")
    assert len(s.folds) == (n - train - purge - test) // (step or test) + 1
    assert assert_no_leak(days, s, warmup, holding) >= len(s.folds)


def expected_train(n, test_days, purge, embargo):
    """Brute force: day i trains unless a test day lies in [i - purge - embargo, i + purge]."""
    return [
        i
        for i in range(n)
        if not any(j in test_days for j in range(i - purge - embargo, i + purge + 1))
    ]


@settings(deadline=None, max_examples=150)
@given(
    n_groups=st.integers(2, 8),
    k_frac=st.floats(0.0, 0.999),
    warmup=st.integers(0, 20),
    holding=st.integers(1, 10),
    embargo=st.integers(0, 10),
    spare=st.integers(1, 30),
)
def test_cpcv_never_trains_on_a_horizon_into_a_test_group(
    n_groups, k_frac, warmup, holding, embargo, spare
):
    k = 1 + int(k_frac * (n_groups - 1))
    purge = warmup + holding
    n = n_groups * (purge + spare)
    days = business_days(n)
    size = n // n_groups
    expected = [
        expected_train(
            n, {i for g in combo for i in range(g * size, (g + 1) * size)}, purge, embargo
        )
        for combo in itertools.combinations(range(n_groups), k)
    ]
    try:
        s = combinatorial_purged(days, n_groups, k, purge, embargo)
    except ResearchError as exc:  # only when purge + embargo swallow every training day
        assert "no training days" in str(exc)
        assert min(len(e) for e in expected) == 0
        event("rejected: no training days")
        return
    event("split")
    assert len(s.folds) == math.comb(n_groups, k)
    assert len(s.paths) == math.comb(n_groups - 1, k - 1)
    assert_no_leak(days, s, warmup, holding)
    for f, want in zip(s.folds, expected, strict=True):
        train, _ = index_sets(days, f)
        assert [i for block in train for i in block] == want
    # the test groups of a split are exactly the groups its test ranges cover
    for f in s.folds:
        mask = range_mask(days, f.test)
        assert mask.sum() == sum(range_mask(days, [s.groups[g]]).sum() for g in f.test_groups)


# --- strategy-derived defaults -------------------------------------------------------------------


def test_purge_default_is_warmup_plus_holding():
    cfg = ThreadSafeConfig.default()  # momentum 252/21, month_end
    assert holding_days(cfg) == 23
    assert purge_default(cfg) == 252 + 23
    weekly = cfg.replace(allocation={"rebalance": "weekly"}, strategy={"lookback": 126})
    assert purge_default(weekly) == 126 + 5
    every = cfg.replace(allocation={"rebalance": "every_k", "every_k": 10})
    assert purge_default(every) == 252 + 10


def test_check_test_window_needs_one_rebalance_period():
    cfg = ThreadSafeConfig.default()
    check_test_window(23, cfg)
    with pytest.raises(ResearchError, match=r"`test` \(21 trading days\) is shorter than one"):
        check_test_window(21, cfg)


# --- bad input ----------------------------------------------------------------------------------

DAYS = business_days(100)


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: walk_forward(DAYS, 80, 30), ["longer than the data", "110", "100"]),
        (lambda: walk_forward(DAYS, 20, 10, purge=20), ["`purge`", "< `train` (20)"]),
        (lambda: walk_forward(DAYS, 0, 10), ["`train`", ">= 1"]),
        (lambda: walk_forward(DAYS, 10, 10, step=0), ["`step`", ">= 1"]),
        (lambda: walk_forward(DAYS, 10, 10, purge=-1), ["`purge`", ">= 0"]),
        (lambda: walk_forward(DAYS, 10.5, 10), ["`train`", "integer"]),
        (lambda: walk_forward(DAYS[::-1], 10, 10), ["`dates`", "increasing"]),
        (lambda: walk_forward(DAYS + DAYS[-1:], 10, 10), ["`dates`", "duplicates"]),
        (lambda: combinatorial_purged(DAYS, 1, 1), ["`n_groups`", ">= 2"]),
        (lambda: combinatorial_purged(DAYS, 4, 4), ["`n_test_groups`", "< `n_groups` (4)"]),
        (lambda: combinatorial_purged(DAYS[:5], 6, 2), ["`n_groups`", "larger than the data"]),
        (lambda: combinatorial_purged(DAYS, 5, 2, purge=20), ["`purge`", "group length (20)"]),
    ],
)
def test_bad_splits_are_one_line_errors_naming_the_parameter(call, words):
    with pytest.raises(ResearchError) as info:
        call()
    text = str(info.value)
    assert "\n" not in text
    for w in words:
        assert w in text


def test_a_split_leaving_no_training_day_is_refused():
    with pytest.raises(ResearchError, match="no training days"):
        combinatorial_purged(business_days(20), 2, 1, purge=5, embargo=6)


def test_every_cpcv_combination_is_present_once():
    s = combinatorial_purged(business_days(80), 5, 3)
    assert [f.test_groups for f in s.folds] == list(itertools.combinations(range(5), 3))
