"""The grid: which parameters a sweep varies, checked in full before any work starts.

A :class:`Grid` is an ordered tuple of ``(section.key, values)``. Trial ``i`` is the ``i``-th
combination of the cartesian product, the first key varying slowest; a trial's params are
computed from its index (mixed radix), so a 100,000-trial grid never exists as a list.

The *execution order* differs from the trial order: keys that change the signals (``strategy.*``)
vary slowest, so trials sharing their features and signals run next to each other and the
evaluator computes those once per run of trials. :meth:`Grid.trial_at` maps a position in the
execution order to a trial index.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qpipe._canonical import canonical_digest, canonical_json
from qpipe.config import DEFAULTS, ThreadSafeConfig
from qpipe.errors import ConfigError

__all__ = [
    "MAX_TRIALS",
    "SIGNAL_SECTIONS",
    "SWEEPABLE_SECTIONS",
    "Grid",
    "grid_from_config",
]

MAX_TRIALS = 100_000
# a sweep shares one price panel, so only what acts on that panel can vary
SWEEPABLE_SECTIONS = ("strategy", "allocation", "backtest")
SIGNAL_SECTIONS = ("strategy",)


@dataclass(frozen=True)
class Grid:
    """The swept keys and their values, in the order given (the first key varies slowest)."""

    axes: tuple[tuple[str, tuple[Any, ...]], ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.axes)

    @property
    def n_trials(self) -> int:
        return math.prod(len(v) for _, v in self.axes) if self.axes else 0

    @property
    def digest(self) -> str:
        """SHA-256 of the grid's canonical JSON (keys, values and their order)."""
        return canonical_digest(self.to_json())

    def to_json(self) -> list[list[Any]]:
        return [[k, list(v)] for k, v in self.axes]

    @classmethod
    def from_json(cls, data: Sequence[Sequence[Any]]) -> Grid:
        return cls(tuple((str(k), tuple(v)) for k, v in data))

    def params(self, trial: int) -> dict[str, Any]:
        """The params of trial ``trial`` (0-based, first key slowest)."""
        out: dict[str, Any] = {}
        for key, values in reversed(self.axes):
            trial, digit = divmod(trial, len(values))
            out[key] = values[digit]
        return {k: out[k] for k in self.keys}

    def _execution_axes(self) -> list[int]:
        signal = [i for i, k in enumerate(self.keys) if k.split(".")[0] in SIGNAL_SECTIONS]
        return signal + [i for i in range(len(self.axes)) if i not in signal]

    def trial_at(self, position: int) -> int:
        """The trial index at ``position`` in the execution order (signal keys slowest)."""
        order = self._execution_axes()
        digits = [0] * len(self.axes)
        for axis in reversed(order):
            position, digits[axis] = divmod(position, len(self.axes[axis][1]))
        trial = 0
        for axis, (_, values) in enumerate(self.axes):
            trial = trial * len(values) + digits[axis]
        return trial

    def trials(self, positions: Iterable[int]) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(trial index, params)`` for each execution position."""
        for p in positions:
            i = self.trial_at(p)
            yield i, self.params(i)


def _checked_axis(key: str, values: Sequence[Any], origin: str, base: ThreadSafeConfig) -> Any:
    """The values of one key, each checked by the config and coerced to the key's type."""
    parts = key.strip().split(".")
    if len(parts) != 2 or not all(parts):
        msg = f"sweep {origin}: `{key}` must be `section.key`"
        raise ConfigError(msg)
    section, name = parts
    if section in DEFAULTS and section not in SWEEPABLE_SECTIONS:
        allowed = ", ".join(SWEEPABLE_SECTIONS)
        msg = (
            f"sweep {origin}: `{key}` cannot be swept (a sweep shares one price panel and one "
            f"engine); sweepable sections are {allowed}"
        )
        raise ConfigError(msg)
    if not values or any(isinstance(v, Mapping | list | tuple) for v in values):
        msg = f"sweep {origin}: `{key}` needs a list of one or more scalar values"
        raise ConfigError(msg)
    coerced = []
    for value in values:
        try:  # the config's own check: unknown key, wrong type, out of range
            cfg = base.replace(**{section: {name: value}})
        except ConfigError as exc:
            msg = f"sweep {origin}: {exc}"
            raise ConfigError(msg) from None
        coerced.append(cfg[section][name])  # 5 -> 5.0 for a float key, a TOML date -> ISO
    seen: set[str] = set()
    for value in coerced:
        text = canonical_json(value)
        if text in seen:
            msg = f"sweep {origin}: `{key}` lists the value {value!r} twice"
            raise ConfigError(msg)
        seen.add(text)
    return ".".join(parts), tuple(coerced)


def _neutral_base(cfg: ThreadSafeConfig) -> ThreadSafeConfig:
    """``cfg`` where each key can be checked on its own: ``skip < lookback`` and ``fast < slow``
    are properties of a *combination*, reported per trial, not of one value."""
    big = 10**9
    return cfg.replace(strategy={"skip": 0, "lookback": big, "fast": 1, "slow": big}, sweep={})


def grid_from_config(
    cfg: ThreadSafeConfig,
    flags: Sequence[tuple[str, Sequence[Any], str]] = (),
    *,
    max_trials: int = MAX_TRIALS,
) -> Grid:
    """The grid: ``[sweep]`` entries of ``cfg``, then ``flags`` (which replace equal keys).

    Parameters
    ----------
    cfg
        The base config; its ``[sweep]`` table gives entries (``"section.key" = [values]`` or
        ``[sweep.section] key = [values]``; ``metric`` names the ranking metric, not a key).
    flags
        ``(key, values, origin)`` from the command line; ``origin`` names the flag in errors.
    max_trials
        The largest grid accepted.

    Raises
    ------
    ConfigError
        Empty grid, unknown key, a value of the wrong type or out of range, a duplicate
        value, a key that cannot be swept, or more trials than ``max_trials``: one line,
        naming the entry or flag, before any work starts.
    """
    base = _neutral_base(cfg)
    axes: dict[str, tuple[Any, ...]] = {}
    for key, value in cfg.sweep.items():
        if key == "metric":
            continue
        if isinstance(value, Mapping):  # [sweep.strategy] lookback = [...]
            for sub, values in value.items():
                origin = f"entry `[sweep] {key}.{sub}`"
                k, v = _checked_axis(f"{key}.{sub}", _as_list(values), origin, base)
                axes[k] = v
        else:
            k, v = _checked_axis(key, _as_list(value), f"entry `[sweep] {key}`", base)
            axes[k] = v
    for key, values, origin in flags:
        k, v = _checked_axis(key, list(values), origin, base)
        axes[k] = v
    grid = Grid(tuple(axes.items()))
    if not grid.axes:
        msg = "sweep has no parameters: give `--sweep section.key=v1,v2` or a `[sweep]` table"
        raise ConfigError(msg)
    if grid.n_trials > max_trials:
        sizes = " x ".join(str(len(v)) for _, v in grid.axes)
        msg = (
            f"sweep grid has {grid.n_trials:,} trials ({sizes}), more than `--max-trials` "
            f"{max_trials:,}; shrink the grid or raise `--max-trials`"
        )
        raise ConfigError(msg)
    return grid


def _as_list(values: Any) -> list[Any]:
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        return [values]
    return list(values)
