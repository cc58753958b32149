"""Benchmark fixtures: seeded data made once per session, one local Ray cluster.

Helpers (data generators, memory checks, same-run results) live in ``_helpers.py``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _helpers import GIB, ohlcv_frame, require_memory, size_id

from qpipe.store import ArrowStore, DatasetRef

# runs sign the ledger with a key in a key folder outside the runs folder; benchmarks use their
# own, never the user's (~/.local/state/qpipe)
os.environ["QPIPE_KEY_DIR"] = tempfile.mkdtemp(prefix="qpipe-bench-keys-")


@pytest.fixture(scope="session", autouse=True)
def _remove_bench_key_folder() -> Iterator[None]:
    yield
    shutil.rmtree(os.environ["QPIPE_KEY_DIR"], ignore_errors=True)


@pytest.fixture(scope="session")
def bench_store(tmp_path_factory) -> ArrowStore:
    return ArrowStore(tmp_path_factory.mktemp("bench") / "store")


@pytest.fixture(scope="session")
def ohlcv_ref(bench_store) -> Callable[[int], DatasetRef]:
    """``ohlcv_ref(rows)``: the seeded OHLCV frame of that size in the session store (made once)."""
    cache: dict[int, DatasetRef] = {}

    def get(rows: int) -> DatasetRef:
        if rows not in cache:
            # the frame (~60 B/row), its Arrow view and the write buffer coexist briefly
            require_memory(int(rows * 60 * 2.5), f"generating {size_id(rows)}")
            frame = ohlcv_frame(rows)
            cache[rows] = bench_store.put(frame)
            del frame
        return cache[rows]

    return get


@pytest.fixture(scope="session")
def ray_session() -> Iterator[object]:
    """One local Ray cluster for the session: loopback, no dashboard, 2 CPUs, 4 GiB store."""
    from qpipe.engines.ray import import_ray

    # workers import the helpers (task bodies) by module name, as the driver does
    here = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (here, os.environ.get("PYTHONPATH", "")) if p
    )
    ray = import_ray(loopback=True)
    if ray.is_initialized():
        yield ray
        return
    ray.init(
        address="local",
        num_cpus=2,
        object_store_memory=4 * GIB,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
    )
    try:
        yield ray
    finally:
        ray.shutdown()


