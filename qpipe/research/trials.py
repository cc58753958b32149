"""The honest number of trials, read from ledger records, and the statistics that use it.

Pure functions over plain data (ledger records as dicts, arrays of returns); the reading of the
ledger and the chunk files is in :mod:`qpipe.research.sweep_stats`.

**Which trials count** (``trials_from="ledger"``, the default): every trial recorded in a
``sweep_chunk`` record -- failed trials included -- of every sweep whose ``sweep_started`` has
the same ``data_digest`` and the same set of grid keys (the same strategy family) as the sweep
being judged. A chunk recorded twice (a resumed sweep) counts once, and a sweep repeated with
the same grid, base config and data counts once (its trials are the same trials). With
``trials_from="sweep"`` only the judged sweep's trials count; an integer is taken as given.
The variance V of the trials' per-period Sharpe ratios comes from the same counted trials
(those that finished: a failed trial has no Sharpe).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qpipe.errors import ResearchError
from qpipe.research.stats import (
    deflated_sharpe,
    expected_max_sharpe,
    min_track_record,
    probabilistic_sharpe,
    sharpe_moments,
)

__all__ = [
    "SweepCount",
    "TrialCount",
    "count_trials",
    "parse_trials_from",
    "trial_statistics",
    "verdict",
]


@dataclass(frozen=True)
class SweepCount:
    """One counted sweep: its id, trials tried, trials ok, and its chunk files."""

    sweep_id: str
    n_trials: int
    n_ok: int
    chunk_paths: tuple[str, ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"sweep_id": self.sweep_id, "n_trials": self.n_trials, "n_ok": self.n_ok}


@dataclass(frozen=True)
class TrialCount:
    """The judged sweep's ``sweep_started`` data, and the sweeps whose trials count."""

    started: Mapping[str, Any]
    sweeps: tuple[SweepCount, ...]
    trials_from: str
    given: int | None = None  # ``trials_from`` as a number: N as the user gave it

    @property
    def n_trials(self) -> int:
        return self.given if self.given is not None else sum(s.n_trials for s in self.sweeps)


def parse_trials_from(value: str | int) -> str | int:
    """``"ledger"``, ``"sweep"`` or a positive integer (as text or int)."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value in ("ledger", "sweep"):
        return value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value)
    else:
        msg = f"`--trials-from` must be `sweep`, `ledger` or a number of trials, got {value!r}"
        raise ResearchError(msg)
    if number < 2:
        msg = f"`--trials-from` must be >= 2 trials for the deflated sharpe ratio, got {number}"
        raise ResearchError(msg)
    return number


def _family(started: Mapping[str, Any]) -> tuple[str, frozenset[str]]:
    return str(started["data_digest"]), frozenset(str(k) for k, _ in started["grid"])


def _same_trials(started: Mapping[str, Any]) -> tuple[str, str]:
    return str(started["grid_digest"]), str(started["config_digest"])


def count_trials(
    records: Iterable[Mapping[str, Any]], sweep_id: str, trials_from: str | int = "ledger"
) -> TrialCount:
    """Which sweeps' trials count for judging ``sweep_id`` (see the module docstring)."""
    started: dict[str, Mapping[str, Any]] = {}
    chunks: dict[str, dict[int, Mapping[str, Any]]] = {}
    for r in records:
        if r["kind"] == "sweep_started":
            started.setdefault(r["run_id"], r["data"])
        elif r["kind"] == "sweep_chunk":
            chunks.setdefault(r["run_id"], {})[int(r["data"]["chunk"])] = r["data"]
    if sweep_id not in started:
        msg = f"sweep `{sweep_id}` is not in the ledger (no `sweep_started` record)"
        raise ResearchError(msg)
    target = started[sweep_id]
    if trials_from == "ledger":
        family = _family(target)
        members = [s for s, d in started.items() if _family(d) == family]
    else:
        members = [sweep_id]
    seen: set[tuple[str, str]] = {_same_trials(target)}
    counted = [sweep_id]
    for s in members:
        if s != sweep_id and _same_trials(started[s]) not in seen and s in chunks:
            seen.add(_same_trials(started[s]))
            counted.append(s)
    sweeps = tuple(
        SweepCount(
            s,
            sum(int(c["n_trials"]) for c in chunks.get(s, {}).values()),
            sum(int(c["n_ok"]) for c in chunks.get(s, {}).values()),
            tuple(str(c["path"]) for _, c in sorted(chunks.get(s, {}).items())),
        )
        for s in counted
    )
    if isinstance(trials_from, int):
        return TrialCount(target, sweeps, str(trials_from), trials_from)
    return TrialCount(target, sweeps, trials_from)


def trial_statistics(
    best_returns: Any, trial_sharpes: Any, n_trials: int, *, alpha: float = 0.05
) -> dict[str, Any]:
    """PSR(0), SR0, DSR and MinTRL of the best trial, with N = ``n_trials``.

    ``best_returns``: the best trial's daily returns; ``trial_sharpes``: the per-period Sharpe
    ratios of the counted trials that finished (for V, ddof=1).
    """
    sr, skew, kurt, t = sharpe_moments(best_returns)
    sharpes = np.asarray(trial_sharpes, dtype=np.float64)
    sharpes = sharpes[np.isfinite(sharpes)]
    if sharpes.size < 2:
        msg = f"the variance of trial sharpe ratios needs >= 2 finished trials, got {sharpes.size}"
        raise ResearchError(msg)
    v = float(np.var(sharpes, ddof=1))
    sr0 = expected_max_sharpe(n_trials, v)
    return {
        "sr": sr,
        "skew": skew,
        "kurtosis": kurt,
        "n_obs": t,
        "n_trials": int(n_trials),
        "sr_variance": v,
        "sr0": sr0,
        "psr0": probabilistic_sharpe(sr, 0.0, t, skew, kurt),
        "dsr": deflated_sharpe(sr, n_trials, v, t, skew, kurt),
        "min_trl": min_track_record(sr, sr0, skew, kurt, alpha),
        "alpha": alpha,
    }


def verdict(values: Mapping[str, Any]) -> str:
    """One line: ``DSR 0.41 with N = 240 trials: not significant at 95%``."""
    level = 1.0 - float(values.get("alpha", 0.05))
    dsr, n = float(values["dsr"]), int(values["n_trials"])
    word = "significant" if dsr >= level else "not significant"
    trl = values.get("min_trl")
    need = ""
    if trl is not None and math.isfinite(trl) and dsr < level:
        need = f" (needs ~{math.ceil(trl)} observations, has {values['n_obs']})"
    return f"DSR {dsr:.2f} with N = {n} trials: {word} at {level:.0%}{need}"
