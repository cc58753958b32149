"""Trial configs for a batched sweep, checked once per distinct section.

A trial is the base config with a few ``section.key`` overrides. Building a full
:class:`~qpipe.config.ThreadSafeConfig` per trial (checks, freezing, digest) costs more than the
trial's backtest, and most trials share most of their values. Every config check is within one
section (types, ranges, choices, ``strategy.skip < lookback``, ``fast < slow``, ``start <=
end``), so a combination of sections that each pass on their own passes as a whole. Here each
distinct section override is checked once (as a full config with only that section changed),
and a trial's config is the checked sections side by side (:class:`TrialConfig`). A full
``ThreadSafeConfig`` is built only where a stage needs one (:meth:`TrialConfig.full`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qpipe.config import FrozenTable, ThreadSafeConfig
from qpipe.errors import ConfigError

__all__ = ["ConfigBuilder", "TrialConfig"]


@dataclass(frozen=True)
class TrialConfig:
    """One trial's checked sections (``FrozenTable`` each) and its sharing keys.

    ``signal_key``: trials with equal keys share features and signals (the whole ``[strategy]``
    table and the ``[allocation]`` keys that add feature columns); ``weights_key``: trials with
    equal keys share target weights (``[strategy]`` and ``[allocation]``).
    """

    sections: dict[str, FrozenTable]
    signal_key: str
    weights_key: str
    _full: list[ThreadSafeConfig] = field(default_factory=list, compare=False, repr=False)

    @property
    def strategy(self) -> FrozenTable:
        return self.sections["strategy"]

    @property
    def allocation(self) -> FrozenTable:
        return self.sections["allocation"]

    @property
    def backtest(self) -> FrozenTable:
        return self.sections["backtest"]

    def full(self) -> ThreadSafeConfig:
        """The whole config (built on first use)."""
        if not self._full:
            self._full.append(ThreadSafeConfig.from_mapping(self.sections))
        return self._full[0]


def _value_key(params: dict[str, Any]) -> tuple[Any, ...]:
    # the type is part of the key: 1, 1.0 and True are equal (and hash alike) in Python
    return tuple(sorted((k, type(v).__name__, v) for k, v in params.items()))


class ConfigBuilder:
    """Trial configs over one base config (a ``ThreadSafeConfig.to_dict()``)."""

    def __init__(self, base: dict[str, Any]) -> None:
        self.base = base
        self._base_cfg = self._build({})
        self._names = tuple(self._base_cfg.to_dict())
        self._sections: dict[tuple[str, tuple[Any, ...]], FrozenTable] = {}
        self._trials: dict[tuple[Any, ...], TrialConfig] = {}

    def _build(self, params: dict[str, Any]) -> ThreadSafeConfig:
        data = {s: dict(t) if isinstance(t, dict) else t for s, t in self.base.items()}
        for key, value in params.items():
            section, _, name = key.partition(".")
            if not name or "." in name:
                msg = f"sweep parameter `{key}` must be `section.key`"
                raise ConfigError(msg)
            if section == "data" and self.base.get("data", {}).get(name) != value:
                msg = f"`{key}` cannot vary in a batched sweep: all trials share one price panel"
                raise ConfigError(msg)
            data.setdefault(section, {})[name] = value
        cfg = ThreadSafeConfig.from_mapping(data)
        if cfg.data.weights:
            msg = "a batched sweep needs strategy weights; `data.weights` is set"
            raise ConfigError(msg)
        return cfg

    def _section(self, section: str, params: dict[str, Any]) -> FrozenTable:
        key = (section, _value_key(params))
        if key not in self._sections:
            self._sections[key] = self._build(params)[section]
        return self._sections[key]

    def get(self, params: dict[str, Any]) -> TrialConfig:
        """The trial's config; a :class:`ConfigError` names every problem of the whole config."""
        key = _value_key(params)
        if key in self._trials:
            return self._trials[key]
        by_section: dict[str, dict[str, Any]] = {}
        for name, value in params.items():
            by_section.setdefault(name.partition(".")[0], {})[name] = value
        try:
            sections = {
                name: self._section(name, by_section[name])
                if name in by_section
                else self._base_cfg[name]
                for name in self._names
            }
        except ConfigError:
            self._build(params)  # raises the whole config's error (all of its problems)
            raise
        a = sections["allocation"]
        strategy = repr(sorted(sections["strategy"].items()))
        features = (a["scheme"] == "inverse_vol", a["target_vol"] > 0, a["vol_window"])
        signal = f"{strategy}|{features!r}"
        weights = f"{strategy}|{sorted(a.items())!r}"
        trial = TrialConfig(sections, signal, weights)
        self._trials[key] = trial
        return trial
