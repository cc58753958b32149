"""Who ran what: code version, commit, packages, host — the body of ``run_started``."""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path

from qpipe._versions import package_versions, qpipe_version
from qpipe.config import ThreadSafeConfig
from qpipe.ledger import payloads as p

__all__ = ["config_failure_started", "git_state", "run_started"]


def git_state() -> tuple[str | None, bool | None]:
    """The checkout's commit and whether tracked files differ from it (None outside git)."""
    root = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()

    try:
        return git("rev-parse", "HEAD"), bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None, None


def run_started(
    cfg: ThreadSafeConfig, engine: str, argv: Sequence[str] | None, run_dir: Path
) -> p.RunStarted:
    commit, dirty = git_state()
    return p.RunStarted(
        config=cfg.to_dict(),
        config_digest=cfg.digest,
        code_version=qpipe_version(),
        git_commit=commit,
        git_dirty=dirty,
        packages=package_versions(),
        engine=engine,
        host=platform.node(),
        argv=list(argv) if argv is not None else None,
        out_dir=str(run_dir),
    )


def config_failure_started(argv: Sequence[str]) -> p.RunStarted:
    """``run_started`` of a run that failed on its config: no config, ``phase: "config"``."""
    return p.RunStarted(
        config=None,
        config_digest=None,
        code_version=qpipe_version(),
        engine=None,
        host=platform.node(),
        argv=list(argv),
        out_dir=None,
        phase="config",
    )
