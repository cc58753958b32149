"""What a walk-forward and a CPCV share: an id, paths, the prices, the recorder.

:class:`Study` resolves the paths like a run (``--out``, ``--ledger``, the store), ingests the
prices (the built-in universe or a file), records ``research_started`` and, through
:meth:`Study.failures_recorded`, ``research_failed`` with the one-line error of any
:class:`~qpipe.errors.QpipeError`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from qpipe._canonical import jsonable
from qpipe._fs import write_bytes_atomic
from qpipe.config import ThreadSafeConfig
from qpipe.errors import ConfigError, QpipeError
from qpipe.ledger import Ledger, RunRecorder
from qpipe.ledger import payloads as p
from qpipe.store import ArrowStore, DatasetRef

__all__ = ["OnEvent", "Study", "write_json"]

OnEvent = Callable[[str, dict[str, Any]], None]


def _prices(cfg: ThreadSafeConfig, store: ArrowStore) -> DatasetRef:
    """The prices' stored ref: the built-in universe or a file (as a run reads them)."""
    from qpipe.runs.ingest import stored_prices

    if cfg.data.weights:
        msg = "out-of-sample research runs the strategy on the prices; `data.weights` must be empty"
        raise ConfigError(msg)
    return stored_prices(cfg, store).ref


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class Study:
    """One study's id, paths, store and recorder; records its start and any failure."""

    def __init__(
        self, cfg: ThreadSafeConfig, out: Any, ledger: Any, on_event: OnEvent | None
    ) -> None:
        from qpipe.runs import new_run_id, resolve_paths

        self.paths = resolve_paths(cfg, out, ledger)
        self.paths.out.mkdir(parents=True, exist_ok=True)
        self.id = new_run_id()
        self.ledger = Ledger(self.paths.ledger)
        self.recorder = RunRecorder(self.ledger, self.id)
        self.emit: OnEvent = on_event or (lambda kind, data: None)
        self.base = cfg.replace(sweep={})
        self.store: ArrowStore | None = None

    def start(
        self, method: str, params: dict[str, Any], grid: Mapping[str, Sequence[Any]], **more: Any
    ) -> DatasetRef:
        """Ingest the prices and record ``research_started``; return the prices' ref."""
        from qpipe.sweep.resume import results_config_digest

        self.store = ArrowStore(self.paths.store)
        prices = _prices(self.base, self.store)
        started = p.ResearchStarted(
            method=method,
            params=params,
            grid={k: list(v) for k, v in grid.items()},
            metric=more.get("metric", "sharpe"),
            config_digest=self.base.digest,
            data_digest=prices.digest,
            argv=list(more.get("argv") or []),
            results_config_digest=results_config_digest(self.base),
        )
        self.recorder.research_started(started)
        self.emit("research_started", {"research_id": self.id, "method": method})
        return prices

    @contextlib.contextmanager
    def failures_recorded(self) -> Iterator[None]:
        try:
            yield
        except QpipeError as exc:
            failed = p.ResearchFailed(error=type(exc).__name__, message=_first_line(exc))
            self.recorder.research_failed(failed)
            raise


def write_json(path: Path, info: Mapping[str, Any]) -> str:
    text = json.dumps(jsonable(info), sort_keys=True, indent=2) + "\n"
    return write_bytes_atomic(path, text.encode())
