"""ThreadSafeConfig is immutable all the way down, DEFAULTS included; digest, hash and equality
always agree with the content."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from qpipe import config as config_module
from qpipe.config import DEFAULTS, ThreadSafeConfig
from qpipe.errors import ConfigError

SECTIONS = sorted(s for s in DEFAULTS if DEFAULTS[s])
reached = Counter[str]()


def _attempts(cfg: ThreadSafeConfig, section: str, key: str) -> list[tuple[str, Any]]:
    """Every way one might try to change a value in place."""
    table = getattr(cfg, section)

    def set_attr() -> None:
        setattr(table, key, 1)

    def set_item() -> None:
        table[key] = 1

    def del_attr() -> None:
        delattr(table, key)

    def del_item() -> None:
        del table[key]

    def through_data() -> None:
        table._data[key] = 1

    def update_data() -> None:
        table._data.update({key: 1})

    def pop_data() -> None:
        table._data.pop(key)

    def clear_data() -> None:
        table._data.clear()

    def set_section() -> None:
        setattr(cfg, section, {})

    def del_section() -> None:
        delattr(cfg, section)

    def swap_table() -> None:
        cfg._table = {}  # type: ignore[misc]

    def swap_digest() -> None:
        cfg._digest = "0" * 64  # type: ignore[misc]

    def table_hash() -> None:
        table._hash = 0

    return [
        (f.__name__, f)
        for f in (
            set_attr,
            set_item,
            del_attr,
            del_item,
            through_data,
            update_data,
            pop_data,
            clear_data,
            set_section,
            del_section,
            swap_table,
            swap_digest,
            table_hash,
        )
    ]


@settings(deadline=None, max_examples=60)
@given(section=st.sampled_from(SECTIONS), data=st.data())
def test_every_mutation_path_raises_and_nothing_changes(section: str, data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(DEFAULTS[section])))
    cfg = ThreadSafeConfig.default()
    before = (cfg.digest, hash(cfg), cfg.to_dict(), cfg.canonical_json())
    for name, attempt in _attempts(cfg, section, key):
        with pytest.raises((ConfigError, TypeError, AttributeError)):
            attempt()
        reached[name] += 1
        event(f"tried {name}")
    assert (cfg.digest, hash(cfg), cfg.to_dict(), cfg.canonical_json()) == before
    assert cfg == ThreadSafeConfig.default()


def test_the_mutation_property_reached_every_path() -> None:
    # runs after the property above in the same module; proves it was not vacuous
    test_every_mutation_path_raises_and_nothing_changes()
    assert len(reached) == 13 and min(reached.values()) >= 10, reached


def test_defaults_are_read_only_at_every_level() -> None:
    with pytest.raises(TypeError):
        DEFAULTS["data"]["symbols"] = 5  # type: ignore[index]
    with pytest.raises(TypeError):
        DEFAULTS["data"] = {}  # type: ignore[index]
    for table in (config_module.CHOICES, config_module.RANGES, config_module.DATE_KEYS):
        with pytest.raises(TypeError):
            table["x"] = 1  # type: ignore[index]
    assert ThreadSafeConfig.default().data.symbols == 500


def test_to_dict_is_a_copy() -> None:
    cfg = ThreadSafeConfig.default()
    d = cfg.to_dict()
    d["backtest"]["cost_bps"] = 99.0
    assert cfg.backtest.cost_bps == 10.0
    assert ThreadSafeConfig.from_mapping(d).backtest.cost_bps == 99.0


scalars = st.one_of(
    st.integers(min_value=1, max_value=400), st.sampled_from([5.0, 10.0, 25.0, 0.0])
)


@settings(deadline=None, max_examples=80)
@given(a=st.integers(22, 300), b=st.integers(22, 300), ca=scalars, cb=scalars)
def test_digest_hash_and_equality_agree_with_content(a: int, b: int, ca: Any, cb: Any) -> None:
    x = ThreadSafeConfig.default().replace(
        strategy={"lookback": a}, backtest={"cost_bps": float(ca)}
    )
    y = ThreadSafeConfig.default().replace(
        strategy={"lookback": b}, backtest={"cost_bps": float(cb)}
    )
    same = x.to_dict() == y.to_dict()
    event("same content" if same else "different content")
    assert (x == y) is same
    assert (x.digest == y.digest) is same
    if same:
        assert hash(x) == hash(y)
    assert {x, y} == ({x} if same else {x, y})


def test_many_threads_read_and_derive_at_once() -> None:
    base = ThreadSafeConfig.default()
    digest0 = base.digest
    errors: list[BaseException] = []
    seen: dict[int, set[str]] = {}
    barrier = threading.Barrier(16)

    def work(i: int) -> None:
        try:
            barrier.wait()
            digests = set()
            for j in range(40):
                assert base.backtest.cost_bps == 10.0 and base.digest == digest0
                derived = base.replace(strategy={"lookback": 30 + (i * 40 + j) % 200})
                digests.add(derived.digest)
                assert derived.strategy.lookback == 30 + (i * 40 + j) % 200
            seen[i] = digests
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert base.digest == digest0 and base == ThreadSafeConfig.default()
    expected = {
        ThreadSafeConfig.default().replace(strategy={"lookback": v}).digest for v in range(30, 230)
    }
    assert set().union(*seen.values()) == expected
