"""Issue 15 defect 9: an unreachable, silent or invalid tracking URI fails fast, in one line.

Before: 250 s of MLflow's HTTP retries, then ``internal error MlflowException`` (exit 3).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from qpipe.errors import ExportError
from qpipe.ledger import Ledger, verify
from tests.conftest import REPO
from tests.integration.test_mlflow_export import write_run

MLFLOW_VARS = ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES")


@pytest.fixture
def ledger(tmp_path) -> Ledger:
    pytest.importorskip("mlflow")
    led = Ledger(tmp_path / "runs" / "audit.jsonl")
    write_run(led, "r1", tmp_path / "runs")
    return led


@pytest.fixture
def silent_server():
    """Accepts connections (kernel backlog) and never answers a request."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_a_silent_server_fails_within_the_timeout_and_the_ledger_is_untouched(
    ledger, silent_server
):
    from qpipe.export.mlflow import export_runs

    before = ledger.path.read_bytes()
    env_before = {k: os.environ.get(k) for k in MLFLOW_VARS}
    start = time.perf_counter()
    with pytest.raises(ExportError, match=r"failed: no answer within 1 s \(`--timeout`\)$"):
        export_runs(ledger.path, silent_server, timeout=1)
    assert time.perf_counter() - start < 30  # MLflow's own defaults: minutes
    assert ledger.path.read_bytes() == before  # nothing recorded as exported
    assert verify(ledger.path).ok
    assert {k: os.environ.get(k) for k in MLFLOW_VARS} == env_before


def test_the_cli_says_one_line_and_exits_1_for_a_closed_port(ledger, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "qpipe",
            "mlflow",
            "export",
            "--ledger",
            str(ledger.path),
            "--tracking-uri",
            uri,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qpipe: error: cannot reach the mlflow")
    assert "Connection refused" in lines[0]
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("foo://bar", "failed: .*unsupported URI 'foo://bar'"),
        ("file:///{tmp}/mlr", "failed: The filesystem tracking backend"),
        ("sqlite:///{tmp}/runs/audit.jsonl", "is not an SQLite database"),
    ],
    ids=["unknown-scheme", "file-store", "the-ledger-itself"],
)
def test_invalid_tracking_uris_are_export_errors(ledger, tmp_path, uri, message):
    from qpipe.export.mlflow import export_runs

    before = ledger.path.read_bytes()
    with pytest.raises(ExportError, match=message):
        export_runs(ledger.path, uri.format(tmp=tmp_path), timeout=5)
    assert ledger.path.read_bytes() == before


@pytest.mark.parametrize("name", ["mlflow.db", "mlartifacts"])
def test_a_planted_link_beside_the_ledger_is_refused_before_mlflow_is_touched(
    ledger, tmp_path, name
):
    from qpipe.errors import PathSafetyError
    from qpipe.export.mlflow import export_runs

    precious = tmp_path / "precious"
    precious.write_text("mine")
    (ledger.path.parent / name).symlink_to(precious)
    with pytest.raises(PathSafetyError, match=f"`{ledger.path.parent / name}` is a symlink"):
        export_runs(ledger.path)
    assert precious.read_text() == "mine"
