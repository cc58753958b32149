"""Where a run reads and writes: one resolution of paths for runs, sweeps and commands."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from qpipe.config import ThreadSafeConfig
from qpipe.errors import PathSafetyError, StoreError

__all__ = ["RunPaths", "create_run_dir", "new_run_id", "resolve_paths"]


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


def create_run_dir(paths: RunPaths) -> tuple[str, Path]:
    """A fresh run id and its (new, empty) folder; ids never collide."""
    try:
        paths.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"cannot create the runs folder `{paths.out}`: {exc.strerror or exc}"
        raise StoreError(msg) from None
    while True:
        run_id = new_run_id()
        run_dir = paths.run_dir(run_id)
        try:
            run_dir.mkdir(parents=False)
            return run_id, run_dir
        except FileExistsError:
            continue
        except OSError as exc:  # read-only or full: before the run starts, so not recorded
            msg = f"cannot create the run folder `{run_dir}`: {exc.strerror or exc}"
            raise StoreError(msg) from None
