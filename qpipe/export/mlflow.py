"""The MLflow view: write finished runs from the ledger to MLflow (write-only).

This is the only module that imports ``mlflow``, and only inside functions, so ``import qpipe``
works without it. The ledger stays the truth: the export reads the ledger, writes to MLflow and
appends an ``exported`` record per run, so exporting again skips what was exported (to the same
tracking URI). MLflow is read only where writing needs it (finding or creating the experiment).

Per finished run, in the experiment ``qpipe``:

- params: the resolved config flattened to ``section.key`` (non-string values as JSON);
- metrics: every finite number of the run's ``metrics`` record;
- metric history ``equity``: the equity curve, step = day index (from ``equity.arrow``);
- tags: ``qpipe.run_id``, ``qpipe.config_digest``, ``qpipe.code_version``, ``qpipe.git_commit``
  (also as ``mlflow.source.git.commit``), ``qpipe.git_dirty``, ``qpipe.engine``, ``qpipe.host``;
- artifacts: ``report.html`` and ``equity.arrow`` from the run's ``artifact`` records, when the
  files exist and still have their recorded digest (a mismatch is named in ``qpipe.skipped``).

The default tracking URI is an embedded SQLite store beside the ledger (``sqlite:///<ledger
dir>/mlflow.db``; MLflow 3 refuses a plain ``./mlruns`` file store unless
``MLFLOW_ALLOW_FILE_STORE=true``), with artifacts in ``<ledger dir>/mlartifacts``; ``mlflow ui
--backend-store-uri sqlite:///runs/mlflow.db`` shows the runs with no server to set up.

While an export runs (and only then; the environment is restored after), MLflow's telemetry is
off (``MLFLOW_DISABLE_TELEMETRY=true`` unless the environment says otherwise) and its HTTP
requests get one attempt of at most ``timeout`` seconds (default 30). The store is checked
first (:mod:`qpipe.export._reach`), so an unreachable, silent or invalid tracking URI is a
one-line :class:`~qpipe.errors.ExportError` within about twice the timeout, not minutes of
retries.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from qpipe._fs import refuse_symlink
from qpipe.errors import ExportError, OptionalDependencyError, QpipeError
from qpipe.export._reach import (
    DEFAULT_TIMEOUT,
    check_reachable,
    check_timeout,
    http_env,
    scoped_env,
)
from qpipe.ledger import Ledger, RunRecorder, artifact_path, canonical_json, records
from qpipe.ledger.payloads import Exported

__all__ = [
    "DEFAULT_TIMEOUT",
    "EXPERIMENT",
    "default_tracking_uri",
    "export_runs",
    "flatten_config",
]

EXPERIMENT = "qpipe"
ARTIFACTS = ("report.html", "equity.arrow")
_BATCH = 1000  # MLflow accepts at most 1000 metrics and 100 params/tags per log_batch
_PARAM_BATCH = 100
_PARAM_MAX = 6000  # MLflow's limit on a param value's length


def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        msg = "the MLflow export needs mlflow: pip install 'qpipe[mlflow]'"
        raise OptionalDependencyError(msg) from None
    major = int(str(mlflow.__version__).split(".")[0])
    if major < 3:
        msg = (
            f"mlflow {mlflow.__version__} is installed but qpipe needs mlflow 3.x "
            f"(pip install 'qpipe[mlflow]' with pyarrow<26)"
        )
        raise OptionalDependencyError(msg)
    return mlflow


def default_tracking_uri(ledger_path: str | Path) -> str:
    """``sqlite:///<absolute ledger folder>/mlflow.db``."""
    return f"sqlite:///{Path(ledger_path).absolute().parent / 'mlflow.db'}"


def _refuse_links_beside(ledger_path: Path, uri: str) -> None:
    """What the export writes beside the ledger (the default database, the artifacts folder)
    is never reached through a link someone else planted in the runs folder."""
    folder = ledger_path.absolute().parent
    if uri == default_tracking_uri(ledger_path):
        refuse_symlink(folder / "mlflow.db", "mlflow database")
    refuse_symlink(folder / "mlartifacts", "mlflow artifacts folder")


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"backtest": {"cost_bps": 10.0}}`` → ``{"backtest.cost_bps": "10.0"}``."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_config(value, f"{name}."))
        else:
            text = value if isinstance(value, str) else canonical_json(value)
            out[name] = text[:_PARAM_MAX]
    return out


def _ms(ts: str) -> int:
    return int(datetime.fromisoformat(ts).timestamp() * 1000)


def _chunks(items: list[Any], n: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _experiment_id(client: Any, mlflow: Any, ledger_path: Path) -> str:
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        location = (ledger_path.absolute().parent / "mlartifacts").as_uri()
        try:
            return str(client.create_experiment(EXPERIMENT, artifact_location=location))
        except mlflow.exceptions.MlflowException:  # created meanwhile by another export
            exp = client.get_experiment_by_name(EXPERIMENT)
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    return str(exp.experiment_id)


def _artifacts(ledger_path: Path, recs: list[dict[str, Any]]) -> tuple[dict[str, Path], list[str]]:
    """The run's exportable artifacts that still have their recorded digest, and the others."""
    artifacts: dict[str, Path] = {}
    skipped: list[str] = []
    for rec in recs:
        data = rec["data"]
        if rec["kind"] != "artifact" or data.get("name") not in ARTIFACTS:
            continue
        path = artifact_path(ledger_path, str(data.get("path", "")))
        if not path.is_file():
            skipped.append(f"{data['name']} (missing)")
        elif _sha256(path) != data.get("digest"):
            skipped.append(f"{data['name']} (digest changed)")
        else:
            artifacts[data["name"]] = path
    return artifacts, skipped


def _tags(run_id: str, info: dict[str, Any], skipped: list[str]) -> dict[str, str]:
    tags = {
        "qpipe.run_id": run_id,
        "qpipe.config_digest": info.get("config_digest"),
        "qpipe.code_version": info.get("code_version"),
        "qpipe.git_commit": info.get("git_commit"),
        "mlflow.source.git.commit": info.get("git_commit"),
        "qpipe.git_dirty": info.get("git_dirty"),
        "qpipe.engine": info.get("engine"),
        "qpipe.host": info.get("host"),
    }
    if skipped:
        tags["qpipe.skipped"] = ", ".join(skipped)
    return {k: str(v) for k, v in tags.items() if v is not None}


def _metrics(recs: list[dict[str, Any]], artifacts: dict[str, Path], end_ms: int) -> list[Any]:
    """The finite numbers of the last ``metrics`` record, and the equity curve as a history."""
    from mlflow.entities import Metric

    metrics: dict[str, Any] = {}
    for rec in recs:
        if rec["kind"] == "metrics":
            metrics = rec["data"]  # the last one wins
    values = [
        Metric(k, float(v), end_ms, 0)
        for k, v in sorted(metrics.items())
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    ]
    if "equity.arrow" in artifacts:
        from qpipe.store import open_ipc

        equity = open_ipc(artifacts["equity.arrow"])["equity"].to_list()
        values += [
            Metric("equity", float(v), end_ms, step)
            for step, v in enumerate(equity)
            if v is not None and math.isfinite(v)
        ]
    return values


def _export_one(
    client: Any, mlflow: Any, experiment_id: str, ledger_path: Path, recs: list[dict[str, Any]]
) -> str:
    """Write one run; return its MLflow run id."""
    from mlflow.entities import Param

    run_id = recs[0]["run_id"]
    started = next(r for r in recs if r["kind"] == "run_started")
    finished = next(r for r in recs if r["kind"] == "run_finished")
    info = started["data"]
    end_ms = _ms(finished["ts"])
    artifacts, skipped = _artifacts(ledger_path, recs)
    run = client.create_run(
        experiment_id,
        start_time=_ms(started["ts"]),
        run_name=run_id,
        tags=_tags(run_id, info, skipped),
    )
    mlflow_run_id = run.info.run_id
    try:
        params = [Param(k, v) for k, v in flatten_config(info.get("config") or {}).items()]
        for batch in _chunks(params, _PARAM_BATCH):
            client.log_batch(mlflow_run_id, params=batch)
        for batch in _chunks(_metrics(recs, artifacts, end_ms), _BATCH):
            client.log_batch(mlflow_run_id, metrics=batch)
        for name in ARTIFACTS:
            if name in artifacts:
                client.log_artifact(mlflow_run_id, str(artifacts[name]))
        client.set_terminated(mlflow_run_id, status="FINISHED", end_time=end_ms)
    except BaseException:
        # a half-written run would be exported again next time: remove it rather than leave a twin
        with contextlib.suppress(Exception):
            client.delete_run(mlflow_run_id)
        raise
    return str(mlflow_run_id)


def _short(exc: BaseException) -> str:
    """The first line of an MLflow error, without urllib3's retry story."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    text = text.split(" (Caused by ", 1)[0]
    return text if len(text) <= 240 else text[:239] + "…"


def _timed_out(exc: BaseException | None, timeout_type: type) -> bool:
    """Whether a request timed out somewhere in the chain (with no retries, urllib3 reports a
    read timeout as a connection error whose text names it)."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, timeout_type) or "timed out" in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


@contextlib.contextmanager
def _as_export_error(mlflow: Any, uri: str, timeout: float) -> Iterator[None]:
    """MLflow's failures (store down, refused, invalid) as one-line :class:`ExportError`s."""
    import requests

    try:
        yield
    except QpipeError:
        raise
    except (mlflow.exceptions.MlflowException, requests.RequestException, OSError) as exc:
        if _timed_out(exc, requests.Timeout):
            reason = f"no answer within {timeout:g} s (`--timeout`)"
        else:
            reason = _short(exc)
        msg = f"mlflow export to `{uri}` failed: {reason}"
        raise ExportError(msg) from None
    except Exception as exc:
        if type(exc).__module__.split(".")[0] not in ("mlflow", "sqlalchemy", "alembic"):
            raise  # not the tracking store's failure: a bug, reported as one
        msg = f"mlflow export to `{uri}` failed: {type(exc).__name__}: {_short(exc)}"
        raise ExportError(msg) from None


def export_runs(
    ledger_path: str | Path,
    tracking_uri: str | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[str]:
    """Export every finished, not yet exported run of the ledger to MLflow.

    Parameters
    ----------
    ledger_path
        The ledger (``audit.jsonl``).
    tracking_uri
        Where to write; default :func:`default_tracking_uri`. A run counts as exported when the
        ledger has an ``exported`` record for it with this same URI.
    timeout
        Seconds to wait for the tracking store: the reachability check and each request (no
        retries; exporting again is safe). An unreachable or silent store fails within about
        twice this with an :class:`~qpipe.errors.ExportError`.

    Returns
    -------
    list[str]
        The qpipe run ids exported now, in ledger order.
    """
    timeout = check_timeout(timeout)
    path = Path(ledger_path)
    all_records = records(path)  # a missing ledger is a LedgerError before mlflow is imported
    uri = tracking_uri or default_tracking_uri(path)
    by_run: dict[str, list[dict[str, Any]]] = {}
    done: set[str] = set()
    for rec in all_records:
        data = rec["data"]
        if rec["kind"] == "exported":
            if data.get("target") == "mlflow" and data.get("tracking_uri") == uri:
                done.add(str(data.get("exported_run_id")))
            continue
        by_run.setdefault(rec["run_id"], []).append(rec)
    todo = [
        rid
        for rid, recs in by_run.items()
        if rid not in done
        and any(r["kind"] == "run_started" for r in recs)
        and any(r["kind"] == "run_finished" for r in recs)
        and not any(r["kind"] == "run_failed" for r in recs)
    ]
    if not todo:
        return []

    _refuse_links_beside(path, uri)
    check_reachable(uri, timeout)
    # MLflow's settings only for this call, restored after: the process keeps its own
    with scoped_env(http_env(timeout), {"MLFLOW_DISABLE_TELEMETRY": "true"}):
        mlflow = _mlflow()
        for name in ("alembic", "mlflow.store.db.utils"):  # database set-up chatter on stderr
            logging.getLogger(name).setLevel(logging.WARNING)
        with _as_export_error(mlflow, uri, timeout):
            return _export_todo(mlflow, uri, path, todo, by_run)


def _export_todo(
    mlflow: Any, uri: str, path: Path, todo: list[str], by_run: dict[str, list[dict[str, Any]]]
) -> list[str]:
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment_id = _experiment_id(client, mlflow, path)
    ledger = Ledger(path)
    exported = []
    for rid in todo:
        mlflow_run_id = _export_one(client, mlflow, experiment_id, path, by_run[rid])
        # record it at once: a crash later in the loop must not export this run twice
        RunRecorder(ledger, rid).exported(
            Exported(
                target="mlflow",
                tracking_uri=uri,
                mlflow_run_id=mlflow_run_id,
                exported_run_id=rid,
            )
        )
        exported.append(rid)
    RunRecorder(ledger, exported[-1]).checkpoint()  # sign the `exported` records
    return exported
