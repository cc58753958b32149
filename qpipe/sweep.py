"""Parameter sweeps: the cartesian product of config values, one ordinary run per trial.

``runner.py --sweep strategy.lookback=63,126 --sweep allocation.top_n=10,20`` (or a ``[sweep]``
table in the config) runs every combination. Step by step:

1. :func:`parse_sweep` reads the grid: ``[sweep]`` entries first (``"section.key" = [values]``
   or nested ``[sweep.section] key = [values]``; an optional ``metric = "sharpe"`` names the
   ranking metric), then ``--sweep`` flags (values parsed as TOML scalars, else strings; a flag
   replaces a ``[sweep]`` entry of the same key). Each key is checked by the config's own
   validation; a bad flag is a :class:`~qpipe.errors.ConfigError` naming it.
2. :func:`run_sweep` builds the trial configs in a fixed order (the first key varies slowest).
   Every trial is a normal :func:`qpipe.api.run`, so the ledger holds one run per trial, and all
   trials share one :class:`~qpipe.engines.base.StepCache`: a step with the same stage, params
   and input digests (the features every trial needs) is computed once and read by reference.
   On the local engine trials run one after another. On Ray the steps all trials share are
   computed first on the driver (sharded on the cluster), then the trials run in parallel as
   Ray tasks, each a ``qpipe.run`` with a local engine, given only the config, paths and the
   cache's refs.
3. A trial that fails (any ``QpipeError``) is recorded (``run_failed`` in the ledger) and
   reported; the others finish. A killed worker is retried by Ray as a new run.
4. The summary (trial, each swept param, run_id, status, error, key metrics) is sorted best
   first by the metric (descending; ascending for ``ann_vol``, ``tracking_error``,
   ``total_cost``, ``turnover_ann``, as in the HTML; nulls last; ties by trial) and saved as
   ``<out>/sweeps/<sweep_id>/summary.arrow`` with ``sweep.html`` (a heatmap for two params).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from qpipe.config import ThreadSafeConfig
from qpipe.engines.base import StepCache, step_key
from qpipe.errors import ConfigError, QpipeError

if TYPE_CHECKING:
    from rich.table import Table

    from qpipe.engines.base import Engine

__all__ = [
    "KEY_METRICS",
    "SweepResult",
    "Trial",
    "parse_sweep",
    "run_sweep",
    "sweep_main",
    "sweep_metric",
    "sweep_table",
    "trial_configs",
]

Grid = list[tuple[str, list[Any]]]

KEY_METRICS = (
    "sharpe", "cagr", "total_return", "ann_vol", "max_drawdown", "sortino", "calmar",
    "turnover_ann", "total_cost", "n_rebalances", "hit_rate",
)
LOWER_IS_BETTER = frozenset({"ann_vol", "tracking_error", "total_cost", "turnover_ann"})


# the grid ----------------------------------------------------------------------------------
def _scalar(raw: str) -> Any:
    raw = raw.strip()
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _checked_key(key: str, origin: str) -> str:
    parts = key.strip().split(".")
    if len(parts) != 2 or not all(parts):
        msg = f"sweep {origin}: `{key}` must be `section.key`"
        raise ConfigError(msg)
    return ".".join(parts)


def parse_sweep(args: Sequence[str], cfg: ThreadSafeConfig) -> Grid:
    """The sweep grid: ``[sweep]`` entries of ``cfg``, then ``--sweep`` flags, as (key, values).

    Parameters
    ----------
    args
        ``--sweep`` flag values such as ``"strategy.lookback=63,126,252"``.
    cfg
        The base config; its ``[sweep]`` table adds entries (``metric`` is not a parameter).

    Raises
    ------
    ConfigError
        For a malformed flag or entry, an empty value list, or a key (or first value) the
        config rejects; the message names the flag.
    """
    grid: dict[str, list[Any]] = {}
    origins: dict[str, str] = {}

    def add(key: str, values: Any, origin: str) -> None:
        key = _checked_key(key, origin)
        if isinstance(values, str | bytes) or not isinstance(values, Sequence):
            values = [values]
        values = list(values)
        if not values or any(isinstance(v, Mapping | list | tuple) for v in values):
            msg = f"sweep {origin}: `{key}` needs a list of one or more scalar values"
            raise ConfigError(msg)
        grid[key] = values
        origins[key] = origin

    for key, value in cfg.sweep.items():
        if key == "metric":
            continue
        if isinstance(value, Mapping):  # [sweep.strategy] lookback = [...]
            for sub, values in value.items():
                add(f"{key}.{sub}", values, f"entry `[sweep] {key}.{sub}`")
        else:
            add(key, value, f"entry `[sweep] {key}`")
    for text in args:
        if "=" not in text:
            msg = f"sweep flag `--sweep {text}` is malformed: expected `section.key=v1,v2,...`"
            raise ConfigError(msg)
        lhs, raw = text.split("=", 1)
        values = [_scalar(v) for v in raw.split(",") if v.strip()]
        add(lhs, values, f"flag `--sweep {text}`")
    for key, values in grid.items():
        section, name = key.split(".")
        try:
            cfg.replace(**{section: {name: values[0]}})
        except ConfigError as exc:
            msg = f"sweep {origins[key]}: {exc}"
            raise ConfigError(msg) from None
    return list(grid.items())


def sweep_metric(cfg: ThreadSafeConfig, default: str = "sharpe") -> str:
    """The ranking metric: ``[sweep] metric`` if set, else ``default``."""
    metric = cfg.sweep.get("metric", default)
    if not isinstance(metric, str) or not metric:
        msg = f"`sweep.metric` must be a metric name such as `sharpe`, got {metric!r}"
        raise ConfigError(msg)
    return metric


def trial_configs(
    cfg: ThreadSafeConfig, grid: Grid
) -> list[tuple[dict[str, Any], ThreadSafeConfig | ConfigError]]:
    """(params, config or the error that config raised) per trial, first key varying slowest."""
    base = cfg.to_dict()
    base["sweep"] = {}  # a trial is a plain run; the grid is recorded in the summary
    trials: list[tuple[dict[str, Any], ThreadSafeConfig | ConfigError]] = []
    keys = [k for k, _ in grid]
    for combo in itertools.product(*(values for _, values in grid)):
        params = dict(zip(keys, combo, strict=True))
        data = {s: dict(t) for s, t in base.items()}
        for key, value in params.items():
            section, name = key.split(".")
            data.setdefault(section, {})[name] = value
        try:
            trials.append((params, ThreadSafeConfig.from_mapping(data)))
        except ConfigError as exc:
            trials.append((params, exc))
    return trials


# running -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Trial:
    """One trial's outcome: its params, run id (None if its config was invalid), status."""

    index: int
    params: dict[str, Any]
    run_id: str | None
    status: str  # "ok" | "failed"
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SweepResult:
    """The trials, the sorted summary frame and where it was written."""

    sweep_id: str
    metric: str
    params: tuple[str, ...]
    trials: tuple[Trial, ...]
    summary: pl.DataFrame
    summary_path: Path
    html_path: Path | None
    seconds: float
    cache_entries: int = 0

    @property
    def failed(self) -> tuple[Trial, ...]:
        return tuple(t for t in self.trials if t.status != "ok")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _run_trial(
    cfg_dict: dict[str, Any],
    out: str,
    ledger: str,
    cache: StepCache,
    report: bool | None,
    argv: list[str] | None,
    engine: Any = None,
    cwd: str | None = None,
) -> dict[str, Any]:
    """One trial: a normal run; a QpipeError becomes a failed outcome (the run recorded it)."""
    from qpipe.api import run
    from qpipe.engines.local import LocalEngine

    seen: dict[str, Any] = {}

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "run_started":
            seen["run_id"] = data["run_id"]

    where = contextlib.chdir(cwd) if cwd and os.path.isdir(cwd) else contextlib.nullcontext()
    with where:  # a Ray worker resolves relative config paths as the driver does
        try:
            result = run(
                ThreadSafeConfig.from_mapping(cfg_dict),
                out=out,
                ledger=ledger,
                engine=engine if engine is not None else LocalEngine(threads=1),
                cache=cache,
                report=report,
                argv=argv,
                on_event=on_event,
            )
        except QpipeError as exc:
            return {"run_id": seen.get("run_id"), "status": "failed", "error": _first_line(exc)}
    return {
        "run_id": result.run_id,
        "status": "ok",
        "error": None,
        "metrics": dict(result.metrics),
        "artifacts": dict(result.artifacts),
    }


class _Progress:
    """A rich progress bar on stderr: trials done / running / failed (a no-op when off)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.failed, self.running = total, 0, 0, 0
        self._bar: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._bar = Progress(
                TextColumn("sweep"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                console=Console(stderr=True),
                transient=False,
            )
            self._task = self._bar.add_task("sweep", total=total, status="")

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, *, running: int | None = None, finished: str | None = None) -> None:
        if finished is not None:
            self.done += 1
            self.failed += finished != "ok"
        if running is not None:
            self.running = running
        if self._bar is not None:
            status = f"done {self.done} · running {self.running} · failed {self.failed}"
            self._bar.update(self._task, completed=self.done, status=status)


def _shared_prefix(configs: list[ThreadSafeConfig]):
    """The strategy steps every trial runs identically (same stage, params, inputs, outputs)."""
    from qpipe.stages.base import Pipeline
    from qpipe.strategy import build_strategy

    if not configs or any(c.data.weights for c in configs):
        return None
    first = configs[0]
    if any(c.data != first.data for c in configs):  # different prices: nothing is shared
        return None
    pipes = [build_strategy(c) for c in configs]
    shared = []
    for steps in zip(*(p.steps for p in pipes), strict=False):
        keys = {step_key(s, {}) + "|" + ",".join(s.inputs) for s in steps}
        if len(keys) != 1:
            break
        shared.append(steps[0])
    return Pipeline(tuple(shared), name="sweep-shared") if shared else None


def _warm_cache(
    configs: list[ThreadSafeConfig], engine: Engine, store_path: Path, cache: StepCache
) -> None:
    """Compute the steps all trials share once, so every trial reads them by reference."""
    from qpipe.context import RunContext
    from qpipe.data.universe import builtin_universe
    from qpipe.ingest import ingest_frame, ingest_prices
    from qpipe.store import ArrowStore

    shared = _shared_prefix(configs)
    if shared is None:
        return
    cfg = configs[0]
    store = ArrowStore(store_path)
    try:
        d = cfg.data
        if d.source == "builtin":
            frame = builtin_universe(symbols=d.symbols, start=d.start, end=d.end, seed=d.seed)
            res = ingest_frame(frame, store, name="builtin", validate=True)
        else:
            res = ingest_prices(cfg.data.source, store, validate=True)
        engine.run(shared, RunContext({"prices": res.ref}), store, cache=cache)
    except QpipeError:
        return  # the trials will meet the same problem and record it properly


def run_sweep(
    cfg: ThreadSafeConfig,
    grid: Grid,
    *,
    engine: Engine | str | None = None,
    out: str | Path | None = None,
    ledger: str | Path | None = None,
    metric: str = "sharpe",
    progress: bool = True,
    report: bool | None = None,
    argv: Sequence[str] | None = None,
) -> SweepResult:
    """Run every combination of ``grid`` over ``cfg``; return the trials and the summary.

    Parameters
    ----------
    cfg
        The base config (its ``[sweep]`` table is not re-read here; see :func:`parse_sweep`).
    grid
        ``[(key, values), ...]`` as returned by :func:`parse_sweep`.
    engine
        An engine instance, ``"local"``/``"ray"``, or None for ``cfg.engine.kind``. On Ray the
        trials run in parallel, one task per trial.
    out, ledger
        Runs root and ledger (defaults as for :func:`qpipe.api.run`).
    metric
        The summary's ranking metric.
    progress
        Show a progress bar on stderr.
    report
        Write each trial's ``report.html`` (default: ``cfg.run.report``).

    Examples
    --------
    >>> grid = parse_sweep(["strategy.lookback=63,126"], cfg)  # doctest: +SKIP
    >>> run_sweep(cfg, grid, metric="sharpe").summary  # doctest: +SKIP
    """
    from qpipe.api import new_run_id, resolve_paths
    from qpipe.engines import make_engine

    t0 = time.perf_counter()
    if not grid:
        msg = "sweep has no parameters: give `--sweep section.key=v1,v2` or a `[sweep]` table"
        raise ConfigError(msg)
    paths = resolve_paths(cfg, out, ledger)
    paths.out.mkdir(parents=True, exist_ok=True)
    out_abs, ledger_abs = str(paths.out.absolute()), str(paths.ledger.absolute())
    own = engine is None or isinstance(engine, str)
    if own:
        kind = engine if isinstance(engine, str) else cfg.engine.kind
        eng: Engine = make_engine(cfg.replace(engine={"kind": kind}))
    else:
        eng = engine  # type: ignore[assignment]
    trials = trial_configs(cfg, grid)
    cache = StepCache()
    args = list(argv) if argv is not None else None
    outcomes: list[dict[str, Any]] = [{} for _ in trials]
    valid = [(i, c) for i, (_, c) in enumerate(trials) if isinstance(c, ThreadSafeConfig)]
    for i, (_, c) in enumerate(trials):
        if isinstance(c, ConfigError):
            outcomes[i] = {"run_id": None, "status": "failed", "error": _first_line(c)}
    try:
        with _Progress(len(trials), progress) as bar:
            for _, c in trials:
                if isinstance(c, ConfigError):
                    bar.update(finished="failed")
            if getattr(eng, "name", "") == "ray":
                _run_on_ray(
                    eng, valid, outcomes, paths.store, out_abs, ledger_abs, cache, report, args, bar
                )
            else:
                for i, c in valid:
                    bar.update(running=1)
                    outcomes[i] = _run_trial(
                        c.to_dict(), out_abs, ledger_abs, cache, report, args, eng
                    )
                    bar.update(running=0, finished=outcomes[i]["status"])
    finally:
        if own:
            eng.close()

    done = tuple(
        Trial(
            index=i,
            params=params,
            run_id=o.get("run_id"),
            status=o["status"],
            error=o.get("error"),
            metrics=o.get("metrics", {}),
            artifacts=o.get("artifacts", {}),
        )
        for i, ((params, _), o) in enumerate(zip(trials, outcomes, strict=True))
    )
    keys = tuple(k for k, _ in grid)
    summary = _summary(done, keys, metric)
    sweep_id = new_run_id()
    folder = paths.out / "sweeps" / sweep_id
    folder.mkdir(parents=True, exist_ok=False)
    from qpipe.store import write_ipc_atomic

    summary_path = folder / "summary.arrow"
    write_ipc_atomic(summary, summary_path)
    html_path: Path | None = folder / "sweep.html"
    try:
        from qpipe.report import render_sweep

        html = render_sweep(summary, metric=metric, params=list(keys), title=f"sweep {sweep_id}")
        _write_text_atomic(folder / "sweep.html", html)
    except (ImportError, QpipeError):
        html_path = None
    return SweepResult(
        sweep_id=sweep_id,
        metric=metric,
        params=keys,
        trials=done,
        summary=summary,
        summary_path=summary_path,
        html_path=html_path,
        seconds=time.perf_counter() - t0,
        cache_entries=len(cache),
    )


def _run_on_ray(
    eng: Any,
    valid: list[tuple[int, ThreadSafeConfig]],
    outcomes: list[dict[str, Any]],
    store_path: Path,
    out: str,
    ledger: str,
    cache: StepCache,
    report: bool | None,
    argv: list[str] | None,
    bar: _Progress,
) -> None:
    """Shared steps once on the driver, then one Ray task per trial; results as they finish."""
    _warm_cache([c for _, c in valid], eng, store_path, cache)
    ray = eng.ray
    task = ray.remote(_run_trial).options(
        num_cpus=1, max_retries=eng.max_retries, retry_exceptions=False
    )
    cwd = os.getcwd()
    pending = {
        task.remote(c.to_dict(), out, ledger, cache, report, argv, None, cwd): i for i, c in valid
    }
    slots = eng.cluster_cpus()
    try:
        while pending:
            bar.update(running=min(slots, len(pending)))
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                i = pending.pop(ref)
                try:
                    outcomes[i] = ray.get(ref)
                except ray.exceptions.RayError as exc:  # worker died more than max_retries
                    outcomes[i] = {"run_id": None, "status": "failed", "error": _first_line(exc)}
                bar.update(finished=outcomes[i]["status"])
        bar.update(running=0)
    except KeyboardInterrupt:
        for ref in pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        raise


def _summary(trials: tuple[Trial, ...], keys: tuple[str, ...], metric: str) -> pl.DataFrame:
    metric_cols = list(KEY_METRICS) if metric in KEY_METRICS else [metric, *KEY_METRICS]
    columns: dict[str, pl.Series] = {
        "trial": pl.Series("trial", [t.index for t in trials], dtype=pl.Int64)
    }
    for key in keys:
        columns[key] = pl.Series(key, [t.params[key] for t in trials], strict=False)
    columns["run_id"] = pl.Series("run_id", [t.run_id for t in trials], dtype=pl.String)
    columns["status"] = pl.Series("status", [t.status for t in trials], dtype=pl.String)
    columns["error"] = pl.Series("error", [t.error for t in trials], dtype=pl.String)
    for name in metric_cols:
        values = [t.metrics.get(name) for t in trials]
        columns[name] = pl.Series(name, values, dtype=pl.Float64, strict=False)
    frame = pl.DataFrame(list(columns.values()))
    descending = metric not in LOWER_IS_BETTER
    return frame.sort(
        [pl.col(metric).fill_nan(None), "trial"],
        descending=[descending, False],
        nulls_last=True,
    )


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# the terminal ------------------------------------------------------------------------------
def sweep_table(result: SweepResult, *, limit: int = 20) -> Table:
    """A rich table of the summary, best first (the first ``limit`` trials)."""
    from rich.table import Table

    from qpipe.report import METRIC_LABELS, format_metric

    table = Table(title=f"sweep {result.sweep_id} · ranked by {result.metric}")
    shown = ["trial", *result.params, result.metric, "sharpe", "cagr", "max_drawdown", "status"]
    shown = list(dict.fromkeys(shown))
    for name in shown:
        table.add_column(name, justify="left" if name in ("status",) else "right")
    for row in result.summary.head(limit).iter_rows(named=True):
        cells = []
        for name in shown:
            v = row[name]
            if name in METRIC_LABELS:  # the same formatting as the run summary and the report
                cells.append(format_metric(name, v))
            else:
                cells.append("—" if v is None else str(v))
        table.add_row(*cells)
    return table


def sweep_main(
    cfg: ThreadSafeConfig,
    sweep_args: Sequence[str],
    *,
    argv: Sequence[str] | None = None,
    quiet: bool = False,
    on_result: Callable[[SweepResult], None] | None = None,
    grid: Grid | None = None,
) -> int:
    """The CLI's sweep: run it, print the table and any failures; 1 if a trial failed.

    ``grid`` is ``parse_sweep(sweep_args, cfg)`` when the caller already parsed it.
    """
    from rich.console import Console

    if grid is None:
        grid = parse_sweep(sweep_args, cfg)
    result = run_sweep(cfg, grid, metric=sweep_metric(cfg), progress=not quiet, argv=argv)
    if on_result is not None:
        on_result(result)
    if quiet:
        print(result.summary_path.parent)
    else:
        Console().print(sweep_table(result))
        n, secs = len(result.trials), result.seconds
        print(f"sweep: {result.summary_path.parent}  ({n} trials, {secs:.1f}s)")
    for t in result.failed:
        params = ", ".join(f"{k}={v}" for k, v in t.params.items())
        run = f" (run {t.run_id})" if t.run_id else ""
        print(f"qpipe: error: trial {t.index} [{params}] failed{run}: {t.error}", file=sys.stderr)
    return 1 if result.failed else 0
