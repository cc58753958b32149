"""The small study the walk-forward and CPCV end-to-end tests share: a 2 x 2 grid on 20 symbols."""

from __future__ import annotations

from pathlib import Path

from qpipe.config import ThreadSafeConfig

GRID = {"strategy.lookback": [20, 40], "allocation.top_n": [3, 6]}


def small_config(tmp: Path) -> ThreadSafeConfig:
    return ThreadSafeConfig.default().replace(
        data={"symbols": 20, "start": "2019-01-01", "end": "2020-12-31"},
        strategy={"lookback": 20, "skip": 2},
        allocation={"top_n": 3},
        store={"path": str(tmp / "store")},
    )
