"""Confinement and the optional cluster's exposure.

Everything qpipe names itself (run ids, artifact names, store entries, store folders, quarantine
files, names taken from data) stays inside ``--out``/``--ledger``/the store; the store never
writes or reads through a symlink; nothing loads pickles from disk; a local Ray cluster listens
on loopback only; the MLflow export writes only where it is told.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import polars as pl
import pytest

from qpipe.api import RunPaths
from qpipe.cli import main, runner_main
from qpipe.errors import PathSafetyError
from qpipe.ledger import records
from qpipe.store import ArrowStore
from tests.conftest import FAST_SETS, REPO, random_walk_prices

FAST = [
    *FAST_SETS,
    "--quiet",
]
HOSTILE = ["../../x", "/etc/passwd", "..", "a/b", "~root", "C:\\evil", "nul\x01"]


def _is_loopback(addr: str) -> bool:
    ip = ipaddress.ip_address(addr)
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is IPv4 loopback
    return (mapped or ip).is_loopback


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def test_hostile_symbols_never_become_paths(tmp_path, capsys):
    prices = random_walk_prices()
    names = sorted(prices["symbol"].unique())
    rename = dict(zip(names, HOSTILE + names[len(HOSTILE) :], strict=False))
    prices = prices.with_columns(pl.col("symbol").replace(rename))
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    data = inputs / "prices.csv"
    prices.write_csv(data)
    out = tmp_path / "runs"
    outside_before = files_under(tmp_path)
    assert runner_main(["--data", str(data), "--out", str(out), *FAST]) == 0
    capsys.readouterr()
    # nothing outside --out
    assert files_under(tmp_path) - files_under(out) == outside_before | {out}
    run_id = records(out / "audit.jsonl")[-1]["run_id"]
    assert {p.name for p in (out / run_id).iterdir()} == {
        "equity.arrow",
        "weights.arrow",
        "trades.arrow",
        "metrics.json",
        "config.toml",
        "report.html",
    }
    for p in (out / "store").rglob("*"):
        rel = p.relative_to(out / "store")
        own = rel.parts[0] in ("tmp", "index", ".qpipe-store")  # staging, index, the marker
        assert own or re.fullmatch(r"[0-9a-f]{2}", rel.parts[0])
        if p.is_file() and not own:
            assert re.fullmatch(r"[0-9a-f]{64}\.arrow", p.name)
    # the hostile names are data, stored and backtested as any other symbol
    weights = pl.read_ipc(out / run_id / "weights.arrow")
    assert set(weights["symbol"]) <= set(prices["symbol"])


def test_a_bad_file_with_hostile_symbols_quarantines_inside_the_run_folder(tmp_path, capsys):
    bad = tmp_path / "bad prices; rm -rf.csv"
    bad.write_text("date,symbol,close\n2020-01-02,../../x,-1\n2020-01-03,/etc/passwd,1\n")
    out = tmp_path / "runs"
    assert runner_main(["--data", str(bad), "--out", str(out), *FAST]) == 1
    capsys.readouterr()
    run_id = records(out / "audit.jsonl")[-1]["run_id"]
    (quarantine,) = (out / run_id).glob("*.quarantine.arrow")
    assert quarantine.parent == out / run_id
    assert set(files_under(tmp_path)) - files_under(out) == {bad, out}


@pytest.mark.parametrize("run_id", ["..", ".", "", "../x", "/etc", "a/b", "a/../../b"])
def test_a_run_id_cannot_escape_the_runs_folder(tmp_path, run_id):
    paths = RunPaths(tmp_path / "runs", tmp_path / "runs" / "audit.jsonl", tmp_path / "store")
    with pytest.raises(PathSafetyError):
        paths.run_dir(run_id)


def test_a_symlinked_store_shard_folder_is_refused_and_nothing_is_written_outside(tmp_path):
    frame = random_walk_prices(symbols=2, days=5)
    digest = ArrowStore(tmp_path / "probe").put(frame).digest
    outside = tmp_path / "outside"
    outside.mkdir()
    store = ArrowStore(tmp_path / "store")
    (store.root / digest[:2]).symlink_to(outside, target_is_directory=True)
    with pytest.raises(PathSafetyError, match="symlink"):
        store.put(frame)
    assert list(outside.iterdir()) == []
    assert list((store.root / "tmp").iterdir()) == []  # the staged file was removed
    assert store.ref_for(digest) is None
    # an entry planted in the linked folder is not listed, found or opened
    (outside / f"{digest}.arrow").write_bytes(
        (tmp_path / "probe").joinpath(digest[:2], f"{digest}.arrow").read_bytes()
    )
    assert store.entries() == [] and store.ref_for(digest) is None


@pytest.mark.parametrize("folder", ["tmp", "index"])
def test_symlinked_store_staging_or_index_folders_are_refused(tmp_path, folder, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "runs"
    (out / "store").mkdir(parents=True)
    (out / "store" / folder).symlink_to(outside, target_is_directory=True)
    args = [
        "--set",
        "data.symbols=10",
        "--set",
        'data.start="2020-01-01"',
        "--set",
        'data.end="2020-06-30"',
        *FAST,
        "--out",
        str(out),
    ]
    assert runner_main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "symlink" in err and f"`{out / 'store' / folder}`" in err
    assert list(outside.iterdir()) == []
    *_, failed, checkpoint = records(out / "audit.jsonl")
    assert failed["data"]["error"] == "PathSafetyError" and checkpoint["kind"] == "checkpoint"


def test_nothing_loads_pickles_from_disk():
    """Stores hold Arrow and the ledger JSON: no unpickling anywhere in qpipe. (Ray pickles
    task arguments in memory for its own transport; qpipe only measures their size.)"""
    banned = re.compile(
        r"pickle\.loads?\(|cloudpickle\.loads?\(|allow_pickle\s*=\s*True|joblib|"
        r"read_pickle|marshal\.loads?\(|shelve\.|dill\.|torch\.load\(|np\.load\("
    )
    hits = [
        f"{p.relative_to(REPO)}:{i}: {line.strip()}"
        for p in sorted((REPO / "qpipe").rglob("*.py"))
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if banned.search(line)
    ]
    assert hits == []


def test_mlflow_export_writes_only_to_the_tracking_uri_and_the_ledger_folder(
    tmp_path, monkeypatch, capsys
):
    pytest.importorskip("mlflow")
    out = tmp_path / "runs"
    data = tmp_path / "prices.csv"
    random_walk_prices().write_csv(data)
    assert runner_main(["--data", str(data), "--out", str(out), *FAST]) == 0
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    tracking = tmp_path / "tracking"
    tracking.mkdir()
    before = files_under(tmp_path)
    uri = f"sqlite:///{tracking / 'mlflow.db'}"
    assert main(["mlflow", "export", "--out", str(out), "--tracking-uri", uri]) == 0
    capsys.readouterr()
    assert list(cwd.iterdir()) == []  # no ./mlruns, no ./mlartifacts, nothing
    new = files_under(tmp_path) - before
    allowed = (tracking, out / "mlartifacts", out / "audit.jsonl", out / "audit.jsonl.lock")
    stray = [p for p in new if not any(p == a or p.is_relative_to(a) for a in allowed)]
    assert stray == []
    assert (tracking / "mlflow.db").is_file()


def test_a_local_ray_cluster_listens_on_loopback_only(ray_engine):
    psutil = pytest.importorskip("psutil")
    ray_engine.ray  # noqa: B018 - started
    ray_pids = {
        p.pid
        for p in psutil.process_iter(["name", "cmdline"])
        if any(
            k in " ".join(p.info["cmdline"] or [p.info["name"] or ""])
            for k in ("raylet", "gcs_server", "plasma", "dashboard", "ray::")
        )
    }
    assert ray_pids, "no ray processes found"
    listening = [
        (c.pid, c.laddr.ip, c.laddr.port)
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.pid in ray_pids
    ]
    assert listening, "ray listens on no port?"
    exposed = [c for c in listening if not _is_loopback(c[1])]
    assert exposed == [], exposed
