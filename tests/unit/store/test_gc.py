"""Store garbage collection: only unreferenced, old entries go; nothing outside the store."""

from __future__ import annotations

import os
import time
from pathlib import Path

import polars as pl
import pytest

from qpipe.cli import main
from qpipe.errors import LedgerError, StoreError
from qpipe.ledger import Ledger
from qpipe.store import ArrowStore
from qpipe.store.gc import collect_garbage, referenced_digests
from qpipe.store.layout import MARKER

HOUR = 3600.0


def _age(path: Path, seconds: float = 2 * HOUR) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t), follow_symlinks=False)


@pytest.fixture
def world(tmp_path):
    """A store with 5 entries; the ledger references 3 of them, in three different places."""
    store = ArrowStore(tmp_path / "store")
    refs = [store.put(pl.DataFrame({"x": [i, i + 1]})) for i in range(5)]
    for r in refs:
        _age(Path(r.path))
    led = Ledger(tmp_path / "audit.jsonl")
    led._append("r1", "dataset", {"name": "prices", "digest": refs[0].digest, "rows": 2})
    led._append(
        "r1",
        "stage",
        {
            "stage": "s",
            "inputs": {"prices": refs[0].digest},
            "outputs": {"sig": {"digest": refs[1].digest, "rows": 2, "path": refs[1].path}},
        },
    )
    led._append("r1", "allocation_audit", {"nested": [[{"deep": refs[2].digest.upper()}]]})
    return store, refs, led


def test_dry_run_lists_unreferenced_entries_and_removes_nothing(world, capsys):
    store, refs, led = world
    before = sorted(store.root.rglob("*"))
    report = collect_garbage(store.root, led.path, dry_run=True)
    assert sorted(e.path for e in report.removed) == sorted(Path(r.path) for r in refs[3:])
    assert all(e.nbytes == Path(e.path).stat().st_size for e in report.removed)
    assert report.referenced == 3 and report.dry_run
    assert sorted(store.root.rglob("*")) == before

    assert (
        main(["store", "gc", "--store", str(store.root), "--ledger", str(led.path), "--dry-run"])
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("dry run: would remove 2 store entries")
    assert "kept 3 referenced" in out[0]
    assert sorted(line.split()[-1] for line in out[1:]) == sorted(r.path for r in refs[3:])


def test_gc_removes_only_unreferenced_entries(world, capsys):
    store, refs, led = world
    report = collect_garbage(store.root, led.path, dry_run=False)
    assert len(report.removed) == 2 and report.nbytes > 0
    for r in refs[:3]:
        assert store.open(r).height == 2  # still readable
    for r in refs[3:]:
        assert not Path(r.path).exists()
    # the emptied shard folders are gone, the others stay
    assert {p.name for p in store.root.iterdir() if p.name not in ("tmp", MARKER)} == {
        r.digest[:2] for r in refs[:3]
    }
    again = collect_garbage(store.root, led.path, dry_run=False)
    assert again.removed == () and again.referenced == 3
    assert main(["store", "gc", "--store", str(store.root), "--ledger", str(led.path)]) == 0
    assert capsys.readouterr().out.startswith("removed 0 store entries")


def test_recent_unreferenced_entries_are_kept(world):
    store, _, led = world
    fresh = store.put(pl.DataFrame({"x": [42]}))  # a running job's output, not yet recorded
    report = collect_garbage(store.root, led.path, dry_run=False)
    assert [e.path for e in report.recent] == [Path(fresh.path)]
    assert Path(fresh.path).exists()
    report = collect_garbage(store.root, led.path, dry_run=False, grace_seconds=0)
    assert Path(fresh.path) in [e.path for e in report.removed]


def test_stale_temp_files_go_and_fresh_ones_stay(world):
    store, _, led = world
    tmp = store.root / "tmp"
    tmp.mkdir(exist_ok=True)
    (tmp / "put.old.arrow").write_bytes(b"x" * 10)
    (tmp / "put.new.arrow").write_bytes(b"y")
    _age(tmp / "put.old.arrow")
    report = collect_garbage(store.root, led.path, dry_run=False)
    assert [(e.path.name, e.kind, e.nbytes) for e in report.removed if e.kind == "tmp"] == [
        ("put.old.arrow", "tmp", 10)
    ]
    assert (tmp / "put.new.arrow").exists() and tmp.is_dir()


def test_gc_never_follows_symlinks_or_leaves_the_store(world, tmp_path):
    store, refs, led = world
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / (refs[4].digest + ".arrow")
    victim.write_bytes(b"precious")
    _age(victim)
    # a symlinked shard folder and a symlinked entry, both pointing outside the store
    (store.root / "zz").symlink_to(outside)
    shard = store.root / refs[4].digest[:2]
    shard.mkdir(exist_ok=True)
    link = shard / ("f" * 64 + ".arrow")
    link.symlink_to(victim)
    foreign = store.root / "ab" / "notes.txt"  # not a store entry
    foreign.parent.mkdir(exist_ok=True)
    foreign.write_text("mine")
    _age(foreign)

    report = collect_garbage(store.root, led.path, dry_run=False)
    assert victim.read_bytes() == b"precious"
    assert link.is_symlink() and foreign.exists()
    assert set(report.skipped) >= {store.root / "zz", link}
    assert all(e.path.resolve().is_relative_to(store.root.resolve()) for e in report.removed)


def test_digests_in_torn_and_recovered_lines_keep_their_entries(world):
    store, refs, led = world
    with led.path.open("ab") as f:  # a crashed writer's half record naming refs[3]
        f.write(f'{{"data":{{"digest":"{refs[3].digest}","na'.encode())
    assert refs[3].digest in referenced_digests(led.path)
    led._append("r2", "run_started", {})  # moves the torn bytes into a `recovered` record
    assert refs[3].digest in referenced_digests(led.path)
    report = collect_garbage(store.root, led.path, dry_run=False)
    assert [e.path for e in report.removed] == [Path(refs[4].path)]


def test_gc_refuses_without_a_usable_ledger(world, tmp_path):
    store, refs, led = world
    with pytest.raises(LedgerError, match="does not exist"):
        collect_garbage(store.root, tmp_path / "nope.jsonl", dry_run=False)
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(LedgerError, match="no records"):
        collect_garbage(store.root, empty, dry_run=False)
    lines = led.path.read_bytes().split(b"\n")
    lines[0] = b"garbage"
    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(b"\n".join(lines))
    with pytest.raises(LedgerError, match="line 1"):
        collect_garbage(store.root, broken, dry_run=False)
    assert all(Path(r.path).exists() for r in refs)  # nothing was removed
    with pytest.raises(StoreError, match="does not exist"):
        collect_garbage(tmp_path / "no-store", led.path, dry_run=False)
