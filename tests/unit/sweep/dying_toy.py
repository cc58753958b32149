"""The toy evaluator, except that the first chunk to run kills its own process once.

A Ray worker that dies mid-sweep (OOM killer, a lost node) must cost only a retry of its chunk:
the sweep's table is the one an undisturbed sweep writes. The marker file in the store root
makes the kill happen exactly once across every worker and retry.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from tests.unit.sweep import toy
from tests.unit.sweep.toy import build_panel

__all__ = ["build_panel", "evaluate_chunk"]


def evaluate_chunk(
    panel: Any,
    base_config: dict[str, Any],
    trials: Sequence[tuple[int, dict[str, Any]]],
    store_root: str,
) -> pa.Table:
    marker = Path(store_root) / "killed-once"
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        pass
    else:
        os.kill(os.getpid(), signal.SIGKILL)
    return toy.evaluate_chunk(panel, base_config, trials, store_root)
