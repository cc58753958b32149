"""The MLflow view: a real embedded SQLite store, read back with MLflow's own client."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from qpipe.errors import LedgerError, OptionalDependencyError
from qpipe.ledger import Ledger, canonical_json, records, verify
from qpipe.store import write_ipc_atomic

CFG = {
    "backtest": {"cost_bps": 10.0, "execution": "close"},
    "strategy": {"kind": "momentum", "lookback": 252},
    "allocation": {"long_only": True},
}
EQUITY = [1.0, 1.01, 0.99, 1.02, 1.05]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_run(led: Ledger, run_id: str, out: Path, *, end: str = "run_finished") -> None:
    """A run's records as the run code writes them, with real equity.arrow and report.html."""
    led._append(
        run_id,
        "run_started",
        {
            "config": CFG,
            "config_digest": hashlib.sha256(canonical_json(CFG).encode()).hexdigest(),
            "code_version": "0.1.0",
            "git_commit": "abc123",
            "git_dirty": True,
            "packages": {"polars": "2.1.0"},
            "engine": "local",
            "host": "box",
            "argv": ["runner.py"],
        },
    )
    if end == "running":
        return
    if end == "run_failed":
        led._append(run_id, "run_failed", {"error": "StageError", "message": "boom"})
        led._checkpoint(run_id)  # every run ends signed
        return
    led._append(run_id, "metrics", {"sharpe": 1.5, "cagr": 0.1, "beta": None, "n_rebalances": 3})
    run_dir = out / run_id
    run_dir.mkdir(parents=True)
    frame = pl.DataFrame(
        {"date": pl.date_range(pl.date(2024, 1, 1), pl.date(2024, 1, 5), eager=True)}
    )
    frame = frame.with_columns(equity=pl.Series(EQUITY))
    write_ipc_atomic(frame, run_dir / "equity.arrow")
    (run_dir / "report.html").write_text(f"<html>{run_id}</html>")
    for name in ("equity.arrow", "report.html"):
        p = run_dir / name
        led._append(
            run_id,
            "artifact",
            {"name": name, "path": str(p), "digest": _digest(p), "bytes": p.stat().st_size},
        )
    led._append(run_id, "run_finished", {"seconds": 1.0, "out_dir": str(run_dir)})
    led._checkpoint(run_id)


def test_the_core_works_without_mlflow_and_export_says_how_to_install(tmp_path, monkeypatch):
    code = (
        "import sys, qpipe, qpipe.ledger, qpipe.export.mlflow, qpipe.store.gc; "
        "assert 'mlflow' not in sys.modules, 'mlflow imported eagerly'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

    from qpipe.export.mlflow import export_runs

    led = Ledger(tmp_path / "audit.jsonl")
    write_run(led, "r1", tmp_path)
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now raises ImportError
    with pytest.raises(OptionalDependencyError, match=r"pip install 'qpipe\[mlflow\]'"):
        export_runs(led.path)
    with pytest.raises(LedgerError, match="does not exist"):
        export_runs(tmp_path / "missing.jsonl")


@pytest.mark.mlflow
@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")
def test_export_is_readable_with_mlflows_client_and_idempotent(tmp_path, capsys):
    mlflow = pytest.importorskip("mlflow")
    from qpipe.cli import main
    from qpipe.export.mlflow import export_runs

    led = Ledger(tmp_path / "runs" / "audit.jsonl")
    out = tmp_path / "runs"
    write_run(led, "run-a", out)
    write_run(led, "run-b", out)
    write_run(led, "run-failed", out, end="run_failed")
    write_run(led, "run-going", out, end="running")
    (out / "run-b" / "report.html").write_text("edited after the run")

    assert export_runs(led.path) == ["run-a", "run-b"]
    uri = f"sqlite:///{out / 'mlflow.db'}"
    assert (out / "mlflow.db").is_file()

    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("qpipe")
    assert exp is not None and exp.artifact_location == (out / "mlartifacts").as_uri()
    found = client.search_runs([exp.experiment_id])
    by_id = {r.data.tags["qpipe.run_id"]: r for r in found}
    assert sorted(by_id) == ["run-a", "run-b"]

    a = by_id["run-a"]
    assert a.info.status == "FINISHED" and a.info.run_name == "run-a"
    assert a.data.params == {
        "backtest.cost_bps": "10.0",
        "backtest.execution": "close",
        "strategy.kind": "momentum",
        "strategy.lookback": "252",
        "allocation.long_only": "true",
    }
    assert a.data.metrics["sharpe"] == 1.5 and a.data.metrics["n_rebalances"] == 3
    assert "beta" not in a.data.metrics  # null metrics are not invented
    history = client.get_metric_history(a.info.run_id, "equity")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == list(
        enumerate(EQUITY)
    )
    tags = a.data.tags
    assert tags["qpipe.config_digest"] == records(led.path)[0]["data"]["config_digest"]
    assert (tags["qpipe.code_version"], tags["qpipe.git_commit"]) == ("0.1.0", "abc123")
    assert tags["qpipe.git_dirty"] == "True" and "qpipe.skipped" not in tags
    assert {f.path for f in client.list_artifacts(a.info.run_id)} == {"equity.arrow", "report.html"}
    local = client.download_artifacts(a.info.run_id, "report.html", str(tmp_path / "dl"))
    assert Path(local).read_text() == "<html>run-a</html>"

    b = by_id["run-b"]  # its report changed after the run: not exported as if it were the run's
    assert {f.path for f in client.list_artifacts(b.info.run_id)} == {"equity.arrow"}
    assert b.data.tags["qpipe.skipped"] == "report.html (digest changed)"

    exported = [r for r in records(led.path) if r["kind"] == "exported"]
    assert [(r["run_id"], r["data"]["exported_run_id"]) for r in exported] == [
        ("run-a", "run-a"),
        ("run-b", "run-b"),
    ]
    assert exported[0]["data"] == {
        "target": "mlflow",
        "tracking_uri": uri,
        "mlflow_run_id": a.info.run_id,
        "exported_run_id": "run-a",
    }
    assert verify(led.path, check_artifacts=False).ok

    # again: nothing new, nothing duplicated
    assert export_runs(led.path) == []
    assert main(["mlflow", "export", "--ledger", str(led.path)]) == 0
    assert capsys.readouterr().out.startswith("nothing to export")
    assert len(client.search_runs([exp.experiment_id])) == 2

    # a new finished run (the unfinished one finishing too): only those are exported
    write_run(led, "run-c", out)
    led._append("run-going", "run_finished", {"seconds": 2.0, "out_dir": str(out)})
    assert main(["mlflow", "export", "--ledger", str(led.path), "--tracking-uri", uri]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"exported 2 runs to {uri} (experiment `qpipe`)",
        "  run-going",
        "  run-c",
    ]
    names = sorted(r.data.tags["qpipe.run_id"] for r in client.search_runs([exp.experiment_id]))
    assert names == ["run-a", "run-b", "run-c", "run-going"]
