"""Bounded waiting for a tracking store: check it can be reached before MLflow tries.

MLflow's own defaults wait a long time for a store that is down: HTTP requests are retried 7
times with exponential back-off (about 250 s), and a SQL store that cannot be opened is retried
for much longer. The export checks the store first, within ``timeout`` seconds:

- ``http``/``https`` and SQL servers (``postgresql``, ``mysql``, ``mssql``): a TCP connection to
  the host and port, made in a daemon thread so a slow name lookup cannot outlast the timeout;
- ``sqlite``: the database file is an SQLite file (or empty, or missing in a writable folder);

and MLflow's HTTP settings (``MLFLOW_HTTP_REQUEST_TIMEOUT``, ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``)
are set only while the export runs, then restored (see :func:`scoped_env`).
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from qpipe.errors import ExportError

__all__ = ["DEFAULT_TIMEOUT", "check_reachable", "check_timeout", "http_env", "scoped_env"]

DEFAULT_TIMEOUT = 30.0  # seconds; `mlflow export --timeout`
_DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "mysql": 3306, "mssql": 1433}
_SQLITE_HEADER = b"SQLite format 3\x00"


def check_timeout(timeout: float) -> float:
    """``timeout`` if it is a finite number of seconds in (0, 3600]; else :class:`ExportError`."""
    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and 0 < timeout <= 3600):
        msg = f"mlflow export timeout must be between 0 and 3600 seconds, got {timeout!r}"
        raise ExportError(msg)
    return float(timeout)


def http_env(timeout: float) -> dict[str, str]:
    """MLflow's HTTP settings for one bounded export: one attempt, ``timeout`` s per request."""
    return {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, math.ceil(timeout))),  # MLflow reads an int
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",  # the export is idempotent: run it again
    }


@contextlib.contextmanager
def scoped_env(values: dict[str, str], defaults: dict[str, str] | None = None) -> Iterator[None]:
    """Set ``values`` (and ``defaults`` where unset) in ``os.environ``; restore on exit."""
    names = [*values, *(defaults or {})]
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(values)
    for name, value in (defaults or {}).items():
        os.environ.setdefault(name, value)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def _scheme(uri: str) -> str:
    return urlsplit(uri).scheme.split("+", 1)[0].lower()  # postgresql+psycopg2 -> postgresql


def _connect(host: str, port: int, timeout: float) -> str | None:
    """None if a TCP connection to ``host:port`` opens within ``timeout`` s, else the reason."""
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome.append(None)
        except OSError as exc:
            outcome.append(exc.strerror or str(exc) or type(exc).__name__)

    worker = threading.Thread(target=attempt, name="qpipe-mlflow-reach", daemon=True)
    worker.start()
    worker.join(timeout)
    if not outcome:
        return f"no answer within {timeout:g} s"
    return outcome[0]


def _sqlite_problem(uri: str) -> str | None:
    path_text = uri.split(":///", 1)[1] if ":///" in uri else ""
    if not path_text or path_text.startswith(":memory:"):
        return None
    path = Path(path_text.split("?", 1)[0])
    if path.exists():
        if not path.is_file():
            return f"`{path}` is not a file"
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_HEADER))
        if head and head != _SQLITE_HEADER:
            return f"`{path}` is not an SQLite database"
        return None
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot create `{path}`: `{folder}` is not a writable folder"
    return None


def check_reachable(uri: str, timeout: float) -> None:
    """Raise a one-line :class:`ExportError` unless the store at ``uri`` looks usable.

    Only what can be checked without MLflow is checked; MLflow reports the rest.
    """
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        msg = f"mlflow tracking uri `{uri}` is not a valid URI: {exc}"
        raise ExportError(msg) from None
    scheme = _scheme(uri)
    if scheme == "sqlite":
        problem = _sqlite_problem(uri)
        if problem is not None:
            msg = f"mlflow tracking store `{uri}` cannot be used: {problem}"
            raise ExportError(msg)
    elif scheme in _DEFAULT_PORTS:
        if not parts.hostname:
            msg = f"mlflow tracking uri `{uri}` names no host"
            raise ExportError(msg)
        problem = _connect(parts.hostname, port or _DEFAULT_PORTS[scheme], timeout)
        if problem is not None:
            msg = (
                f"cannot reach the mlflow tracking store `{uri}`: {problem} "
                f"(check `--tracking-uri`; the export waits at most `--timeout` {timeout:g} s)"
            )
            raise ExportError(msg)
