"""``python -m qpipe data import`` end to end: import, record, run on ``--data store:NAME``,
verify the ledger, keep the entry through ``store gc``; a bad folder imports nothing."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from qpipe.cli import main, runner_main
from tests.conftest import FAST_SETS, REPO

VENDOR = REPO / "examples" / "vendor"


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "audit.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("import") / "runs"
    argv = ["data", "import", str(VENDOR), "--name", "vendor", "--close", "adjusted"]
    assert main([*argv, "--out", str(out)]) == 0
    return out


def test_the_import_is_recorded_in_the_ledger(imported, capsys):
    (rec,) = [r for r in records(imported) if r["kind"] == "data_import"]
    data = rec["data"]
    assert rec["run_id"] == data["import_id"] and data["name"] == "vendor"
    assert (data["files"], data["symbols"], data["format"], data["close"]) == (
        12,
        12,
        "vendor",
        "adjusted",
    )
    assert Path(data["path"]).is_file() and len(data["digest"]) == 64
    assert main(["ledger", "verify", "--out", str(imported)]) == 0
    assert main(["data", "list", "--out", str(imported)]) == 0
    assert "vendor" in capsys.readouterr().out


def test_a_run_on_store_name_uses_the_imported_dataset(imported, capsys):
    argv = ["--data", "store:vendor", "--out", str(imported), *FAST_SETS, "--no-report"]
    assert runner_main([*argv, "--quiet"]) == 0
    capsys.readouterr()
    recs = records(imported)
    run_id = recs[-1]["run_id"]
    dataset = next(r for r in recs if r["run_id"] == run_id and r["kind"] == "dataset")
    imported_rec = next(r for r in recs if r["kind"] == "data_import")
    assert dataset["data"]["source"] == "store:vendor"
    assert dataset["data"]["digest"] == imported_rec["data"]["digest"]
    tier1 = next(r for r in recs if r["run_id"] == run_id and r["kind"] == "validation")
    assert tier1["data"]["skipped"] is True  # validated once, at import
    assert main(["ledger", "verify", "--out", str(imported)]) == 0


def test_store_gc_keeps_an_imported_entry(imported, capsys):
    entry = next(r for r in records(imported) if r["kind"] == "data_import")["data"]["path"]
    assert main(["store", "gc", "--out", str(imported)]) == 0
    capsys.readouterr()
    assert Path(entry).is_file()


def test_a_bad_folder_imports_nothing_and_says_what_is_wrong(tmp_path, capsys):
    folder = tmp_path / "bad"
    folder.mkdir()
    for path in sorted(VENDOR.glob("*.csv"))[:3]:
        (folder / path.name).write_bytes(path.read_bytes())
    broken = (folder / "ACME.csv").read_text().replace(",", ";", 5)
    (folder / "ACME.csv").write_text(broken.replace("\n2022-01-05,", "\n2022-01-05,x", 1))
    out = tmp_path / "runs"
    code = main(
        ["data", "import", str(folder), "--name", "bad", "--close", "raw", "--out", str(out)]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("qpipe: error: import of")
    assert "ACME.csv" in err[0] and "nothing imported" in err[0]
    assert not (out / "store" / "datasets" / "bad.json").exists()
    assert not (out / "audit.jsonl").exists() or not any(
        r["kind"] == "data_import" for r in records(out)
    )


def test_wide_input_to_data_says_how_to_convert(tmp_path, capsys):
    wide = REPO / "examples" / "wide.csv"
    code = runner_main(["--data", str(wide), "--out", str(tmp_path / "runs"), "--no-report"])
    err = capsys.readouterr().err
    assert code == 1
    assert "long format `date`, `symbol`, `close`" in err
    assert f"python -m qpipe data import {wide} --name NAME" in err


def test_imported_wide_and_long_files_store_the_same_closes(tmp_path):
    out = tmp_path / "runs"
    for src, name in (("wide.csv", "w"), ("prices.csv", "l")):
        assert (
            main(
                ["data", "import", str(REPO / "examples" / src), "--name", name, "--out", str(out)]
            )
            == 0
        )
    recs = {r["data"]["name"]: r["data"] for r in records(out) if r["kind"] == "data_import"}
    w = pl.read_ipc(recs["w"]["path"])
    long = pl.read_ipc(recs["l"]["path"])
    assert w.equals(long.select("date", "symbol", "close"))


def test_a_run_on_a_named_dataset_replays(imported, capsys):
    argv = ["--data", "store:vendor", "--out", str(imported), *FAST_SETS, "--no-report"]
    assert runner_main([*argv, "--quiet"]) == 0
    run_id = records(imported)[-1]["run_id"]
    assert main(["replay", run_id, "--out", str(imported)]) == 0
    assert "data outputs identical" in capsys.readouterr().out


def test_a_sweep_on_store_name_reads_the_imported_dataset(imported, capsys):
    """Sweeps and research read prices as a run does (one `stored_prices`), `store:NAME` too."""
    argv = ["--data", "store:vendor", "--out", str(imported), *FAST_SETS, "--quiet"]
    assert runner_main([*argv, "--sweep", "allocation.top_n=2,3"]) == 0
    capsys.readouterr()
    started = [r for r in records(imported) if r["kind"] == "sweep_started"][-1]["data"]
    imported_rec = next(r for r in records(imported) if r["kind"] == "data_import")
    assert started["data_digest"] == imported_rec["data"]["digest"]
    assert main(["ledger", "verify", "--out", str(imported)]) == 0
