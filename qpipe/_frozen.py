"""Frozen values: the immutable mapping that config tables (and stage params) are made of.

A leaf module: stages bind their params as :class:`FrozenTable` without importing the config
(which reads files).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from qpipe._canonical import canonical_json
from qpipe.errors import ConfigError

__all__ = ["FrozenTable", "canonical", "freeze", "thaw"]


def freeze(value: Any, path: str) -> Any:
    if isinstance(value, FrozenTable):
        return value
    if isinstance(value, Mapping):
        return FrozenTable(
            {str(k): freeze(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
        )
    if isinstance(value, list | tuple):
        return tuple(freeze(v, f"{path}[{i}]") for i, v in enumerate(value))
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            msg = f"config key `{path}` must be a finite number, got {value}"
            raise ConfigError(msg)
        return value
    msg = f"config key `{path}` has unsupported type {type(value).__name__}"
    raise ConfigError(msg)


def thaw(value: Any) -> Any:
    if isinstance(value, FrozenTable):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


class FrozenTable(Mapping[str, Any]):
    """An immutable mapping whose keys are also attributes (``cfg.backtest.cost_bps``)."""

    __slots__ = ("_data", "_hash")

    def __init__(self, data: Mapping[str, Any]) -> None:
        # a read-only view of a dict nobody else holds: `table._data[k] = v` raises TypeError
        object.__setattr__(self, "_data", MappingProxyType(dict(data)))
        object.__setattr__(self, "_hash", None)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, key: str) -> Any:
        try:
            return self._data[key]
        except KeyError:
            msg = f"config has no key `{key}`"
            raise ConfigError(msg) from None

    def __setattr__(self, key: str, value: Any) -> None:
        msg = f"config is frozen: cannot set `{key}`; use `replace(...)` to make a new config"
        raise ConfigError(msg)

    def __delattr__(self, key: str) -> None:
        msg = f"config is frozen: cannot delete `{key}`"
        raise ConfigError(msg)

    def __setitem__(self, key: str, value: Any) -> None:
        self.__setattr__(key, value)

    def __delitem__(self, key: str) -> None:
        self.__delattr__(key)

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = hash(canonical(self))
            object.__setattr__(self, "_hash", h)
        return h

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenTable):
            return dict(self._data) == dict(other._data)
        if isinstance(other, Mapping):
            return dict(self._data) == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenTable({dict(self._data)!r})"

    def __reduce__(self):
        return (FrozenTable, (dict(self._data),))

    def to_dict(self) -> dict[str, Any]:
        """A mutable deep copy (dicts and lists)."""
        return thaw(self)


def canonical(obj: Any) -> str:
    """The canonical JSON text of a frozen value (what digests and hashes are taken over)."""
    return canonical_json(thaw(obj))
