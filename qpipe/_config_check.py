"""Checking a config against its schema: every problem found, then one error.

The schema is the config's tables (:mod:`qpipe.config`): the defaults give every key and its
type; ``CHOICES``, ``RANGES`` and ``DATE_KEYS`` narrow values. :func:`check` merges the user's
data over the defaults and reports every unknown key, wrong type and out-of-range value at once
("3 config errors: ..."), as Hamilton validates all inputs before raising once.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qpipe.errors import ConfigError

__all__ = ["Schema", "check"]


@dataclass(frozen=True)
class Schema:
    """The tables a config is checked against."""

    defaults: Mapping[str, Mapping[str, Any]]
    open_sections: frozenset[str]
    date_keys: Mapping[str, bool]  # key -> may be empty
    choices: Mapping[str, tuple[str, ...]]
    ranges: Mapping[str, tuple[float, float, bool]]  # key -> (low, high, low inclusive)


def type_name(v: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "string"}.get(type(v), type(v).__name__)


def check(data: Mapping[str, Any], schema: Schema) -> dict[str, dict[str, Any]]:
    """``data`` merged over the defaults (ints become floats where a float is expected, TOML
    dates ISO strings); raises one :class:`ConfigError` listing every problem."""
    problems: list[str] = []
    merged: dict[str, dict[str, Any]] = {s: dict(t) for s, t in schema.defaults.items()}
    for section, table in data.items():
        problems += _merge_section(merged, str(section), table, schema)
    problems += _choice_problems(merged, schema)
    problems += _range_problems(merged, schema)
    problems += _date_problems(merged, schema)
    problems += _cross_key_problems(merged)
    if problems:
        n = len(problems)
        head = f"{n} config error{'s' if n > 1 else ''}: "
        raise ConfigError(head + "; ".join(problems))
    return merged


def _merge_section(
    merged: dict[str, dict[str, Any]], section: str, table: Any, schema: Schema
) -> list[str]:
    defaults = schema.defaults
    if section not in defaults:
        hint = difflib.get_close_matches(section, defaults, n=1)
        tip = f" (did you mean `{hint[0]}`?)" if hint else ""
        return [f"unknown section `{section}`{tip}"]
    if not isinstance(table, Mapping):
        return [f"`{section}` must be a table, got {type_name(table)}"]
    problems: list[str] = []
    for key, value in table.items():
        if section in schema.open_sections:
            merged[section][key] = value
            continue
        if key not in defaults[section]:
            hint = difflib.get_close_matches(str(key), defaults[section], n=1)
            tip = f" (did you mean `{section}.{hint[0]}`?)" if hint else ""
            problems.append(f"unknown key `{section}.{key}`{tip}")
            continue
        value, problem = _coerce(f"{section}.{key}", value, defaults[section][key], schema)
        if problem:
            problems.append(problem)
        else:
            merged[section][key] = value
    return problems


def _coerce(path: str, value: Any, default: Any, schema: Schema) -> tuple[Any, str | None]:
    """The value as the default's type, or the problem with it."""
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if (
        path in schema.date_keys
        and isinstance(value, dt.date)
        and not isinstance(value, dt.datetime)
    ):
        value = value.isoformat()
    if type(value) is not type(default):
        return value, f"`{path}` must be {type_name(default)}, got {type_name(value)} {value!r}"
    if isinstance(value, float) and not math.isfinite(value):
        return value, f"`{path}` must be finite, got {value}"
    return value, None


def _value(merged: dict[str, dict[str, Any]], path: str) -> Any:
    section, key = path.split(".")
    return merged[section][key]


def _choice_problems(merged: dict[str, dict[str, Any]], schema: Schema) -> list[str]:
    return [
        f"`{path}` must be one of {', '.join(choices)}; got {_value(merged, path)!r}"
        for path, choices in schema.choices.items()
        if _value(merged, path) not in choices
    ]


def _range_problems(merged: dict[str, dict[str, Any]], schema: Schema) -> list[str]:
    problems = []
    for path, (lo, hi, lo_incl) in schema.ranges.items():
        v = _value(merged, path)
        if not ((v >= lo if lo_incl else v > lo) and v <= hi):
            low = f">= {lo}" if lo_incl else f"> {lo}"
            high = "" if hi == math.inf else f" and <= {hi}"
            problems.append(f"`{path}` must be {low}{high}, got {v}")
    return problems


def _date_problems(merged: dict[str, dict[str, Any]], schema: Schema) -> list[str]:
    """ISO format for every date key, and start <= end for each pair."""
    problems: list[str] = []
    parsed: dict[str, dt.date | None] = {}
    for path, may_be_empty in schema.date_keys.items():
        value = _value(merged, path)
        if not isinstance(value, str):
            continue  # already reported as a wrong type
        if value == "" and may_be_empty:
            parsed[path] = None
            continue
        try:
            parsed[path] = dt.date.fromisoformat(value)
            if len(value) != 10:
                raise ValueError(value)
        except ValueError:
            empty = " or empty" if may_be_empty else ""
            problems.append(f"`{path}` must be an ISO date (YYYY-MM-DD){empty}, got {value!r}")
    for section in ("data", "backtest"):
        lo, hi = parsed.get(f"{section}.start"), parsed.get(f"{section}.end")
        if lo is not None and hi is not None and lo > hi:
            problems.append(f"`{section}.start` ({lo}) is after `{section}.end` ({hi})")
    return problems


def _cross_key_problems(merged: dict[str, dict[str, Any]]) -> list[str]:
    s, problems = merged["strategy"], []
    if s["kind"] == "ma_crossover" and s["fast"] >= s["slow"]:
        problems.append(f"`strategy.fast` ({s['fast']}) must be < `strategy.slow` ({s['slow']})")
    if s["kind"] == "momentum" and s["skip"] >= s["lookback"]:
        problems.append(
            f"`strategy.skip` ({s['skip']}) must be < `strategy.lookback` ({s['lookback']})"
        )
    return problems
