"""Engines run pipelines: ``LocalEngine`` in-process, ``RayEngine`` (optional extra) on Ray."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qpipe.engines.base import Engine, EngineRun, StageRecord
from qpipe.engines.local import LocalEngine
from qpipe.errors import ConfigError

if TYPE_CHECKING:
    from qpipe.config import ThreadSafeConfig

__all__ = ["Engine", "EngineRun", "LocalEngine", "StageRecord", "make_engine"]


def make_engine(cfg: ThreadSafeConfig) -> Engine:
    """The engine ``[engine]`` asks for. Ray is imported only when chosen."""
    kind = cfg.engine.kind
    if kind == "local":
        return LocalEngine(threads=cfg.engine.threads or 2, processes=cfg.engine.num_cpus or None)
    if kind == "ray":
        from qpipe.engines.ray import RayEngine

        return RayEngine(
            address=cfg.engine.address or None,
            num_cpus=cfg.engine.num_cpus or None,
            connect_timeout=cfg.engine.connect_timeout,
        )
    msg = f"`engine.kind` must be local or ray, got {kind!r}"
    raise ConfigError(msg)
