"""The export's bounded wait: reachability checks, and MLflow's settings scoped to the call."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from qpipe.errors import ExportError
from qpipe.export._reach import check_reachable, check_timeout, http_env, scoped_env
from tests.conftest import REPO


@pytest.fixture
def silent_server():
    """A TCP port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed on exit: nothing listens there


def test_scoped_env_sets_then_restores_exactly(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "77")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")
    with scoped_env(http_env(2.5), {"MLFLOW_DISABLE_TELEMETRY": "true"}):
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "3"
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
        assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "false"  # the user's choice stands
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "77"
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
    with pytest.raises(RuntimeError), scoped_env({"MLFLOW_HTTP_REQUEST_TIMEOUT": "1"}):
        raise RuntimeError
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "77"  # restored on errors too


def test_importing_the_export_sets_no_environment():
    code = (
        "import os, qpipe; before = dict(os.environ); import qpipe.export.mlflow; "
        "assert dict(os.environ) == before, set(os.environ) ^ set(before)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), 3601])
def test_a_timeout_out_of_range_is_refused(bad):
    with pytest.raises(ExportError, match="timeout must be between 0 and 3600 seconds"):
        check_timeout(bad)


def test_a_closed_port_fails_at_once(closed_port):
    start = time.perf_counter()
    with pytest.raises(ExportError, match=r"cannot reach .*: Connection refused"):
        check_reachable(f"http://127.0.0.1:{closed_port}", 5.0)
    assert time.perf_counter() - start < 5.0


def test_a_listening_server_passes_the_connection_check(silent_server):
    check_reachable(silent_server, 2.0)  # that it never answers is for the request timeout


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("https://[bad", "is not a valid URI"),
        ("http://", "names no host"),
        ("postgresql://", "names no host"),
    ],
)
def test_invalid_uris_are_one_line_errors(uri, message):
    with pytest.raises(ExportError, match=message):
        check_reachable(uri, 1.0)


def test_sqlite_uris_must_name_an_sqlite_file_or_a_writable_place(tmp_path):
    ledger = tmp_path / "audit.jsonl"
    ledger.write_text('{"seq": 1}\n')
    with pytest.raises(ExportError, match="is not an SQLite database"):
        check_reachable(f"sqlite:///{ledger}", 1.0)
    assert ledger.read_text() == '{"seq": 1}\n'
    with pytest.raises(ExportError, match="is not a file"):
        check_reachable(f"sqlite:///{tmp_path}", 1.0)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    with pytest.raises(ExportError, match="is not a writable folder"):
        check_reachable(f"sqlite:///{blocker}/sub/mlflow.db", 1.0)
    real = tmp_path / "real.db"
    sqlite3.connect(real).execute("create table t (x)").connection.close()
    for ok in (f"sqlite:///{real}", f"sqlite:///{tmp_path}/new/mlflow.db", "sqlite://"):
        check_reachable(ok, 1.0)
