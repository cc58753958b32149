"""The outputs phase: the run folder's files, each written atomically and recorded.

Data outputs are hard links to the read-only store entries where the file system allows (no
copy), otherwise atomic copies; ``metrics.json``, ``config.toml`` and ``report.html`` are written
atomically. Each becomes an ``artifact`` record with its digest.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from qpipe._fs import write_bytes_atomic
from qpipe.ledger import payloads as p
from qpipe.runs.env import RunEnv
from qpipe.runs.phases import Audit, Backtest
from qpipe.store import ArrowStore, DatasetRef, write_ipc_atomic

__all__ = ["DATA_OUTPUTS", "outputs"]

DATA_OUTPUTS = ("equity.arrow", "weights.arrow", "trades.arrow", "metrics.json")


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


def _artifact(env: RunEnv, name: str, digest: str) -> None:
    path = env.run_dir / name
    env.recorder.artifact(
        p.Artifact(name=name, path=str(path), digest=digest, bytes=path.stat().st_size)
    )


def _report_html(env: RunEnv, backtest: Backtest) -> str:
    """The run page from the run's frames and the ledger records written so far."""
    from qpipe.backtest.metrics import equal_weight_benchmark
    from qpipe.views import ReportInputs, from_records, render_run_page

    ctx, store = backtest.context, env.store
    equity = store.open(ctx["equity"])
    bench = equal_weight_benchmark(store.open(ctx["benchmark"]))
    k = env.cfg.backtest.initial_capital
    bench_eq = (
        bench.join(equity.select("date"), on="date", how="semi")
        .sort("date")
        .select(
            "date",
            (pl.col("return").fill_null(0.0) + 1).cum_prod().mul(k).alias("equity"),
            pl.col("return").fill_null(0.0),
        )
    )
    audit, validation, provenance = from_records(env.run_id, env.recorder.written, env.ledger.path)
    research = env.report_research(equity) if env.report_research is not None else None
    return render_run_page(
        ReportInputs(
            equity=equity,
            benchmark_equity=bench_eq,
            weights=store.open(ctx["weights"]),
            trades=store.open(ctx["trades"]),
            prices=store.open(ctx["prices"]),  # memory-mapped; read only for a book with shorts
            metrics=backtest.metrics,
            audit=audit,
            validation=validation,
            provenance=provenance,
            backtest=dict(env.cfg.backtest),
            config_toml=env.cfg.to_toml(),
            run_id=env.run_id,
            created=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
            research=research,
        )
    )


def outputs(env: RunEnv, audit: Audit, backtest: Backtest) -> dict[str, str]:
    """Write the run folder; return ``{file name: digest}``."""
    artifacts: dict[str, str] = {}
    ctx = backtest.context
    for name in ("equity", "weights", "trades"):
        file = f"{name}.arrow"
        artifacts[file] = _link_or_write(ctx[name], env.store, env.run_dir / file)
        _artifact(env, file, artifacts[file])
    texts: dict[str, Callable[[], str]] = {
        "metrics.json": lambda: (
            json.dumps(backtest.metrics, sort_keys=True, indent=2, allow_nan=False) + "\n"
        ),
        "config.toml": env.cfg.to_toml,
    }
    if env.report:
        texts["report.html"] = lambda: _report_html(env, backtest)
    for file, text in texts.items():  # rendered in order, each just before it is written
        artifacts[file] = write_bytes_atomic(env.run_dir / file, text().encode("utf-8"))
        _artifact(env, file, artifacts[file])
    return artifacts
