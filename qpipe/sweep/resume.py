"""The sweep folder, and how an interrupted sweep is found and picked up again.

``<out>/sweeps/<sweep_id>/`` holds ``sweep.json`` (the manifest: grid, digests, state),
``config.toml`` (the base config with the grid as its ``[sweep]`` table: re-runnable as is),
``chunks/chunk-NNNNNN.arrow`` (one file per finished chunk, each written atomically),
``summary.arrow`` and ``sweep.html``.

A sweep is identified for resuming by its *key*: the digest of its grid, base config, price
data and evaluator. ``--resume SWEEP_ID`` checks that the key matches; without it, an
unfinished sweep with the same key in the same runs folder is resumed automatically. The
trials already done are those in the chunk files: a chunk file is complete or absent (atomic
rename), and one whose ``sweep_chunk`` record was lost in the crash is recorded on resume.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from qpipe._canonical import canonical_digest
from qpipe._fs import file_digest, safe_subdir, write_bytes_atomic
from qpipe.config import ThreadSafeConfig
from qpipe.errors import ConfigError, PathSafetyError
from qpipe.store import open_ipc
from qpipe.sweep.record import SweepRecorder, recorded_chunks

__all__ = [
    "RESULT_SECTIONS",
    "SweepFolder",
    "done_trials",
    "find_unfinished",
    "results_config_digest",
    "sweep_key",
]

MANIFEST = "sweep.json"


# what decides a trial's row; engine, paths and the sweep table do not
RESULT_SECTIONS = ("data", "strategy", "allocation", "backtest", "validation")


def results_config_digest(cfg: ThreadSafeConfig) -> str:
    """Digest of the config sections that decide the results (a sweep's ``config_digest``):
    the same sweep on another engine or into another folder has the same one."""
    data = cfg.to_dict()
    return canonical_digest({s: data[s] for s in RESULT_SECTIONS})


def sweep_key(grid_digest: str, config_digest: str, data_digest: str, evaluator: str) -> str:
    """What makes two sweeps the same work: grid, base config, prices and evaluator."""
    body = {"grid": grid_digest, "config": config_digest, "data": data_digest, "eval": evaluator}
    return canonical_digest(body)


@dataclass(frozen=True)
class SweepFolder:
    """One sweep's folder under ``<out>/sweeps/``."""

    path: Path

    @classmethod
    def under(cls, out: Path, sweep_id: str) -> SweepFolder:
        root = (out / "sweeps").absolute()
        path = root / sweep_id
        if path.parent != root or sweep_id in ("", ".", "..") or "/" in sweep_id:
            msg = f"sweep id `{sweep_id}` would escape the sweeps folder `{root}`"
            raise PathSafetyError(msg)
        return cls(path)

    @property
    def sweep_id(self) -> str:
        return self.path.name

    @property
    def chunk_dir(self) -> Path:
        return self.path / "chunks"

    def chunk_files(self) -> list[Path]:
        if not self.chunk_dir.is_dir():
            return []
        return sorted(self.chunk_dir.glob("chunk-*.arrow"))

    def manifest(self) -> dict[str, Any]:
        try:
            data = json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            msg = f"sweep `{self.sweep_id}` has no readable `{self.path / MANIFEST}`"
            raise ConfigError(msg) from None
        if not isinstance(data, dict):
            msg = f"`{self.path / MANIFEST}` is not a sweep manifest"
            raise ConfigError(msg)
        return data

    def write_manifest(self, data: dict[str, Any]) -> None:
        text = json.dumps(data, sort_keys=True, indent=2) + "\n"
        write_bytes_atomic(self.path / MANIFEST, text.encode("utf-8"))

    def set_state(self, state: str, **extra: Any) -> None:
        self.write_manifest({**self.manifest(), "state": state, **extra})

    def create(self, manifest: dict[str, Any], config_toml: str) -> None:
        # never through a link: `<out>/sweeps`, the sweep's folder and `chunks/` are real folders
        sweeps = safe_subdir(self.path.parent.parent, self.path.parent.name, "sweeps folder")
        safe_subdir(safe_subdir(sweeps, self.sweep_id, "sweep folder"), "chunks", "sweep folder")
        write_bytes_atomic(self.path / "config.toml", config_toml.encode("utf-8"))
        self.write_manifest(manifest)


def find_unfinished(out: Path, key: str) -> SweepFolder | None:
    """The newest sweep under ``out`` with this key that did not finish (None if none)."""
    root = out / "sweeps"
    if not root.is_dir() or root.is_symlink():  # a linked sweeps folder is refused on create
        return None
    for path in sorted(root.iterdir(), reverse=True):  # ids start with a UTC timestamp
        folder = SweepFolder(path)
        try:
            manifest = folder.manifest()
        except ConfigError:
            continue
        if manifest.get("key") == key and manifest.get("state") != "finished":
            return folder
    return None


def done_trials(
    folder: SweepFolder, ledger_path: Path, recorder: SweepRecorder
) -> tuple[set[int], int]:
    """Trials with a result in a chunk file, and the next free chunk index.

    A chunk file without its ``sweep_chunk`` record (the process died between writing the
    file and recording it) is recorded now, marked ``recovered``, so every trial tried stays
    counted exactly once in the ledger.
    """
    recorded = recorded_chunks(ledger_path, folder.sweep_id)
    done: set[int] = set()
    last = max(recorded, default=-1)
    for path in folder.chunk_files():
        index = int(path.stem.split("-")[1])
        last = max(last, index)
        frame = open_ipc(path)
        trials = frame["trial"].to_list()
        done.update(trials)
        if index not in recorded:
            ok = int((frame["status"] == "ok").sum())
            recorder.chunk(
                index=index,
                trials=trials,
                n_ok=ok,
                n_failed=frame.height - ok,
                digest=file_digest(path),
                path=str(path),
                seconds=float(frame["seconds"].sum()),
                recovered=True,
            )
    return done, last + 1


def count_status(frame: pl.DataFrame) -> tuple[int, int]:
    ok = int((frame["status"] == "ok").sum())
    return ok, frame.height - ok
