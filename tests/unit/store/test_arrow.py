"""The Arrow store: atomic content-addressed writes, zero-copy opens, refs that never hold data."""

from __future__ import annotations

import gc
import os
import pickle

import numpy as np
import polars as pl
import pyarrow.ipc as ipc
import pytest

from qpipe.errors import DataFormatError, PathSafetyError, StoreError
from qpipe.store import ArrowStore, DatasetRef, open_ipc, write_ipc_atomic


def _anon_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon")


def test_put_returns_small_immutable_picklable_ref(store, small_prices):
    ref = store.put(small_prices)
    assert isinstance(ref, DatasetRef)
    assert ref.rows == small_prices.height
    assert ref.columns == ("date", "symbol", "close")
    assert len(pickle.dumps(ref)) < 1024
    with pytest.raises(AttributeError):
        ref.rows = 1  # type: ignore[misc]
    assert store.open(ref).equals(small_prices)


def test_files_are_uncompressed_arrow_ipc_files_in_few_batches(store, small_prices):
    ref = store.put(small_prices)
    with open(ref.path, "rb") as f:
        assert f.read(6) == b"ARROW1"
    reader = ipc.open_file(ref.path)
    assert reader.num_record_batches == 1
    assert all(b.num_rows == small_prices.height for b in (reader.get_batch(0),))


def test_content_addressed_and_independent_of_chunking(store, small_prices):
    one = store.put(small_prices)
    chunked = pl.concat(
        [small_prices.head(100), small_prices.tail(small_prices.height - 100)], rechunk=False
    )
    assert chunked.n_chunks() > 1
    two = store.put(chunked)
    assert one.digest == two.digest and one.path == two.path
    three = store.put(small_prices.with_columns(pl.col("close") * 2))
    assert three.digest != one.digest
    assert store.digest_of(store.entries()[0]) in {one.digest, three.digest}


def test_put_accepts_lazy_frames(store, small_prices):
    assert store.put(small_prices.lazy()).digest == store.put(small_prices).digest


def test_write_is_atomic_no_temp_left_on_failure(tmp_path, small_prices):
    target = tmp_path / "out.arrow"
    write_ipc_atomic(small_prices, target)
    before = target.read_bytes()

    class Boom(pl.DataFrame):
        def rechunk(self):  # fail mid-write
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_ipc_atomic(Boom(small_prices), target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.arrow"]


def test_verify_detects_corruption(store, small_prices):
    ref = store.put(small_prices)
    store.verify(ref)
    os.chmod(ref.path, 0o644)
    with open(ref.path, "r+b") as f:
        f.seek(200)
        f.write(b"\xff\xff")
    with pytest.raises(StoreError, match="corrupt"):
        store.verify(ref)


def test_refs_outside_the_store_and_symlinks_are_refused(tmp_path, store, small_prices):
    outside = tmp_path / "elsewhere.arrow"
    digest = write_ipc_atomic(small_prices, outside)
    with pytest.raises(PathSafetyError, match="outside the store"):
        store.open(DatasetRef(str(outside), digest, 1, ()))
    link = store.root / "ab" / ("ab" + "0" * 62 + ".arrow")
    link.parent.mkdir(exist_ok=True)
    link.symlink_to(outside)
    with pytest.raises(PathSafetyError, match="symlink"):
        store.open(DatasetRef(str(link), "ab" + "0" * 62, 1, ()))
    dotdot = DatasetRef(str(store.root / ".." / "elsewhere.arrow"), digest, 1, ())
    with pytest.raises(PathSafetyError):
        store.open(dotdot)
    assert link not in store.entries()


def test_open_errors_are_clear(tmp_path):
    with pytest.raises(DataFormatError, match="does not exist"):
        open_ipc(tmp_path / "missing.arrow")
    junk = tmp_path / "junk.arrow"
    junk.write_bytes(b"not arrow at all")
    with pytest.raises(DataFormatError, match=r"junk\.arrow` is not a readable Arrow IPC file"):
        open_ipc(junk)


def test_opening_a_large_file_is_zero_copy(tmp_path):
    """A ~250 MB file opens over a memory map: anonymous (heap) memory grows by a tiny fraction."""
    n = 8_000_000
    rng = np.random.default_rng(0)
    frame = pl.DataFrame(
        {
            "date": pl.Series(np.arange(n) // 500, dtype=pl.Int32).cast(pl.Date),
            "symbol": pl.Series([f"S{i:03d}" for i in range(500)]).gather(np.arange(n) % 500),
            "close": rng.random(n) + 1.0,
            "volume": rng.random(n),
        }
    )
    store = ArrowStore(tmp_path / "store")
    ref = store.put(frame)
    size = os.path.getsize(ref.path)
    assert size > 200e6
    del frame
    gc.collect()
    before = _anon_bytes()
    opened = store.open(ref)
    lazy_total = store.scan(ref).select(pl.len()).collect().item()
    after = _anon_bytes()
    assert opened.height == n and lazy_total == n
    assert opened.schema["symbol"] == pl.String
    assert after - before < 0.02 * size, (
        f"open added {(after - before) / 1e6:.1f} MB of heap for a {size / 1e6:.0f} MB file"
    )


def test_written_files_are_readable_like_any_file_and_store_entries_read_only(tmp_path, store):
    frame = pl.DataFrame({"a": [1, 2]})
    umask = os.umask(0o022)
    os.umask(umask)
    write_ipc_atomic(frame, tmp_path / "out.arrow")
    assert (tmp_path / "out.arrow").stat().st_mode & 0o777 == 0o644 & ~umask
    ref = store.put(frame)
    assert os.stat(ref.path).st_mode & 0o777 == 0o444
