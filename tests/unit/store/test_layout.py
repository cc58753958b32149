"""What is a store: the marker, the pre-marker layout rule, and commands that refuse the rest."""

from __future__ import annotations

import os
import time
from pathlib import Path

import polars as pl
import pytest

from qpipe.errors import PathSafetyError, StoreError
from qpipe.ledger import Ledger
from qpipe.store import ArrowStore
from qpipe.store.gc import collect_garbage
from qpipe.store.layout import MARKER, is_store
from qpipe.store.verify import verify_store


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for folders): a byte-exact snapshot."""
    return {
        str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes())
        for p in sorted(root.rglob("*"))
    }


def _old(path: Path) -> None:
    t = time.time() - 10 * 3600
    os.utime(path, (t, t))


@pytest.fixture
def ledger(tmp_path) -> Path:
    led = Ledger(tmp_path / "audit.jsonl")
    led._append("r1", "run_started", {"config": None})
    return led.path


def test_a_new_store_is_marked_and_reopening_keeps_it(tmp_path):
    store = ArrowStore(tmp_path / "store")
    assert (store.root / MARKER).is_file()
    store.put(pl.DataFrame({"x": [1]}))
    ArrowStore(tmp_path / "store")
    assert is_store(store.root)


def test_a_symlinked_store_root_is_refused_and_nothing_lands_outside(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "store").symlink_to(outside, target_is_directory=True)
    with pytest.raises(PathSafetyError, match=r"store `.*/runs/store` is a symlink"):
        ArrowStore(tmp_path / "runs" / "store")
    assert list(outside.iterdir()) == []


def test_a_folder_holding_other_files_is_not_turned_into_a_store(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    before = _tree(home)
    with pytest.raises(StoreError, match=r"`.*/home` is not empty and not a qpipe store"):
        ArrowStore(home)
    assert _tree(home) == before


def test_a_store_made_before_the_marker_is_recognised_by_its_layout_and_marked(tmp_path):
    store = ArrowStore(tmp_path / "store")
    ref = store.put(pl.DataFrame({"x": [1, 2]}))
    (store.root / MARKER).unlink()
    (store.root / "tmp" / ".put.x.arrow.1234.tmp").write_bytes(b"partial")
    assert is_store(store.root)
    again = ArrowStore(store.root)
    assert (store.root / MARKER).is_file()
    assert again.open(ref).height == 2


@pytest.mark.parametrize(
    "extra",
    ["notes.txt", "ab/readme.md", "ab/" + "0" * 64 + ".arrow"],  # last: wrong shard for its name
    ids=["foreign-file", "foreign-file-in-shard", "misplaced-entry"],
)
def test_the_layout_rule_rejects_anything_a_store_does_not_write(tmp_path, extra):
    store = ArrowStore(tmp_path / "store")
    store.put(pl.DataFrame({"x": [1]}))
    (store.root / MARKER).unlink()
    path = store.root / extra
    path.parent.mkdir(exist_ok=True)
    path.write_text("?")
    assert not is_store(store.root)


def test_gc_on_a_folder_that_is_not_a_store_refuses_and_deletes_nothing(tmp_path, ledger):
    # issue 15 defect 4: gc used to delete old files in DIR/tmp and remove empty 2-hex folders
    folder = tmp_path / "project"
    (folder / "tmp").mkdir(parents=True)
    (folder / "tmp" / "draft.txt").write_text("old but mine")
    _old(folder / "tmp" / "draft.txt")
    (folder / "ab").mkdir()
    before = _tree(folder)
    with pytest.raises(StoreError, match=r"`.*/project` is not a qpipe store .*`store gc` refuses"):
        collect_garbage(folder, ledger, dry_run=False)
    assert _tree(folder) == before
    with pytest.raises(StoreError, match="`store verify` refuses"):
        verify_store(folder)


def test_gc_still_collects_a_pre_marker_store(tmp_path, ledger):
    store = ArrowStore(tmp_path / "store")
    ref = store.put(pl.DataFrame({"x": [1]}))
    _old(Path(ref.path))
    (store.root / MARKER).unlink()
    report = collect_garbage(store.root, ledger, dry_run=False)
    assert [e.path.name for e in report.removed] == [Path(ref.path).name]


def test_gc_refuses_a_symlinked_store_root(tmp_path, ledger):
    store = ArrowStore(tmp_path / "real")
    ref = store.put(pl.DataFrame({"x": [1]}))
    _old(Path(ref.path))
    (tmp_path / "link").symlink_to(store.root, target_is_directory=True)
    with pytest.raises(PathSafetyError, match="is a symlink"):
        collect_garbage(tmp_path / "link", ledger, dry_run=False)
    assert Path(ref.path).exists()
