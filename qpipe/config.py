"""Frozen, thread-safe configuration.

A :class:`ThreadSafeConfig` is built once (from built-in defaults, a TOML file, a mapping and
``section.key=value`` overrides) and never changes afterwards: nested tables become
:class:`FrozenTable`, lists become tuples, and every attempt to set, delete or mutate raises
:class:`~qpipe.errors.ConfigError`. Because nothing can change, it is shared across threads with
no lock. Its :attr:`~ThreadSafeConfig.digest` (SHA-256 of a canonical JSON form) identifies a run.

>>> cfg = ThreadSafeConfig.default()
>>> cfg2 = cfg.replace(backtest={"cost_bps": 5.0})
>>> cfg.backtest.cost_bps, cfg2.backtest.cost_bps
(10.0, 5.0)
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import tomli_w

from qpipe import _fs
from qpipe._canonical import canonical_digest
from qpipe._config_check import Schema, check, type_name
from qpipe._frozen import FrozenTable, canonical, freeze, thaw
from qpipe.errors import ConfigError

__all__ = ["DEFAULTS", "FrozenTable", "ThreadSafeConfig", "parse_override", "parse_scalar"]

# Built-in defaults; they also define the schema: every key and its type.
# A section listed in OPEN_SECTIONS accepts any key (values still must be TOML scalars or lists).
DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "data": {
        # "builtin" (the synthetic universe) or a path to CSV / Parquet / Arrow prices
        "source": "builtin",
        "weights": "",  # external weights file; empty = the strategy makes them
        "benchmark": "",  # prices file for benchmark metrics; empty = equal-weight universe
        "membership": "",  # point-in-time universe (symbol, from, to); empty = every priced name
        "symbols": 500,
        "start": "2015-01-01",
        "end": "2024-12-31",
        "seed": 7,
    },
    "strategy": {
        # momentum | mean_reversion | ma_crossover | low_volatility
        "kind": "momentum",
        "lookback": 252,
        "skip": 21,
        "fast": 50,
        "slow": 200,
        "vol_window": 63,
        "zscore_window": 20,
        "signal": "rank",  # rank | zscore | raw
    },
    "allocation": {
        # top_n | long_short | inverse_vol | proportional
        "scheme": "top_n",
        "top_n": 50,
        "quantile": 0.2,
        "rebalance": "month_end",  # daily | weekly | month_end | month_start | every_k
        "every_k": 21,
        "max_weight": 0.1,
        "gross_leverage": 1.0,
        "long_only": True,
        "target_vol": 0.0,  # annualised; 0 disables volatility targeting
        "vol_window": 63,
    },
    "backtest": {
        "initial_capital": 1.0,
        "cost_bps": 10.0,
        "start": "",
        "end": "",
        "slippage_bps": 0.0,
        "execution": "close",  # close | next_open
        "borrow_bps": 0.0,
        "cash_rate": 0.0,
    },
    "validation": {
        "mode": "two_tier",  # two_tier | per_step | none
        "pit_cuts": 3,
        "skip_validated": True,  # skip Tier 1 for data whose digest the ledger has validated
        "max_daily_return": 10.0,  # warn about a close moving more than +1000 % in a day
    },
    "engine": {
        "kind": "local",  # local | ray
        "threads": 0,  # local engine threads for independent steps; 0 = 2
        "address": "",  # ray: empty starts a local cluster on loopback
        "num_cpus": 0,
        "connect_timeout": 30.0,  # ray: seconds to reach `address` before giving up
    },
    "store": {"path": ""},  # empty = <out>/store
    "run": {"out": "runs", "ledger": "", "report": True},
    "sweep": {},
    "research": {
        # out-of-sample research of the [sweep] grid (docs/research.md); off = a plain run
        "method": "off",  # off | walk_forward | cpcv
        "train": 756,  # walk-forward windows, in trading days
        "test": 126,
        "step": 0,  # 0 = test (windows tile)
        "anchored": False,
        "purge": -1,  # trading days; -1 = the strategy's warm-up + holding horizon
        "embargo": 0,
        "groups": 6,  # cpcv: N groups, k test groups
        "test_groups": 2,
    },
}
OPEN_SECTIONS = frozenset({"sweep"})
# ISO dates kept as strings ("" = unbounded where allowed); a TOML date is accepted and converted.
DATE_KEYS: Mapping[str, bool] = {
    "data.start": False,
    "data.end": False,
    "backtest.start": True,
    "backtest.end": True,
}

CHOICES: Mapping[str, tuple[str, ...]] = {
    "strategy.kind": ("momentum", "mean_reversion", "ma_crossover", "low_volatility"),
    "strategy.signal": ("rank", "zscore", "raw"),
    "allocation.scheme": ("top_n", "long_short", "inverse_vol", "proportional"),
    "allocation.rebalance": ("daily", "weekly", "month_end", "month_start", "every_k"),
    "backtest.execution": ("close", "next_open"),
    "validation.mode": ("two_tier", "per_step", "none"),
    "engine.kind": ("local", "ray"),
    "research.method": ("off", "walk_forward", "cpcv"),
}
# (low, high, low_inclusive): a value must lie in this range.
RANGES: Mapping[str, tuple[float, float, bool]] = {
    "data.symbols": (1, 1_000_000, True),
    "strategy.lookback": (1, math.inf, True),
    "strategy.skip": (0, math.inf, True),
    "strategy.fast": (1, math.inf, True),
    "strategy.slow": (2, math.inf, True),
    "strategy.vol_window": (2, math.inf, True),
    "strategy.zscore_window": (2, math.inf, True),
    "allocation.top_n": (1, math.inf, True),
    "allocation.quantile": (0, 0.5, False),
    "allocation.every_k": (1, math.inf, True),
    "allocation.max_weight": (0, math.inf, False),
    "allocation.gross_leverage": (0, math.inf, False),
    "allocation.target_vol": (0, math.inf, True),
    "allocation.vol_window": (2, math.inf, True),
    "backtest.initial_capital": (0, math.inf, False),
    "backtest.cost_bps": (0, 10_000, True),
    "backtest.slippage_bps": (0, 10_000, True),
    "backtest.borrow_bps": (0, 10_000, True),
    "validation.pit_cuts": (0, 100, True),
    "validation.max_daily_return": (0, math.inf, False),
    "engine.threads": (0, 1024, True),
    "engine.num_cpus": (0, 1_000_000, True),
    "engine.connect_timeout": (0, 3600, False),
    "research.train": (1, math.inf, True),
    "research.test": (1, math.inf, True),
    "research.step": (0, math.inf, True),
    "research.purge": (-1, math.inf, True),
    "research.embargo": (0, math.inf, True),
    "research.groups": (2, math.inf, True),
    "research.test_groups": (1, math.inf, True),
}


def _read_only(tables: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only view, nested tables included: module-level tables are shared by every run, so
    changing one must raise instead of silently changing every later config."""
    return MappingProxyType(
        {k: _read_only(v) if isinstance(v, Mapping) else v for k, v in tables.items()}
    )


DEFAULTS = _read_only(DEFAULTS)
DATE_KEYS = _read_only(DATE_KEYS)
CHOICES = _read_only(CHOICES)
RANGES = _read_only(RANGES)


def _schema() -> Schema:
    return Schema(DEFAULTS, OPEN_SECTIONS, DATE_KEYS, CHOICES, RANGES)


def parse_scalar(raw: str) -> Any:
    """A value typed on a command line, read as TOML (``5``, ``0.5``, ``true``, ``"x"``,
    ``[1, 2]``), else the bare string. The one reader of such values (``--set``, ``--sweep``)."""
    raw = raw.strip()
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def parse_override(text: str) -> tuple[str, str, Any]:
    """Parse ``section.key=value``; the value is read as TOML (``5``, ``0.5``, ``true``,
    ``"x"``, ``[1, 2]``), falling back to a bare string."""
    if "\n" in text or "\r" in text:  # TOML would read only the first line: refuse, never truncate
        shown = text.splitlines()[0] if text.splitlines() else ""
        msg = f"override `{shown}...` contains a line break; give the value on one line"
        raise ConfigError(msg)
    if "=" not in text:
        msg = f"override `{text}` is malformed: expected `section.key=value`"
        raise ConfigError(msg)
    lhs, raw = text.split("=", 1)
    parts = lhs.strip().split(".")
    if len(parts) != 2 or not all(parts):
        msg = f"override `{text}` is malformed: expected `section.key=value`"
        raise ConfigError(msg)
    return parts[0], parts[1], parse_scalar(raw)


class ThreadSafeConfig:
    """Deeply immutable, hashable run configuration.

    Build with :meth:`default`, :meth:`from_toml`, :meth:`from_mapping`; derive new configs with
    :meth:`replace` and :meth:`with_overrides`. Sections are attributes: ``cfg.backtest.cost_bps``.
    """

    __slots__ = ("_digest", "_table")

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        merged = check(data or {}, _schema())
        table = freeze(merged, "")
        object.__setattr__(self, "_table", table)
        digest = canonical_digest(thaw(table))
        object.__setattr__(self, "_digest", digest)

    # construction -------------------------------------------------------------------------
    @classmethod
    def default(cls) -> ThreadSafeConfig:
        """The built-in defaults."""
        return cls()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ThreadSafeConfig:
        """Defaults overlaid with ``data`` (a nested mapping of sections)."""
        return cls(data)

    @classmethod
    def from_toml(cls, path: str | Path) -> ThreadSafeConfig:
        """Read a TOML file; errors name the file (and line and column for bad TOML)."""
        p = Path(path)
        try:
            special = _fs.not_a_regular_file(p)  # a FIFO or device would block the read forever
            if special is not None:
                msg = f"config file `{p}` is {special}, not a regular file"
                raise ConfigError(msg)
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            msg = f"config file `{p}` does not exist"
            raise ConfigError(msg) from None
        except (OSError, UnicodeDecodeError) as exc:
            msg = f"config file `{p}` cannot be read: {exc}"
            raise ConfigError(msg) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            msg = f"config file `{p}` is not valid TOML: {exc}"
            raise ConfigError(msg) from None
        try:
            return cls(data)
        except ConfigError as exc:
            msg = f"config file `{p}`: {exc}"
            raise ConfigError(msg) from None

    # derivation ---------------------------------------------------------------------------
    def replace(self, **sections: Mapping[str, Any]) -> ThreadSafeConfig:
        """A new config with the given keys of each section replaced; ``self`` is untouched."""
        data = self.to_dict()
        for section, table in sections.items():
            if section not in data:
                data[section] = {}
            if not isinstance(table, Mapping):
                msg = f"`replace({section}=...)` needs a mapping of keys, got {type_name(table)}"
                raise ConfigError(msg)
            data[section].update(table)
        return ThreadSafeConfig(data)

    def with_overrides(self, overrides: list[str] | tuple[str, ...]) -> ThreadSafeConfig:
        """Apply ``section.key=value`` overrides in order; all problems are reported at once."""
        data = self.to_dict()
        for text in overrides:
            section, key, value = parse_override(text)
            data.setdefault(section, {})
            if not isinstance(data[section], dict):
                data[section] = {}
            data[section][key] = value
        return ThreadSafeConfig(data)

    # access -------------------------------------------------------------------------------
    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON form; equal content gives an equal digest."""
        return self._digest

    def get(self, dotted: str) -> Any:
        """Value at ``section.key``."""
        section, _, key = dotted.partition(".")
        try:
            return self._table[section][key]
        except KeyError:
            msg = f"config has no key `{dotted}`"
            raise ConfigError(msg) from None

    def to_dict(self) -> dict[str, Any]:
        """A mutable deep copy."""
        return self._table.to_dict()

    def to_toml(self) -> str:
        """The resolved config as TOML text."""
        return tomli_w.dumps(self.to_dict())

    def canonical_json(self) -> str:
        """The canonical form the digest is computed from."""
        return canonical(self._table)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self._table[name]
        except KeyError:
            msg = f"config has no section `{name}`"
            raise ConfigError(msg) from None

    def __getitem__(self, name: str) -> Any:
        return self.__getattr__(name)

    def __setattr__(self, name: str, value: Any) -> None:
        msg = f"config is frozen: cannot set `{name}`; use `replace(...)` to make a new config"
        raise ConfigError(msg)

    def __delattr__(self, name: str) -> None:
        msg = f"config is frozen: cannot delete `{name}`"
        raise ConfigError(msg)

    def __hash__(self) -> int:
        return hash(self._digest)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ThreadSafeConfig) and other._digest == self._digest

    def __repr__(self) -> str:
        return f"ThreadSafeConfig(digest={self._digest[:12]}…)"

    def __reduce__(self):
        return (ThreadSafeConfig, (self.to_dict(),))
