"""A damaged store entry is never reused (issue 15 defect 3), and ``store verify`` finds it."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

from qpipe._fs import file_digest
from qpipe.store import ArrowStore
from qpipe.store.verify import verify_store


def _frame(n: int = 50_000) -> pl.DataFrame:
    return pl.DataFrame({"i": range(n), "x": [i * 0.5 for i in range(n)]})


def _damage(path: Path, how: str) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    if how == "flip-middle":
        data[len(data) // 2] ^= 0x01
    elif how == "truncate":
        data = data[: len(data) - 8]
    elif how == "zero-tail":
        data[-64:] = bytes(64)
    path.write_bytes(bytes(data))
    os.chmod(path, 0o444)


@pytest.mark.parametrize("how", ["flip-middle", "truncate", "zero-tail"])
@pytest.mark.parametrize("linked", [False, True], ids=["unlinked", "linked-by-a-run"])
def test_putting_equal_data_replaces_a_damaged_entry(tmp_path, how, linked):
    store = ArrowStore(tmp_path / "store")
    ref = store.put(_frame())
    entry = Path(ref.path)
    run_copy = tmp_path / "run" / "equity.arrow"
    if linked:  # a run folder hard-links its outputs to the entry
        run_copy.parent.mkdir()
        os.link(entry, run_copy)
    _damage(entry, how)
    assert file_digest(entry) != ref.digest

    again = store.put(_frame())
    assert again == ref
    assert file_digest(entry) == ref.digest  # the damaged bytes are gone from the store
    assert store.open(again).equals(_frame())
    if linked:
        assert not run_copy.samefile(entry)  # the earlier run folder keeps what it had


def test_an_intact_shared_entry_is_kept_so_run_folders_keep_sharing_it(tmp_path):
    store = ArrowStore(tmp_path / "store")
    ref = store.put(_frame())
    first = tmp_path / "run1.arrow"
    os.link(ref.path, first)
    store.put(_frame())
    assert first.samefile(ref.path)  # no second copy on disk


def test_store_verify_names_damaged_entries_and_can_remove_them(tmp_path):
    store = ArrowStore(tmp_path / "store")
    good = store.put(_frame(10))
    bad = store.put(_frame(20))
    clean = verify_store(store.root)
    assert clean.ok and clean.checked == 2 and clean.nbytes > 0
    _damage(Path(bad.path), "flip-middle")

    found = verify_store(store.root)
    assert [d.path.name for d in found.damaged] == [Path(bad.path).name]
    assert "content hashes to" in found.damaged[0].reason
    assert Path(bad.path).exists()  # reporting removes nothing

    removed = verify_store(store.root, remove_damaged=True)
    assert removed.removed and not Path(bad.path).exists() and Path(good.path).exists()
    assert verify_store(store.root).ok
