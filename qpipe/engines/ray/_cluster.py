"""Reaching a Ray cluster: the import, loopback-only local starts, a fast probe of an address."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

from qpipe.errors import EngineError, OptionalDependencyError

__all__ = ["bounded_init", "import_ray", "loopback_only", "probe_address", "require_ray"]

# Ray >= 2.x reads this when it is imported: with clusters "disabled" every service advertises
# and listens on 127.0.0.1 instead of the host's network address (checked with `ss -ltnp`).
_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def import_ray(*, loopback: bool = False) -> Any:
    """Import ray, or raise :class:`OptionalDependencyError` with the install hint.

    With ``loopback=True`` (a test harness that starts clusters itself, e.g. with
    ``ray.cluster_utils.Cluster``) Ray is told, for the rest of the process, to bind its
    services to 127.0.0.1. :class:`RayEngine` does not use this: it scopes the same setting to
    the start of its own cluster (:func:`loopback_only`).
    """
    if loopback:
        os.environ.setdefault(_LOOPBACK_ENV, "0")
    ray = require_ray()
    if loopback and os.environ.get(_LOOPBACK_ENV) == "0":
        _set_cluster_mode(ray, enabled=False)
    return ray


def require_ray() -> Any:
    try:
        import ray
    except ImportError:
        msg = "the ray engine needs ray: pip install 'qpipe[ray]'"
        raise OptionalDependencyError(msg) from None
    return ray


def _set_cluster_mode(ray: Any, *, enabled: bool) -> bool | None:
    """Set Ray's cluster-mode constant (read when it is imported); return the old value."""
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    if constants is None or not hasattr(constants, "ENABLE_RAY_CLUSTER"):
        return None
    old = bool(constants.ENABLE_RAY_CLUSTER)
    constants.ENABLE_RAY_CLUSTER = enabled
    return old


@contextlib.contextmanager
def loopback_only(ray: Any) -> Iterator[None]:
    """While a local cluster starts: every Ray service binds to 127.0.0.1.

    Ray 2.60 binds the GCS, raylet and workers to the host's network address unless cluster
    mode is off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read by the services it spawns and,
    as a constant, by the driver; ``_node_ip_address`` alone does not do it: checked with
    ``ss -ltnp``). Both are set only for the duration of the start and restored afterwards,
    so nothing leaks into the rest of the process.
    """
    before = os.environ.get(_LOOPBACK_ENV)
    os.environ[_LOOPBACK_ENV] = "0"
    old = _set_cluster_mode(ray, enabled=False)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(_LOOPBACK_ENV, None)
        else:
            os.environ[_LOOPBACK_ENV] = before
        if old is not None:
            _set_cluster_mode(ray, enabled=old)


def probe_address(address: str, timeout: float) -> None:
    """Fail fast when nothing listens at a ``host:port`` (or ``ray://host:port``) address.

    ``ray.init`` retries an unreachable address for minutes; a TCP connect with a timeout
    answers in at most ``timeout`` seconds. ``auto`` and addresses without a port are left to
    Ray (they name a local cluster or a file).
    """
    text = address.removeprefix("ray://")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        msg = (
            f"cannot reach ray at `engine.address` `{address}` within {timeout:g}s ({why}); "
            f"start the cluster, fix the address, or leave it empty for a local cluster"
        )
        raise EngineError(msg) from None


def bounded_init(ray: Any, join: str | None, timeout: float, **kwargs: Any) -> None:
    """``ray.init`` that gives up after ``timeout`` seconds when joining the cluster ``join``.

    A port that accepts connections but is not a Ray GCS makes ``ray.init`` retry for
    minutes; the call runs in a thread and the engine stops waiting at the timeout (the
    thread is a daemon and dies with the process). A local start is not bounded: it only
    waits for this machine.
    """
    kwargs |= {"log_to_driver": False, "logging_level": logging.ERROR}
    if join is None:
        ray.init(**kwargs)
        return
    failure: list[BaseException] = []

    def init() -> None:
        try:
            ray.init(**kwargs)
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=init, name="qpipe-ray-init", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        msg = (
            f"ray at `engine.address` `{join}` did not answer within "
            f"{timeout:g}s (`engine.connect_timeout`); is it a ray cluster?"
        )
        raise EngineError(msg)
    if failure:
        raise failure[0]
