"""Canonical JSON: one text per value, shared by the ledger and the config digest."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qpipe._canonical import canonical_digest, canonical_json, jsonable
from qpipe.config import ThreadSafeConfig


def _old_canonical(obj) -> str:
    """The form every digest was taken over before the module existed (must never change)."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_canonical_json_is_the_historical_form(value):
    assert canonical_json(value) == _old_canonical(value)
    want = hashlib.sha256(_old_canonical(value).encode("utf-8")).hexdigest()
    assert canonical_digest(value) == want


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"data": {"source": "prix-é.csv"}, "backtest": {"cost_bps": 5.0}},
        {"strategy": {"kind": "mean_reversion"}, "allocation": {"top_n": 7}},
    ],
)
def test_config_digest_is_unchanged(changes):
    cfg = ThreadSafeConfig.default().replace(**changes)
    text = _old_canonical(cfg.to_dict())
    assert cfg.digest == hashlib.sha256(text.encode()).hexdigest()


def test_canonical_json_refuses_non_finite_numbers():
    with pytest.raises(ValueError):
        canonical_json({"x": math.nan})


def test_jsonable_makes_python_values_plain_json():
    value = {
        "nan": math.nan,
        "inf": -math.inf,
        "when": dt.date(2024, 1, 2),
        "path": Path("/a/b"),
        "tuple": (1, 2),
        "set": {3, 1},
        "np": np.float64(1.5),
        "arr": np.array([1, 2]),
        "bytes": b"\x00\xff",
        dt.date(2024, 1, 3): 1,
        "bad": "x\udc80",
    }
    out = jsonable(value)
    assert out == {
        "nan": None,
        "inf": None,
        "when": "2024-01-02",
        "path": "/a/b",
        "tuple": [1, 2],
        "set": [1, 3],
        "np": 1.5,
        "arr": [1, 2],
        "bytes": "AP8=",
        "2024-01-03": 1,
        "bad": "x?",
    }
    assert canonical_json(out)  # and it is canonical-ready
