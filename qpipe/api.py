"""Running a backtest: the one place where the pieces meet.

:func:`run` is what ``runner.py`` and a notebook call. Step by step (each step records itself in
the ledger before the next begins):

1. ``run_started``: resolved config and digest, code and package versions, engine, host.
2. Ingest the prices (built-in universe or ``data.source``) into the store, with the Tier 1
   schema (skipped when the ledger shows this exact input, by digest, already passed) → ``dataset``,
   ``validation``.
3. Target weights: the strategy pipeline (features → signals → allocation) on the engine, or an
   external weights file → ``stage`` records.
4. Tier 2: the allocation audit, point-in-time check included → ``allocation_audit``.
5. Backtest and metrics stages on the engine → ``stage``, ``metrics``.
6. Outputs into ``<out>/<run_id>/``, each written atomically (or hard-linked from the store) →
   ``artifact`` per file, then ``run_finished``. Any failure, Ctrl-C included, ends the run
   with ``run_failed`` and re-raises.

Only refs travel between the steps; frames are opened from the store (memory-mapped) where a
step needs them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import secrets
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from qpipe._fs import write_bytes_atomic
from qpipe._versions import package_versions, qpipe_version
from qpipe.config import ThreadSafeConfig
from qpipe.context import RunContext
from qpipe.engines import make_engine
from qpipe.engines.base import Engine, StageRecord, StepCache
from qpipe.errors import (
    AllocationAuditError,
    ConfigError,
    PathSafetyError,
    QpipeError,
    StoreError,
)
from qpipe.ingest import IngestResult, ingest_frame, ingest_prices, ingest_weights
from qpipe.ledger import Ledger
from qpipe.stages.backtest import backtest as backtest_stage
from qpipe.stages.backtest import metrics as metrics_stage
from qpipe.stages.base import Pipeline
from qpipe.store import ArrowStore, DatasetRef, write_ipc_atomic
from qpipe.strategy import build_strategy
from qpipe.validation.audit import AuditReport, allocation_notes, audit_allocation
from qpipe.validation.steps import check_step_output

__all__ = ["RunPaths", "RunResult", "new_run_id", "resolve_paths", "run"]

DATA_OUTPUTS = ("equity.arrow", "weights.arrow", "trades.arrow", "metrics.json")


def new_run_id(now: datetime | None = None) -> str:
    """UTC timestamp plus six random hex characters, e.g. ``20261126T073512Z-3fa9c1``."""
    now = now or datetime.now(UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class RunPaths:
    """Where a run reads and writes: the runs root, the ledger and the store."""

    out: Path
    ledger: Path
    store: Path

    def run_dir(self, run_id: str) -> Path:
        path = (self.out / run_id).absolute()
        if path.parent != self.out.absolute() or run_id in ("", ".", ".."):
            msg = f"run id `{run_id}` would escape the runs folder `{self.out}`"
            raise PathSafetyError(msg)
        return path


def resolve_paths(
    cfg: ThreadSafeConfig, out: str | Path | None = None, ledger: str | Path | None = None
) -> RunPaths:
    """Paths: explicit argument > config > default.

    Defaults: ``runs``, ``<out>/audit.jsonl``, ``<out>/store``.
    """
    out_dir = Path(out or cfg.run.out or "runs")
    ledger_path = Path(ledger or cfg.run.ledger or out_dir / "audit.jsonl")
    store_path = Path(cfg.store.path) if cfg.store.path else out_dir / "store"
    return RunPaths(out_dir, ledger_path, store_path)


@dataclass
class RunResult:
    """Everything a run produced, for a notebook user: frames, metrics, paths, the report.

    Frames are opened from the store on access (memory-mapped, no copy).
    """

    run_id: str
    config: ThreadSafeConfig
    out_dir: Path
    ledger_path: Path
    store: ArrowStore
    refs: dict[str, DatasetRef]
    metrics: dict[str, Any]
    audit: AuditReport | None
    stages: tuple[StageRecord, ...]
    artifacts: dict[str, str] = field(default_factory=dict)  # name -> digest
    seconds: float = 0.0
    warnings: tuple[str, ...] = ()  # legal but probably unintended allocations (see the audit)

    def frame(self, name: str) -> pl.DataFrame:
        return self.store.open(self.refs[name])

    @property
    def equity(self) -> pl.DataFrame:
        return self.frame("equity")

    @property
    def weights(self) -> pl.DataFrame:
        return self.frame("weights")

    @property
    def trades(self) -> pl.DataFrame:
        return self.frame("trades")

    @property
    def prices(self) -> pl.DataFrame:
        return self.frame("prices")

    @property
    def report_path(self) -> Path:
        return self.out_dir / "report.html"

    def report(self) -> str:
        """The HTML report (the text of ``report.html``)."""
        return self.report_path.read_text(encoding="utf-8")

    def _repr_html_(self) -> str:  # notebooks show the report inline
        return self.report() if self.report_path.exists() else f"<pre>{self!r}</pre>"


def _git_state() -> tuple[str | None, bool | None]:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            ).stdout.strip()
        )
        return commit, dirty
    except (OSError, subprocess.SubprocessError):
        return None, None


def _write_text_atomic(path: Path, text: str) -> str:
    return write_bytes_atomic(path, text.encode("utf-8"))


def _link_or_write(ref: DatasetRef, store: ArrowStore, target: Path) -> str:
    """Put a stored dataset at ``target`` without copying: a hard link to the read-only store
    entry where the file system allows, otherwise an atomic copy of the bytes."""
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        os.link(ref.path, tmp)
        os.replace(tmp, target)
        return ref.digest
    except OSError:
        tmp.unlink(missing_ok=True)
        return write_ipc_atomic(store.open(ref), target)


def _validated_digests(ledger: Ledger) -> set[str]:
    """Source digests whose Tier 1 validation passed in an earlier run."""
    if not ledger.path.exists():
        return set()
    return {
        r["data"]["source_digest"]
        for r in ledger.records()
        if r["kind"] == "validation"
        and r["data"].get("tier") == "tier1"
        and r["data"].get("passed")
        and not r["data"].get("skipped")
        and r["data"].get("source_digest")
    }


def _dataset_record(name: str, res: IngestResult) -> dict[str, Any]:
    return {
        **res.ref.to_json(),
        "name": name,
        "source": res.source,
        "source_digest": res.source_digest,
    }


def _builtin(cfg: ThreadSafeConfig, store: ArrowStore) -> IngestResult:
    """The built-in universe: generated and validated on first use, then read from the store.

    ``<store>/index/builtin-<key>.json`` maps the universe's parameters to its stored digest;
    the index name is a hash, so nothing from the config becomes a path.
    """
    from qpipe.data.universe import builtin_universe

    d = cfg.data
    params = {"symbols": d.symbols, "start": d.start, "end": d.end, "seed": d.seed}
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:32]
    index = store.root / "index" / f"builtin-{key}.json"
    start = time.perf_counter()
    try:
        digest = json.loads(index.read_text())["digest"]
        ref = store.ref_for(digest)
        if ref is not None:
            store.verify(ref)  # a damaged entry is regenerated, never trusted
    except (OSError, ValueError, KeyError, TypeError, QpipeError):
        ref = None
    if ref is not None:
        return IngestResult(
            ref,
            "builtin",
            ref.digest,
            ref.rows,
            d.symbols,  # the generator makes exactly this many
            time.perf_counter() - start,
            validated=False,
        )
    res = ingest_frame(builtin_universe(**params), store, name="builtin", validate=True)
    index = store.subfolder("index") / index.name  # never through a symlink
    _write_text_atomic(index, json.dumps({"digest": res.ref.digest, "params": params}))
    return res


def _ingest(
    name: str,
    source: str,
    cfg: ThreadSafeConfig,
    store: ArrowStore,
    ledger: Ledger,
    run_id: str,
    run_dir: Path,
    validated: set[str],
    *,
    kind: str = "prices",
) -> IngestResult:
    start = time.perf_counter()
    if kind == "weights":
        res = ingest_weights(source, store)
    elif source == "builtin":
        res = _builtin(cfg, store)
    else:
        skip = cfg.validation.skip_validated and cfg.validation.mode != "none"
        res = _ingest_file(source, store, run_dir, validated if skip else set(), cfg)
    ledger.append(run_id, "dataset", _dataset_record(name, res))
    if kind == "prices":
        ledger.append(
            run_id,
            "validation",
            {
                "tier": "tier1",
                "target": name,
                "source_digest": res.source_digest,
                "passed": True,
                "skipped": not res.validated,
                "seconds": round(time.perf_counter() - start, 6),
                "failures": [],
            },
        )
    return res


def _ingest_file(
    source: str, store: ArrowStore, run_dir: Path, validated: set[str], cfg: ThreadSafeConfig
) -> IngestResult:
    from qpipe.ingest import file_digest

    digest = file_digest(source)
    validate = cfg.validation.mode != "none" and digest not in validated
    return ingest_prices(source, store, quarantine_dir=run_dir, validate=validate)


def _check_universe(cfg: ThreadSafeConfig, prices: IngestResult) -> None:
    """Config limits that need the data: ``top_n`` cannot exceed the number of symbols."""
    a = cfg.allocation
    if a.scheme in ("top_n", "inverse_vol") and a.top_n > prices.symbols:
        msg = (
            f"`allocation.top_n` ({a.top_n}) is larger than the universe: "
            f"`{prices.source}` has {prices.symbols} symbols; set `allocation.top_n` "
            f"to at most {prices.symbols}"
        )
        raise ConfigError(msg)


def _backtest_pipeline(cfg: ThreadSafeConfig) -> Pipeline:
    b = cfg.backtest
    bt = backtest_stage.bind(
        {
            "initial_capital": b.initial_capital,
            "cost_bps": b.cost_bps,
            "slippage_bps": b.slippage_bps,
            "execution": b.execution,
            "borrow_bps": b.borrow_bps,
            "cash_rate": b.cash_rate,
            "start": b.start,
            "end": b.end,
        }
    )
    mt = metrics_stage.bind({"initial_capital": b.initial_capital})
    return Pipeline((bt, mt), name="backtest")


def run(
    config: ThreadSafeConfig | None = None,
    *,
    data: str | Path | None = None,
    weights: str | Path | None = None,
    benchmark: str | Path | None = None,
    out: str | Path | None = None,
    ledger: str | Path | None = None,
    engine: Engine | str | None = None,
    argv: Sequence[str] | None = None,
    report: bool | None = None,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
    cache: StepCache | None = None,
) -> RunResult:
    """Run one backtest end to end and return its :class:`RunResult`.

    Parameters
    ----------
    config
        The frozen config (defaults if None). ``data``/``weights``/``benchmark`` replace its data
        sources; ``out``/``ledger`` its paths; ``engine`` its engine (an instance or a name).
    cache
        A :class:`StepCache` shared by several runs (a sweep): steps already computed on the
        same inputs with the same params are reused by reference instead of recomputed.

    Examples
    --------
    >>> import qpipe
    >>> cfg = qpipe.ThreadSafeConfig.default().replace(data={"symbols": 50})
    >>> result = qpipe.run(cfg)  # doctest: +SKIP
    >>> result.metrics["sharpe"]  # doctest: +SKIP
    """
    cfg = config or ThreadSafeConfig.default()
    overrides: dict[str, Any] = {}
    if data is not None:
        overrides["source"] = str(data)
    if weights is not None:
        overrides["weights"] = str(weights)
    if benchmark is not None:
        overrides["benchmark"] = str(benchmark)
    if overrides:
        cfg = cfg.replace(data=overrides)
    if isinstance(engine, str):
        cfg = cfg.replace(engine={"kind": engine})
    paths = resolve_paths(cfg, out, ledger)
    try:
        paths.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"cannot create the runs folder `{paths.out}`: {exc.strerror or exc}"
        raise StoreError(msg) from None
    book = Ledger(paths.ledger)
    emit = on_event or (lambda kind, data: None)

    run_id = new_run_id()
    while True:
        run_dir = paths.run_dir(run_id)
        try:
            run_dir.mkdir(parents=False)
            break
        except FileExistsError:
            run_id = new_run_id()
        except OSError as exc:  # read-only or full: before the run starts, so not recorded
            msg = f"cannot create the run folder `{run_dir}`: {exc.strerror or exc}"
            raise StoreError(msg) from None
    own_engine = not (engine is not None and not isinstance(engine, str))
    t0 = time.perf_counter()
    commit, dirty = _git_state()
    try:
        book.append(
            run_id,
            "run_started",
            {
                "config": cfg.to_dict(),
                "config_digest": cfg.digest,
                "code_version": qpipe_version(),
                "git_commit": commit,
                "git_dirty": dirty,
                "packages": package_versions(),
                "engine": cfg.engine.kind if own_engine else getattr(engine, "name", "custom"),
                "host": platform.node(),
                "argv": list(argv) if argv is not None else None,
                "out_dir": str(run_dir),
            },
        )
    except BaseException:  # an unwritable ledger (read-only, a folder): no run, no folder
        with contextlib.suppress(OSError):
            run_dir.rmdir()
        raise
    emit("run_started", {"run_id": run_id, "out_dir": str(run_dir)})
    eng: Engine | None = None
    try:
        store = ArrowStore(paths.store)
        eng = make_engine(cfg) if own_engine else engine  # type: ignore[assignment]
        assert eng is not None
        validated = _validated_digests(book)
        prices = _ingest("prices", cfg.data.source, cfg, store, book, run_id, run_dir, validated)
        emit("ingested", {"rows": prices.rows})
        if not cfg.data.weights:
            _check_universe(cfg, prices)
        ctx = RunContext({"prices": prices.ref})
        if cfg.data.benchmark:
            bench = _ingest(
                "benchmark", cfg.data.benchmark, cfg, store, book, run_id, run_dir, validated
            )
            ctx = ctx.with_refs(benchmark=bench.ref)
        else:
            ctx = ctx.with_refs(benchmark=prices.ref)

        check = check_step_output if cfg.validation.mode == "per_step" else None
        records: list[StageRecord] = []

        def record(rec: StageRecord) -> None:
            records.append(rec)
            book.append(run_id, "stage", rec.to_json())
            emit("stage", rec.to_json())

        strategy: Pipeline | None = None
        if cfg.data.weights:
            w = _ingest(
                "weights",
                cfg.data.weights,
                cfg,
                store,
                book,
                run_id,
                run_dir,
                validated,
                kind="weights",
            )
            ctx = ctx.with_refs(weights=w.ref)
        else:
            strategy = build_strategy(cfg)
            ctx = eng.run(strategy, ctx, store, check=check, on_record=record, cache=cache).context

        audit: AuditReport | None = None
        notes: list[str] = []
        if cfg.validation.mode != "none":
            audit = audit_allocation(
                store.open(ctx["weights"]),
                store.open(ctx["prices"]),
                cfg,
                strategy=strategy,
                raise_on_violation=False,
            )
            notes = allocation_notes(store.open(ctx["weights"]), cfg) if audit.passed else []
            book.append(run_id, "allocation_audit", {**audit.to_json(), "warnings": notes})
            emit("audited", audit.to_json())
            for note in notes:
                emit("warning", {"message": note})
            try:
                audit.raise_for_violations()
            except AllocationAuditError as exc:
                if not cfg.data.weights:
                    raise
                msg = f"weights file `{cfg.data.weights}`: {exc.args[0]}"
                raise AllocationAuditError(msg, exc.violations) from None

        ctx = eng.run(
            _backtest_pipeline(cfg), ctx, store, check=check, on_record=record, cache=cache
        ).context
        metrics_row = store.open(ctx["metrics"]).row(0, named=True)
        metrics = {k: _json_number(k, v) for k, v in metrics_row.items()}
        book.append(run_id, "metrics", metrics)

        artifacts = _write_outputs(run_id, run_dir, cfg, store, ctx, metrics, book, report)
        seconds = time.perf_counter() - t0
        book.append(run_id, "run_finished", {"seconds": round(seconds, 6), "out_dir": str(run_dir)})
        refs = {name: ctx[name] for name in ctx}
        return RunResult(
            run_id=run_id,
            config=cfg,
            out_dir=run_dir,
            ledger_path=paths.ledger,
            store=store,
            refs=refs,
            metrics=metrics,
            audit=audit,
            stages=tuple(records),
            artifacts=artifacts,
            seconds=seconds,
            warnings=tuple(notes),
        )
    except BaseException as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        # the original error matters more than a failure to record it
        with contextlib.suppress(Exception):
            book.append(run_id, "run_failed", {"error": type(exc).__name__, "message": message})
        with contextlib.suppress(OSError):
            run_dir.rmdir()  # only if empty: a quarantine file, if any, stays where the error says
        raise
    finally:
        if own_engine and eng is not None:
            eng.close()


def _json_number(name: str, value: Any) -> Any:
    """Metrics as JSON numbers: NaN/inf become null, counts become ints."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if name.startswith("n_") and float(value).is_integer():
        return int(value)
    return value


def _write_outputs(
    run_id: str,
    run_dir: Path,
    cfg: ThreadSafeConfig,
    store: ArrowStore,
    ctx: RunContext,
    metrics: dict[str, Any],
    book: Ledger,
    report: bool | None,
) -> dict[str, str]:
    artifacts: dict[str, str] = {}

    def note(name: str, digest: str) -> None:
        path = run_dir / name
        artifacts[name] = digest
        book.append(
            run_id,
            "artifact",
            {"name": name, "path": str(path), "digest": digest, "bytes": path.stat().st_size},
        )

    for name in ("equity", "weights", "trades"):
        note(f"{name}.arrow", _link_or_write(ctx[name], store, run_dir / f"{name}.arrow"))
    text = json.dumps(metrics, sort_keys=True, indent=2, allow_nan=False) + "\n"
    note("metrics.json", _write_text_atomic(run_dir / "metrics.json", text))
    note("config.toml", _write_text_atomic(run_dir / "config.toml", cfg.to_toml()))
    if report if report is not None else cfg.run.report:
        from qpipe.backtest.metrics import equal_weight_benchmark
        from qpipe.report import render_report

        equity = store.open(ctx["equity"])
        bench = equal_weight_benchmark(store.open(ctx["benchmark"]))
        k = cfg.backtest.initial_capital
        bench_eq = (
            bench.join(equity.select("date"), on="date", how="semi")
            .sort("date")
            .select("date", (pl.col("return").fill_null(0.0) + 1).cum_prod().mul(k).alias("equity"))
        )
        html = render_report(
            equity=equity,
            benchmark_equity=bench_eq,
            weights=store.open(ctx["weights"]),
            metrics=metrics,
            config_toml=cfg.to_toml(),
            run_id=run_id,
            created=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
        )
        note("report.html", _write_text_atomic(run_dir / "report.html", html))
    return artifacts


def record_config_failure(
    config_path: str | None,
    out: str | Path | None,
    ledger: str | Path | None,
    argv: Sequence[str],
    exc: Exception,
) -> None:
    """Record a run that failed on its config, before it could start.

    ``run_started`` without a config, then ``run_failed``, in the ledger the run would have used.
    Best effort: the user's error is what must reach the terminal, not a failure to record it.
    """
    try:
        base = ThreadSafeConfig.from_toml(config_path) if config_path else None
    except ConfigError:
        base = None
    cfg = base or ThreadSafeConfig.default()
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    with contextlib.suppress(Exception):
        paths = resolve_paths(cfg, out, ledger)
        paths.ledger.parent.mkdir(parents=True, exist_ok=True)
        book = Ledger(paths.ledger)
        run_id = new_run_id()
        started = {
            "config": None,
            "config_digest": None,
            "code_version": qpipe_version(),
            "engine": None,
            "host": platform.node(),
            "argv": list(argv),
            "out_dir": None,
            "phase": "config",
        }
        book.append(run_id, "run_started", started)
        failed = {"error": type(exc).__name__, "message": message, "phase": "config"}
        book.append(run_id, "run_failed", failed)
