"""runner.py end to end: the run folder, the ledger, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow.ipc as ipc
import pytest

from qpipe.cli import main, runner_main
from tests.conftest import FAST_SETS, REPO

SMALL = [
    "--set",
    "data.symbols=40",
    "--set",
    'data.start="2019-01-01"',
    "--set",
    'data.end="2020-12-31"',
    "--set",
    "allocation.top_n=10",
]


def _run_dirs(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.is_dir() and p.name not in ("store", "sweeps"))


def _ledger(out: Path) -> list[dict]:
    """The runs' records (the signed checkpoint that ends each run is left out)."""
    lines = (out / "audit.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] != "checkpoint"]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    code = runner_main([*SMALL, "--out", str(out), "--quiet"])
    assert code == 0
    return out


def test_default_run_writes_the_run_folder(default_run):
    (run_dir,) = _run_dirs(default_run)
    names = {p.name for p in run_dir.iterdir()}
    assert {
        "equity.arrow",
        "weights.arrow",
        "trades.arrow",
        "metrics.json",
        "config.toml",
        "report.html",
    } <= names
    for name in ("equity.arrow", "weights.arrow", "trades.arrow"):
        with open(run_dir / name, "rb") as f:
            assert f.read(6) == b"ARROW1"  # Arrow IPC *file*
        ipc.open_file(run_dir / name)
    equity = pl.read_ipc(run_dir / "equity.arrow")
    assert equity.columns[:5] == ["date", "equity", "return", "turnover", "cost"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"total_return", "cagr", "sharpe", "max_drawdown", "beta"} <= set(metrics)
    assert metrics["total_return"] == pytest.approx(equity["equity"][-1] - 1.0)
    html = (run_dir / "report.html").read_text()
    assert run_dir.name in html and 'id="chart-equity"' in html and "qpipe-chart-data" in html


def test_default_run_report_shows_the_recorded_audit_and_provenance(default_run):
    (run_dir,) = _run_dirs(default_run)
    html = (run_dir / "report.html").read_text()
    records = [r for r in _ledger(default_run) if r["run_id"] == run_dir.name]
    audit = html.split('<section id="audit">', 1)[1].split("</section>", 1)[0]
    prov = html.split('<section id="provenance">', 1)[1].split("</section>", 1)[0]
    started = next(r for r in records if r["kind"] == "run_started")
    assert started["data"]["config_digest"] in prov
    assert f"python -m qpipe replay {run_dir.name} --ledger" in prov
    # the ledger records written before the report, by seq and kind
    before = [r for r in records if r["seq"] < records[-1]["seq"] and r["kind"] != "run_finished"]
    assert f"{before[0]['seq']} run_started" in prov
    for kind in ("tier1", "tier2"):
        assert f"<td>{kind}</td>" in audit
    cuts = next(r for r in records if r["kind"] == "allocation_audit")["data"]["pit_cuts"]
    assert cuts and all(c in audit for c in cuts)


def test_default_run_is_recorded_in_the_ledger(default_run):
    records = _ledger(default_run)
    kinds = [r["kind"] for r in records]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    for kind in ("dataset", "validation", "stage", "allocation_audit", "metrics", "artifact"):
        assert kind in kinds, kind
    stages = [r["data"]["stage"] for r in records if r["kind"] == "stage"]
    assert stages[-2:] == ["backtest", "metrics"]
    started = records[0]["data"]
    assert started["config_digest"] and started["packages"]["polars"].startswith("2.")
    assert main(["ledger", "verify", "--out", str(default_run)]) == 0


def test_stage_inputs_and_outputs_are_refs_to_store_files(default_run):
    for rec in _ledger(default_run):
        if rec["kind"] != "stage":
            continue
        for out in rec["data"]["outputs"].values():
            assert Path(out["path"]).is_file() and len(out["digest"]) == 64
        assert all(len(d) == 64 for d in rec["data"]["inputs"].values())


def test_replay_reports_identical_outputs(default_run, capsys):
    run_id = _run_dirs(default_run)[0].name
    assert main(["replay", run_id, "--out", str(default_run)]) == 0
    out = capsys.readouterr().out
    assert "data outputs identical" in out
    assert out.count("identical") >= 5


def test_rerun_of_validated_data_skips_tier1(tmp_path, small_prices):
    prices = tmp_path / "prices.parquet"
    small_prices.write_parquet(prices)
    args = [
        "--data",
        str(prices),
        "--out",
        str(tmp_path / "runs"),
        "--quiet",
        "--no-report",
        *FAST_SETS,
    ]
    assert runner_main(args) == 0
    assert runner_main(args) == 0
    tier1 = [
        r["data"]
        for r in _ledger(tmp_path / "runs")
        if r["kind"] == "validation" and r["data"]["tier"] == "tier1"
    ]
    assert [t["skipped"] for t in tier1] == [False, True]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("date,symbol\n2020-01-02,A\n", "close"),
        ("date,symbol,close\n2020-01-02,A,-1\n2020-01-03,A,1\n", "close"),
        ("date,symbol,close\n2020-01-02,A,1\n2020-01-02,A,2\n", "unique"),
        ("date,symbol,close\n2020-01-02,,1\n", "symbol"),
        ("date,symbol,close\n2020-01-02,A,abc\n", "close"),
        ("", "empty"),
    ],
    ids=[
        "missing-column",
        "negative-close",
        "duplicate",
        "null-symbol",
        "wrong-type",
        "empty-file",
    ],
)
def test_bad_price_files_fail_with_one_line_and_are_recorded(tmp_path, capsys, content, fragment):
    bad = tmp_path / "prices.csv"
    bad.write_text(content)
    out = tmp_path / "runs"
    code = runner_main(["--data", str(bad), "--out", str(out)])
    stderr = capsys.readouterr().err.strip()
    err = stderr.splitlines()[-1]  # progress lines come first; the error is the last, one line
    assert code == 1
    assert err.startswith("qpipe: error:") and "Traceback" not in stderr
    assert "prices.csv" in err and fragment in err.lower()
    assert _ledger(out)[-1]["kind"] == "run_failed"


def test_not_what_the_extension_says(tmp_path, capsys):
    fake = tmp_path / "prices.parquet"
    fake.write_text("date,symbol,close\n2020-01-02,A,1\n")
    assert runner_main(["--data", str(fake), "--out", str(tmp_path / "runs")]) == 1
    assert "prices.parquet" in capsys.readouterr().err


def test_config_errors_exit_nonzero_with_one_line(tmp_path, capsys):
    assert runner_main(["--set", "backtest.cost_bsp=5", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert (
        "did you mean `backtest.cost_bps`" in err and err.count("\n") == 1
    )  # fails before any progress


def test_subprocess_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "runner.py"),
            "--data",
            str(tmp_path / "missing.csv"),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "missing.csv" in proc.stderr
    debug = subprocess.run(
        [
            sys.executable,
            str(REPO / "runner.py"),
            "--data",
            str(tmp_path / "missing.csv"),
            "--out",
            str(tmp_path),
            "--debug",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def _weights_file(tmp_path, prices: pl.DataFrame, weight: float) -> Path:
    dates = prices["date"].unique().sort()
    month_ends = (
        prices.select("date")
        .unique()
        .group_by(pl.col("date").dt.truncate("1mo").alias("month"))
        .agg(pl.col("date").max())["date"]
        .sort()
    )
    symbols = prices.filter(pl.col("date") == dates[0])["symbol"].sort()[:4]
    frame = pl.DataFrame(
        {
            "date": [d for d in month_ends for _ in symbols],
            "symbol": [s for _ in month_ends for s in symbols],
        }
    ).with_columns(pl.lit(weight).alias("weight"))
    frame = frame.join(prices.select("date", "symbol"), on=["date", "symbol"], how="semi")
    path = tmp_path / "weights.csv"
    frame.write_csv(path)
    return path


def test_external_weights_are_audited_and_backtested(tmp_path, small_prices):
    prices = tmp_path / "prices.csv"
    small_prices.write_csv(prices)
    weights = _weights_file(tmp_path, small_prices, 0.25)
    out = tmp_path / "runs"
    code = runner_main(
        [
            "--data",
            str(prices),
            "--weights",
            str(weights),
            "--out",
            str(out),
            "--quiet",
            "--no-report",
            "--set",
            "backtest.cost_bps=10",
            "--set",
            "backtest.initial_capital=1000000",
            "--set",
            "allocation.max_weight=0.25",
        ]
    )
    assert code == 0
    run_dir = _run_dirs(out)[0]
    equity = pl.read_ipc(run_dir / "equity.arrow")
    trades = pl.read_ipc(run_dir / "trades.arrow")
    assert equity["equity"][0] == 1_000_000  # nothing traded before the first month end
    assert trades.height > 0 and equity["cost"].sum() == pytest.approx(trades["cost"].sum())
    assert equity["cost"].sum() == pytest.approx(10 / 1e4 * trades["notional"].abs().sum())


def test_weights_breaking_the_limits_fail_the_audit_and_are_recorded(
    tmp_path, small_prices, capsys
):
    prices = tmp_path / "prices.csv"
    small_prices.write_csv(prices)
    weights = _weights_file(tmp_path, small_prices, 0.6)  # gross 2.4 > 1, name 0.6 > 0.1
    out = tmp_path / "runs"
    assert runner_main(["--data", str(prices), "--weights", str(weights), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "allocation audit found" in err and "max_weight" in err and "gross_leverage" in err
    records = _ledger(out)
    audit = next(r for r in records if r["kind"] == "allocation_audit")["data"]
    assert audit["passed"] is False and audit["n_violations"] > 0
    assert (
        records[-1]["kind"] == "run_failed"
        and records[-1]["data"]["error"] == "AllocationAuditError"
    )


@pytest.mark.parametrize("config", sorted((REPO / "configs").glob("*.toml")), ids=lambda p: p.stem)
def test_every_example_config_runs_from_runner(tmp_path, config):
    out = tmp_path / "runs"
    small = [
        "--set",
        "data.symbols=120",
        "--set",
        'data.start="2018-01-01"',
        "--set",
        'data.end="2020-12-31"',
    ]
    assert runner_main(["--config", str(config), *small, "--out", str(out), "--quiet"]) == 0
    (run_dir,) = _run_dirs(out)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_rebalances"] > 0 and metrics["total_cost"] > 0
    assert 'id="chart-equity"' in (run_dir / "report.html").read_text()


def test_benchmark_file_drives_the_relative_metrics(tmp_path, small_prices):
    """--benchmark FILE: beta, alpha, tracking error and IR against that file's equal weight."""
    import numpy as np

    prices = tmp_path / "prices.parquet"
    small_prices.write_parquet(prices)
    one = small_prices.filter(pl.col("symbol") == "S00")  # a one-name "index"
    bench = tmp_path / "index.csv"
    one.write_csv(bench)
    out = tmp_path / "runs"
    args = [
        "--data",
        str(prices),
        "--benchmark",
        str(bench),
        "--out",
        str(out),
        "--quiet",
        "--no-report",
        *FAST_SETS,
    ]
    assert runner_main(args) == 0
    (run_dir,) = _run_dirs(out)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    equity = pl.read_ipc(run_dir / "equity.arrow")
    r = equity["return"].to_numpy()
    b = one.sort("date")["close"].pct_change().fill_null(0.0).to_numpy()
    beta = np.cov(r, b, ddof=1)[0, 1] / np.var(b, ddof=1)
    assert metrics["beta"] == pytest.approx(beta, rel=1e-9)
    te = np.std(r - b, ddof=1) * np.sqrt(252)
    assert metrics["tracking_error"] == pytest.approx(te, rel=1e-9)
    names = [rec["data"]["name"] for rec in _ledger(out) if rec["kind"] == "dataset"]
    assert names == ["prices", "benchmark"]


def test_a_failed_run_leaves_no_empty_run_folder(tmp_path, small_prices):
    prices = tmp_path / "prices.csv"
    small_prices.write_csv(prices)
    out = tmp_path / "runs"
    # fails after the run started: top_n larger than the 8-symbol universe
    assert (
        runner_main(["--data", str(prices), "--out", str(out), "--set", "allocation.top_n=9"]) == 1
    )
    assert _run_dirs(out) == []
    assert _ledger(out)[-1]["kind"] == "run_failed"


def test_a_capped_book_runs_but_warns_about_cash_drag(tmp_path, small_prices, capsys):
    prices = tmp_path / "prices.csv"
    small_prices.write_csv(prices)
    out = tmp_path / "runs"
    args = [
        "--data",
        str(prices),
        "--out",
        str(out),
        "--no-report",
        *FAST_SETS,
        "--set",
        "allocation.max_weight=0.1",
    ]
    assert runner_main(args) == 0
    assert "warning: dates with positions allocate 30% of capital" in capsys.readouterr().err
    audit = next(r for r in _ledger(out) if r["kind"] == "allocation_audit")["data"]
    assert len(audit["warnings"]) == 1
