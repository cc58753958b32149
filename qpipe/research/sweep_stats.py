"""``python -m qpipe stats SWEEP_ID``: is the sweep's best trial real, given every trial tried?

Step by step, :func:`sweep_stats`:

1. reads the ledger and counts the trials (:func:`~qpipe.research.trials.count_trials`:
   ``ledger`` = every sweep of the same data and grid keys, ``sweep`` = this one, or N given);
2. reads the counted sweeps' chunk files (listed in their ``sweep_chunk`` records) for the
   finished trials' Sharpe ratios (V) and the judged sweep's best trial by its ranking metric;
3. re-runs that trial's backtest through the batched path on the stored prices (the sweep's
   own data digest and base config) for its daily returns: SR, skew, kurtosis, T;
4. PBO (CSCV, 16 blocks) over the judged sweep's finished trials when there are at most
   ``pbo_limit`` of them (each is re-run for its daily returns);
5. records ``trial_stats`` (the sweeps it counted, N, V, SR0, DSR, MinTRL, PBO), writes the
   page ``<out>/research/<id>/stats.html`` and returns the values with the one-line verdict.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from qpipe._fs import write_bytes_atomic
from qpipe.config import ThreadSafeConfig
from qpipe.conventions import PERIODS_PER_YEAR
from qpipe.errors import QpipeError, ResearchError
from qpipe.ledger import Ledger, RunRecorder, records
from qpipe.ledger import payloads as p
from qpipe.research.cpcv import trial_returns
from qpipe.research.pages import stats_page
from qpipe.research.trials import (
    TrialCount,
    count_trials,
    parse_trials_from,
    trial_statistics,
    verdict,
)
from qpipe.store import ArrowStore, write_ipc_atomic

__all__ = [
    "PBO_LIMIT",
    "SweepStats",
    "counted_sharpes",
    "judge_sweep",
    "load_stats",
    "save_stats",
    "sweep_stats",
]

PBO_LIMIT = 2_000


@dataclass(frozen=True)
class SweepStats:
    """What ``stats`` found: the judged trial, the count, the values and the verdict line."""

    stats_id: str
    sweep_id: str
    trial: int
    params: dict[str, Any]
    count: TrialCount
    values: dict[str, Any]
    pbo: Any  # qpipe.stats.PBOResult or None
    trial_sharpes: np.ndarray  # per-period, of the counted finished trials
    page: Path | None = None  # stats.html
    why_no_pbo: str = ""  # when ``pbo`` is None

    @property
    def line(self) -> str:
        return verdict(self.values)


def _chunk_rows(paths: tuple[str, ...]) -> pl.DataFrame | None:
    frames = []
    for path in paths:
        try:
            frames.append(pl.read_ipc(path))
        except OSError as exc:
            msg = f"sweep chunk file `{path}` cannot be read: {exc}"
            raise ResearchError(msg) from None
    return pl.concat(frames, how="diagonal_relaxed") if frames else None


def _best(rows: pl.DataFrame, metric: str) -> dict[str, Any]:
    from qpipe.sweep import LOWER_IS_BETTER

    ok = rows.filter((pl.col("status") == "ok") & pl.col(metric).is_not_null())
    ok = ok.filter(pl.col(metric).is_not_nan())
    if ok.height == 0:
        msg = f"no finished trial of the sweep has a `{metric}`"
        raise ResearchError(msg)
    desc = metric not in LOWER_IS_BETTER
    return ok.sort([metric, "trial"], descending=[desc, False]).row(0, named=True)


def counted_sharpes(count: TrialCount) -> np.ndarray:
    """Per-period Sharpe ratios of the counted sweeps' finished trials (their chunk files)."""
    out = []
    for sweep in count.sweeps:
        rows = _chunk_rows(sweep.chunk_paths)
        if rows is not None:
            ok = rows.filter(pl.col("status") == "ok")["sharpe"].cast(pl.Float64)
            out.append(ok.drop_nulls().drop_nans().to_numpy() / math.sqrt(PERIODS_PER_YEAR))
    return np.concatenate(out) if out else np.empty(0)


def _prices_and_panel(started: dict[str, Any], store: ArrowStore) -> tuple[pl.DataFrame, Any]:
    from qpipe.backtest.batch import build_panel
    from qpipe.backtest.panel import open_panel

    ref = store.ref_for(str(started["data_digest"]))
    if ref is None:
        msg = f"the sweep's prices ({started['data_digest'][:12]}) are not in store `{store.root}`"
        raise ResearchError(msg)
    return store.open(ref), open_panel(build_panel(ref, store), store)


def _params(row: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    return {k: row[k] for k in keys}


def sweep_stats(
    sweep_id: str,
    *,
    out: str | Path | None = None,
    ledger: str | Path | None = None,
    config: ThreadSafeConfig | None = None,
    trials_from: str | int = "ledger",
    pbo_limit: int = PBO_LIMIT,
) -> SweepStats:
    """Judge ``sweep_id``'s best trial with the honest N (see the module docstring)."""
    from qpipe.runs import resolve_paths

    paths = resolve_paths(config or ThreadSafeConfig.default(), out, ledger)
    with failure_recorded(paths.ledger, sweep_id, trials_from):
        trials_from = parse_trials_from(trials_from)
    stats = judge_sweep(
        sweep_id, paths.ledger, paths.store, trials_from=trials_from, pbo_limit=pbo_limit
    )
    page = Path(paths.out) / "research" / stats.stats_id / "stats.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(page, stats_page(stats).encode("utf-8"))
    return dataclasses.replace(stats, page=page)


def judge_sweep(
    sweep_id: str,
    ledger: str | Path,
    store: str | Path,
    *,
    trials_from: str | int = "ledger",
    pbo_limit: int = PBO_LIMIT,
) -> SweepStats:
    """Steps 1 to 4 of the module docstring, and the ``trial_stats`` record; no page.

    ``store``: where the sweep's prices are when its base config names no store. A failure
    (N < 2, no finished trial...) is recorded as ``trial_stats_failed`` and raised.
    """
    if not Path(ledger).exists():
        msg = f"ledger `{ledger}` does not exist"
        raise ResearchError(msg)
    with failure_recorded(ledger, sweep_id, trials_from):
        return _judge(sweep_id, ledger, store, trials_from, pbo_limit)


@contextlib.contextmanager
def failure_recorded(ledger: str | Path, sweep_id: str, trials_from: Any) -> Iterator[None]:
    """Record a :class:`~qpipe.errors.QpipeError` raised inside as ``trial_stats_failed``
    (when the ledger exists; best effort: the user's error is what must reach them)."""
    from qpipe.ledger import payloads_sweep as ps
    from qpipe.runs import new_run_id

    try:
        yield
    except QpipeError as exc:
        if Path(ledger).exists():
            failed = ps.TrialStatsFailed(
                sweep_id=sweep_id,
                trials_from=str(trials_from),
                error=type(exc).__name__,
                message=(str(exc).strip().splitlines() or [type(exc).__name__])[0],
            )
            with contextlib.suppress(Exception):
                RunRecorder(Ledger(ledger), new_run_id()).trial_stats_failed(failed)
        raise


def _judge(
    sweep_id: str, ledger: str | Path, store: str | Path, trials_from: str | int, pbo_limit: int
) -> SweepStats:
    from qpipe.runs import new_run_id

    count = count_trials(records(ledger), sweep_id, trials_from)
    started = dict(count.started)
    keys = [str(k) for k, _ in started["grid"]]
    rows = _chunk_rows(count.sweeps[0].chunk_paths)
    if rows is None:
        msg = f"sweep `{sweep_id}` has no finished chunk in the ledger"
        raise ResearchError(msg)
    best = _best(rows, str(started.get("metric", "sharpe")))
    base = ThreadSafeConfig.from_mapping(started["config"])
    prices, panel = _prices_and_panel(started, ArrowStore(base.store.path or store))
    returns = trial_returns(prices, panel, base, [_params(best, keys)], full_history=False)
    sharpes = counted_sharpes(count)
    values = trial_statistics(returns[:, 0], sharpes, count.n_trials)
    result, why = _pbo(rows, keys, prices, panel, base, pbo_limit)
    values["pbo"] = None if result is None else result.to_dict()
    stats_id = new_run_id()
    RunRecorder(Ledger(ledger), stats_id).trial_stats(
        p.TrialStats(
            sweep_id=sweep_id,
            trial=int(best["trial"]),
            trials_from=count.trials_from,
            n_trials=count.n_trials,
            sweeps_counted=[s.to_dict() for s in count.sweeps],
            values=values,
        )
    )
    trial, params = int(best["trial"]), _params(best, keys)
    return SweepStats(
        stats_id, sweep_id, trial, params, count, values, result, sharpes, why_no_pbo=why
    )


def _pbo(
    rows: pl.DataFrame,
    keys: list[str],
    prices: pl.DataFrame,
    panel: Any,
    base: ThreadSafeConfig,
    limit: int,
) -> tuple[Any, str]:
    """The PBO over the sweep's finished trials, or None and why it was not computed."""
    from qpipe.stats import pbo

    ok = rows.filter(pl.col("status") == "ok").sort("trial")
    if ok.height < 2:
        return None, f"the PBO needs >= 2 finished trials, the sweep has {ok.height}"
    if ok.height > limit:
        why = (
            f"the sweep has {ok.height:,} finished trials, more than the {limit:,} whose daily "
            "returns are re-run for the PBO"
        )
        return None, why
    sets = [_params(r, keys) for r in ok.iter_rows(named=True)]
    returns = trial_returns(prices, panel, base, sets, full_history=False)
    if returns.shape[0] < 16:
        return None, f"the PBO needs >= 16 days for 16 blocks, the sweep has {returns.shape[0]}"
    return pbo(returns, 16), ""


PBO_FILE = "pbo.arrow"


def save_stats(stats: SweepStats, folder: Path) -> dict[str, Any]:
    """``stats`` as plain data for the sweep's manifest; the PBO's halvings go to
    ``<folder>/pbo.arrow`` (so ``sweep.html`` can be drawn again, e.g. after a promote)."""
    pbo = stats.pbo
    if pbo is not None:
        halvings = pl.DataFrame(
            {"lambda": pbo.lambdas, "is_sharpe": pbo.is_sharpe, "oos_sharpe": pbo.oos_sharpe}
        )
        write_ipc_atomic(halvings, folder / PBO_FILE)
    return {
        "stats_id": stats.stats_id,
        "trial": stats.trial,
        "params": stats.params,
        "trials_from": stats.count.trials_from,
        "sweeps_counted": [s.to_dict() for s in stats.count.sweeps],
        "values": stats.values,
        "why_no_pbo": stats.why_no_pbo,
    }


def load_stats(sweep_id: str, data: dict[str, Any], folder: Path) -> SweepStats:
    """The inverse of :func:`save_stats` (the trial Sharpe ratios are not kept)."""
    from qpipe.research.stats import PBOResult
    from qpipe.research.trials import SweepCount

    values = dict(data["values"])
    pbo = None
    if values.get("pbo"):
        halvings = pl.read_ipc(folder / PBO_FILE)
        scalars = {k: v for k, v in values["pbo"].items() if k != "n_halvings"}
        for k in ("slope", "intercept"):
            scalars[k] = math.nan if scalars[k] is None else scalars[k]
        pbo = PBOResult(
            lambdas=halvings["lambda"].to_numpy(),
            is_sharpe=halvings["is_sharpe"].to_numpy(),
            oos_sharpe=halvings["oos_sharpe"].to_numpy(),
            **scalars,
        )
    sweeps = tuple(SweepCount(**s) for s in data["sweeps_counted"])
    given = str(data["trials_from"])
    count = TrialCount({}, sweeps, given, int(given) if given.isdigit() else None)
    return SweepStats(
        str(data["stats_id"]), sweep_id, int(data["trial"]), dict(data["params"]), count,
        values, pbo, np.empty(0), why_no_pbo=str(data.get("why_no_pbo", "")),
    )  # fmt: skip
