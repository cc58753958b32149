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

**A walk-forward or a CPCV** (:func:`count_study_trials`) tried its grid's parameter sets:
N is every sweep of the same family (as above) plus every finished study of the family
(``research_started`` + ``research_finished``; the current one first), each (grid, base
config) once: a study whose grid (whatever its key order) and results config digest are those
of a counted sweep or study adds nothing (its sets are those trials). A study recorded before
``research_started`` had ``results_config_digest`` is keyed by its full config digest, so it
never matches a sweep: it is counted (when in doubt N is larger, never smaller).
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
    "count_study_trials",
    "count_trials",
    "grid_key",
    "parse_trials_from",
    "trial_statistics",
    "verdict",
]


@dataclass(frozen=True)
class SweepCount:
    """One counted sweep (or study, ``kind`` ``walk_forward``/``cpcv``): its id, trials tried,
    trials ok, and its chunk files."""

    sweep_id: str
    n_trials: int
    n_ok: int
    chunk_paths: tuple[str, ...] = field(default=(), repr=False)
    kind: str = "sweep"

    def to_dict(self) -> dict[str, Any]:
        data = {"sweep_id": self.sweep_id, "n_trials": self.n_trials, "n_ok": self.n_ok}
        return data if self.kind == "sweep" else {**data, "kind": self.kind}


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


def _sweeps(records: Iterable[Mapping[str, Any]]) -> tuple[dict, dict, dict, set[str]]:
    """sweep_started data, sweep_chunk data (by chunk), research_started data, finished ids."""
    started: dict[str, Mapping[str, Any]] = {}
    chunks: dict[str, dict[int, Mapping[str, Any]]] = {}
    studies: dict[str, Mapping[str, Any]] = {}
    finished: set[str] = set()
    for r in records:
        kind = r["kind"]
        if kind == "sweep_started":
            started.setdefault(r["run_id"], r["data"])
        elif kind == "sweep_chunk":
            chunks.setdefault(r["run_id"], {})[int(r["data"]["chunk"])] = r["data"]
        elif kind == "research_started":
            studies.setdefault(r["run_id"], r["data"])
        elif kind == "research_finished":
            finished.add(r["run_id"])
    return started, chunks, studies, finished


def _counted(
    started: Mapping[str, Mapping[str, Any]],
    chunks: Mapping[str, Mapping[int, Mapping[str, Any]]],
    members: Iterable[str],
    first: str | None,
) -> list[SweepCount]:
    """The members with chunks, each (grid, base config) once; ``first`` leads and always
    counts."""
    seen: set[tuple[str, str]] = set()
    order = [first] if first is not None else []
    order += [s for s in members if s != first]
    out = []
    for s in order:
        key = _same_trials(started[s])
        if s != first and (key in seen or s not in chunks):
            continue
        seen.add(key)
        done = chunks.get(s, {})
        out.append(
            SweepCount(
                s,
                sum(int(c["n_trials"]) for c in done.values()),
                sum(int(c["n_ok"]) for c in done.values()),
                tuple(str(c["path"]) for _, c in sorted(done.items())),
            )
        )
    return out


def count_trials(
    records: Iterable[Mapping[str, Any]], sweep_id: str, trials_from: str | int = "ledger"
) -> TrialCount:
    """Which sweeps' trials count for judging ``sweep_id`` (see the module docstring)."""
    started, chunks, _, _ = _sweeps(records)
    if sweep_id not in started:
        msg = f"sweep `{sweep_id}` is not in the ledger (no `sweep_started` record)"
        raise ResearchError(msg)
    target = started[sweep_id]
    if trials_from == "ledger":
        family = _family(target)
        members = [s for s, d in started.items() if _family(d) == family]
    else:
        members = [sweep_id]
    sweeps = tuple(_counted(started, chunks, members, sweep_id))
    if isinstance(trials_from, int):
        return TrialCount(target, sweeps, str(trials_from), trials_from)
    return TrialCount(target, sweeps, trials_from)


def grid_key(grid: Mapping[str, Any] | Iterable[Any]) -> str:
    """A grid's digest whatever its key order: ``{"section.key": values}`` (a study's) or
    ``[[key, values], ...]`` (a sweep's); the ledger keeps a mapping's keys sorted."""
    from qpipe._canonical import canonical_digest

    pairs = list(grid.items()) if isinstance(grid, Mapping) else [tuple(kv) for kv in grid]
    return canonical_digest({str(k): list(v) for k, v in pairs})


def count_study_trials(
    records: Iterable[Mapping[str, Any]], study_id: str, *, n_ok: int | None = None
) -> TrialCount:
    """The honest N for the study ``study_id`` (its ``research_started`` must be in
    ``records``): the family's sweeps and studies (see the module docstring); ``n_ok``: the
    study's sets that finished (default: all)."""
    started, chunks, studies, finished = _sweeps(records)
    if study_id not in studies:
        msg = f"study `{study_id}` is not in the ledger (no `research_started` record)"
        raise ResearchError(msg)
    target = studies[study_id]
    family = (str(target["data_digest"]), frozenset(str(k) for k in target["grid"]))
    members = [s for s, d in started.items() if _family(d) == family]
    sweeps = _counted(started, chunks, members, None)
    seen = {(grid_key(started[s.sweep_id]["grid"]), _same_trials(started[s.sweep_id])[1])
            for s in sweeps}  # fmt: skip
    order = [study_id] + [s for s in studies if s != study_id]
    for s in order:
        d = studies[s]
        same = (str(d["data_digest"]), frozenset(str(k) for k in d["grid"])) == family
        config = str(d.get("results_config_digest") or d["config_digest"])
        key = (grid_key(d["grid"]), config)
        if not same or key in seen or (s != study_id and s not in finished):
            continue
        seen.add(key)
        n = math.prod(len(v) for v in d["grid"].values())
        ok = n_ok if s == study_id and n_ok is not None else n
        sweeps.append(SweepCount(s, n, ok, kind=str(d.get("method", "study"))))
    return TrialCount(dict(target), tuple(sweeps), "ledger")


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
