"""ThreadSafeConfig: deep immutability, digest stability, overrides, all-at-once errors, threads."""

from __future__ import annotations

import pickle
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qpipe.config import DEFAULTS, FrozenTable, ThreadSafeConfig, parse_override
from qpipe.errors import ConfigError

scalars = st.one_of(
    st.booleans(),
    st.integers(-(10**9), 10**9),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
tables = st.dictionaries(
    st.text(min_size=1, max_size=6), st.one_of(scalars, st.lists(scalars, max_size=4)), max_size=6
)


@given(tables)
def test_digest_ignores_key_order(table):
    forward = ThreadSafeConfig({"sweep": table})
    backward = ThreadSafeConfig({"sweep": dict(reversed(list(table.items())))})
    assert forward.digest == backward.digest
    assert forward == backward and hash(forward) == hash(backward)


@given(tables, st.text(min_size=1, max_size=6), scalars)
def test_digest_changes_with_any_change(table, key, value):
    a = ThreadSafeConfig({"sweep": table})
    changed = {**table, key: value}
    b = ThreadSafeConfig({"sweep": changed})
    assert (a.digest == b.digest) == (a.to_dict() == b.to_dict())


@given(tables)
def test_deeply_immutable(table):
    cfg = ThreadSafeConfig({"sweep": {**table, "nested": [1, 2]}})
    with pytest.raises(ConfigError):
        cfg.backtest = {}
    with pytest.raises(ConfigError):
        cfg.backtest.cost_bps = 1.0
    with pytest.raises(ConfigError):
        cfg.sweep["nested"] = 3
    with pytest.raises(ConfigError):
        del cfg.sweep.nested
    with pytest.raises((ConfigError, AttributeError, TypeError)):
        cfg.sweep["nested"].append(3)  # lists become tuples
    assert isinstance(cfg.sweep, FrozenTable)
    assert cfg.sweep["nested"] == (1, 2)


def test_digest_is_stable_across_processes_and_pickling():
    cfg = ThreadSafeConfig.default()
    again = pickle.loads(pickle.dumps(cfg))
    assert again.digest == cfg.digest
    # pinned: the canonical form of the defaults must not drift silently
    assert len(cfg.digest) == 64


def test_replace_returns_new_config_and_leaves_original():
    cfg = ThreadSafeConfig.default()
    cfg2 = cfg.replace(backtest={"cost_bps": 5})
    assert cfg.backtest.cost_bps == 10.0 and cfg2.backtest.cost_bps == 5.0
    assert cfg2.digest != cfg.digest
    assert cfg2.backtest.initial_capital == cfg.backtest.initial_capital


def test_dotted_overrides_apply_in_order():
    cfg = ThreadSafeConfig.default().with_overrides(
        [
            "backtest.cost_bps=5",
            "allocation.long_only=false",
            "backtest.cost_bps=7",
            "strategy.kind=mean_reversion",
        ]
    )
    assert cfg.backtest.cost_bps == 7.0
    assert cfg.allocation.long_only is False
    assert cfg.strategy.kind == "mean_reversion"


@pytest.mark.parametrize("bad", ["backtest.cost_bps", "cost_bps=5", "=5", "a.b.c=1", "backtest.=1"])
def test_malformed_override_is_rejected(bad):
    with pytest.raises(ConfigError, match="malformed"):
        parse_override(bad)


def test_all_problems_reported_at_once_with_dotted_paths():
    with pytest.raises(ConfigError) as err:
        ThreadSafeConfig(
            {
                "backtest": {"cost_bsp": 5, "initial_capital": "lots"},
                "allocation": {"top_n": 0},
                "strategyy": {},
            }
        )
    text = str(err.value)
    assert text.startswith("4 config errors")
    assert "`backtest.cost_bsp` (did you mean `backtest.cost_bps`?)" in text
    assert "`backtest.initial_capital` must be float" in text
    assert "`allocation.top_n` must be >= 1" in text
    assert "unknown section `strategyy` (did you mean `strategy`?)" in text
    assert "\n" not in text


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("backtest.cost_bps", -1.0, "`backtest.cost_bps` must be >= 0"),
        ("strategy.lookback", 0, "`strategy.lookback` must be >= 1"),
        ("strategy.kind", "magic", "`strategy.kind` must be one of"),
        ("allocation.quantile", 0.9, "`allocation.quantile` must be > 0 and <= 0.5"),
    ],
)
def test_out_of_range_values(key, value, fragment):
    section, k = key.split(".")
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        ThreadSafeConfig({section: {k: value}})


def test_int_accepted_where_float_expected_and_digest_equal():
    assert (
        ThreadSafeConfig({"backtest": {"cost_bps": 5}}).digest
        == ThreadSafeConfig({"backtest": {"cost_bps": 5.0}}).digest
    )


def test_from_toml_errors_name_file_line_and_column(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml` does not exist"):
        ThreadSafeConfig.from_toml(missing)
    bad = tmp_path / "bad.toml"
    bad.write_text("[backtest]\ncost_bps = = 5\n")
    with pytest.raises(ConfigError, match=r"bad.toml` is not valid TOML: .*line 2, column"):
        ThreadSafeConfig.from_toml(bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[backtest]\ncostbps = 5\n")
    with pytest.raises(
        ConfigError, match=r"unknown.toml`: 1 config error: unknown key `backtest.costbps`"
    ):
        ThreadSafeConfig.from_toml(unknown)


def test_toml_round_trip_keeps_digest(tmp_path):
    cfg = ThreadSafeConfig.default().replace(sweep={"strategy.lookback": [63, 126]})
    path = tmp_path / "c.toml"
    path.write_text(cfg.to_toml())
    assert ThreadSafeConfig.from_toml(path).digest == cfg.digest


def test_every_default_key_is_typed_and_valid():
    cfg = ThreadSafeConfig.default()
    for section, table in DEFAULTS.items():
        for key in table:
            assert cfg.get(f"{section}.{key}") == table[key]


def test_many_threads_read_and_try_to_mutate_one_config():
    cfg = ThreadSafeConfig.default()
    digest = cfg.digest
    errors: list[BaseException] = []
    refused = []
    barrier = threading.Barrier(16)

    def worker(i: int) -> None:
        try:
            barrier.wait()
            for _ in range(500):
                assert cfg.backtest.cost_bps == 10.0
                assert cfg.digest == digest
                try:
                    cfg.backtest.cost_bps = float(i)
                except ConfigError:
                    refused.append(i)
                try:
                    cfg.allocation["top_n"] = i
                except ConfigError:
                    refused.append(i)
                derived = cfg.replace(backtest={"cost_bps": float(i)})
                assert derived.backtest.cost_bps == float(i)
        except BaseException as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(refused) == 16 * 500 * 2
    assert cfg.digest == digest and cfg.backtest.cost_bps == 10.0


def test_install_check_accepts_the_pinned_majors_and_rejects_others(monkeypatch):
    from importlib import metadata

    from qpipe import _versions

    assert _versions.check() == []  # what pip installed here holds the pins
    real = metadata.version
    monkeypatch.setattr(
        _versions.metadata, "version", lambda n: "1.26.1" if n == "mlflow" else real(n)
    )
    assert _versions.check() == ["mlflow 1.26.1 is installed but qpipe needs mlflow 3.x"]


def test_dates_may_be_toml_dates_and_are_checked_up_front(tmp_path):
    cfg = ThreadSafeConfig.default().with_overrides(["backtest.start=2020-01-01"])
    assert cfg.backtest.start == "2020-01-01"
    path = tmp_path / "d.toml"
    path.write_text("[data]\nstart = 2016-01-04\nend = 2018-12-31\n")
    assert ThreadSafeConfig.from_toml(path).data.start == "2016-01-04"
    with pytest.raises(ConfigError, match=r"`backtest.start` must be an ISO date .*'01/02/2020'"):
        ThreadSafeConfig({"backtest": {"start": "01/02/2020"}})
    with pytest.raises(ConfigError, match=r"`data.start` \(2020-01-01\) is after `data.end`"):
        ThreadSafeConfig({"data": {"start": "2020-01-01", "end": "2019-01-01"}})
    with pytest.raises(ConfigError, match=r"`data\.end` must be an ISO date"):
        ThreadSafeConfig({"data": {"end": ""}})


@pytest.mark.parametrize("text", ['backtest.cost_bps=5\n7', 'data.source="a\nb"', "run.out=x\r\ny"])
def test_an_override_with_a_line_break_is_refused_not_truncated(text):
    with pytest.raises(ConfigError, match="line break"):
        ThreadSafeConfig.default().with_overrides([text])
