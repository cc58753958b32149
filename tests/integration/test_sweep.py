"""Sweeps end to end: trials are rows (no run folders), the ledger sees one unit, a failed
trial is a row, an interrupted sweep (SIGKILL, Ctrl-C) resumes to the same table, a trial
promotes to a full run, and a replay compares digests.

The orchestration tests use ``tests/unit/sweep/toy.py`` (instant deterministic metrics) so they
test chunking, resume and the ledger, not the backtest; the promote test uses the real
evaluator, whose agreement with the single-run path is the batch tests' business.
"""

from __future__ import annotations

import html
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import pytest

from qpipe.config import ThreadSafeConfig
from qpipe.errors import ConfigError
from qpipe.ledger import iter_records, verify
from qpipe.store import open_ipc
from qpipe.sweep import grid_from_config, results_digest, run_sweep, trials_tried
from tests.conftest import REPO

TOY = "tests.unit.sweep.toy"
DYING_TOY = "tests.unit.sweep.dying_toy"  # kills its worker once
SMALL = {
    "data": {"symbols": 20, "start": "2019-01-01", "end": "2020-06-30"},
    "strategy": {"lookback": 42, "skip": 5},
    "allocation": {"top_n": 5},
    "run": {"report": False},
}
# 4 x 4 x 5 = 80 trials; skip=30 with lookback=21 is an invalid combination (4 failed rows)
AXES = [
    ("strategy.lookback", [21, 42, 63, 84]),
    ("allocation.top_n", [2, 3, 4, 5]),
    ("strategy.skip", [0, 5, 10, 20, 30]),
]


def make_cfg(out: Path, processes: int = 1) -> ThreadSafeConfig:
    run = {**SMALL["run"], "out": str(out)}
    return ThreadSafeConfig.from_mapping({**SMALL, "run": run, "engine": {"num_cpus": processes}})


def make_grid(cfg: ThreadSafeConfig):
    return grid_from_config(cfg, [(k, v, f"flag `{k}`") for k, v in AXES])


def sweep_records(ledger: Path) -> list[dict]:
    return [r for r in iter_records(ledger) if r["kind"].startswith("sweep_")]


def data_columns(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.drop("sweep_id", "seconds")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted toy sweep every other toy sweep is compared with."""
    out = tmp_path_factory.mktemp("reference")
    cfg = make_cfg(out)
    return run_sweep(cfg, make_grid(cfg), evaluator=TOY, engine="local")


def test_trials_are_rows_in_one_table_and_the_ledger_sees_one_unit(reference):
    out = reference.folder.parent.parent
    summary = open_ipc(reference.summary_path)
    assert summary.equals(reference.summary)
    assert summary.columns[:5] == [
        "sweep_id",
        "trial",
        "strategy.lookback",
        "allocation.top_n",
        "strategy.skip",
    ]
    assert summary.columns[-3:] == ["status", "error", "seconds"]
    assert summary.schema["strategy.lookback"] == pl.Int64
    assert sorted(summary["trial"].to_list()) == list(range(80))
    failed = summary.filter(pl.col("status") == "failed")
    assert failed.height == 4 and set(failed["strategy.lookback"]) == {21}
    assert failed["error"].str.contains("strategy.skip").all()
    ok = summary.filter(pl.col("status") == "ok")["sharpe"].to_list()
    assert ok == sorted(ok, reverse=True)  # best first; failures (null metric) last
    assert {p.name for p in reference.folder.iterdir()} >= {
        "summary.arrow",
        "sweep.html",
        "config.toml",
        "sweep.json",
        "chunks",
    }
    assert not [
        p for p in out.iterdir() if not p.name.startswith(("sweeps", "store", "audit.jsonl"))
    ]
    records = sweep_records(out / "audit.jsonl")
    kinds = [r["kind"] for r in records]
    assert kinds[0] == "sweep_started" and kinds[-1] == "sweep_finished"
    assert set(kinds[1:-1]) == {"sweep_chunk"}
    assert {r["run_id"] for r in records} == {reference.sweep_id}
    assert not [r for r in iter_records(out / "audit.jsonl") if r["kind"] == "run_started"]
    assert trials_tried(out / "audit.jsonl", reference.sweep_id) == 80
    started = records[0]["data"]
    assert started["n_trials"] == 80 and started["grid_digest"] == reference.grid.digest
    assert records[-1]["data"]["results_digest"] == reference.results_digest
    assert verify(out / "audit.jsonl").ok


def test_bad_grid_is_refused_before_work_and_recorded(tmp_path):
    cfg = make_cfg(tmp_path)
    with pytest.raises(ConfigError, match="lists the value 21 twice"):
        run_sweep(cfg, [("strategy.lookback", [21, 21])], evaluator=TOY)
    records = sweep_records(tmp_path / "audit.jsonl")
    assert [r["kind"] for r in records] == ["sweep_failed"]
    assert records[0]["data"]["phase"] == "config"
    assert not (tmp_path / "sweeps").exists()


def test_ledger_verify_rehashes_every_chunk_file(tmp_path):
    cfg = make_cfg(tmp_path)
    result = run_sweep(cfg, [("allocation.top_n", [2, 3, 4])], evaluator=TOY)
    ledger = tmp_path / "audit.jsonl"
    report = verify(ledger)
    chunks = [r for r in sweep_records(ledger) if r["kind"] == "sweep_chunk"]
    assert report.ok and report.artifacts == len(chunks) >= 1
    path = Path(chunks[0]["data"]["path"])
    path.write_bytes(path.read_bytes()[:-1] + b"\0")  # one byte changed
    report = verify(ledger)
    assert not report.ok
    (bad,) = report.bad_artifacts
    assert bad.name == "sweep chunk 0" and bad.run_id == result.sweep_id


def _start_sweep_process(out: Path, processes: int) -> subprocess.Popen:
    """The toy sweep in a child process, slow enough to interrupt; with ``processes`` > 1 its
    chunks move to worker processes after the first 2 s (``LocalEngine.POOL_AFTER``)."""
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from tests.integration.test_sweep import make_cfg, make_grid, TOY
        from qpipe.sweep import run_sweep
        cfg = make_cfg(Path({str(out)!r}), {processes})
        try:
            run_sweep(cfg, make_grid(cfg), evaluator=TOY, engine="local")
        except KeyboardInterrupt:
            sys.exit(130)
        """
    )
    environ = {**os.environ, "PYTHONPATH": str(REPO), "QPIPE_TOY_SLEEP": "0.05"}
    return subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=environ)


def _wait_for_chunks(out: Path, proc: subprocess.Popen, n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(list(out.glob("sweeps/*/chunks/chunk-*.arrow"))) >= n:
            return
        assert proc.poll() is None, "the sweep ended before it could be interrupted"
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"no {n} chunks within {timeout}s")


@pytest.mark.parametrize("how", ["automatic", "by_id"])
def test_sigkill_mid_sweep_then_resume_gives_the_uninterrupted_table(reference, tmp_path, how):
    processes = 2 if how == "automatic" else 1  # killed while worker processes run chunks
    proc = _start_sweep_process(tmp_path, processes)
    _wait_for_chunks(tmp_path, proc, 5 if processes > 1 else 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    (folder,) = (tmp_path / "sweeps").iterdir()
    assert not (folder / "summary.arrow").exists()  # killed: nothing after the chunks
    cfg = make_cfg(tmp_path)
    resume = folder.name if how == "by_id" else None
    resumed = run_sweep(cfg, make_grid(cfg), evaluator=TOY, engine="local", resume=resume)
    assert resumed.sweep_id == folder.name
    assert 0 < resumed.reused < 80  # only the missing trials ran
    assert resumed.results_digest == reference.results_digest
    assert data_columns(resumed.summary).equals(data_columns(reference.summary))
    ledger = tmp_path / "audit.jsonl"
    assert trials_tried(ledger, resumed.sweep_id) == 80  # every trial counted exactly once
    kinds = [r["kind"] for r in sweep_records(ledger)]
    assert (
        kinds[0] == "sweep_started" and "sweep_resumed" in kinds and kinds[-1] == "sweep_finished"
    )
    assert verify(ledger).ok


def test_ctrl_c_writes_the_summary_of_finished_trials_and_records_the_failure(tmp_path):
    proc = _start_sweep_process(tmp_path, 2)
    _wait_for_chunks(tmp_path, proc, 5)  # worker processes are running chunks by now
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    (folder,) = (tmp_path / "sweeps").iterdir()
    partial = open_ipc(folder / "summary.arrow")
    chunks = {p.name: open_ipc(p).height for p in sorted((folder / "chunks").glob("chunk-*.arrow"))}
    assert 0 < partial.height < 80, partial.height
    assert partial.height == sum(chunks.values()), (partial.height, chunks)
    last = sweep_records(tmp_path / "audit.jsonl")[-1]
    assert last["kind"] == "sweep_failed" and last["data"]["error"] == "KeyboardInterrupt"
    assert last["data"]["n_done"] == partial.height
    assert trials_tried(tmp_path / "audit.jsonl", folder.name) == partial.height
    assert json.loads((folder / "sweep.json").read_text())["state"] == "interrupted"


def test_a_finished_sweep_is_not_resumed_and_replay_compares_digests(reference, tmp_path):
    from qpipe.sweep import replay_sweep

    out = reference.folder.parent.parent
    report = replay_sweep(reference.sweep_id, out=out)
    assert report.replay_id != reference.sweep_id  # a new sweep, not a resume
    assert report.identical, report
    assert results_digest(open_ipc(reference.summary_path)) == report.recorded


def test_a_resume_with_another_grid_is_refused(reference):
    out = reference.folder.parent.parent
    cfg = make_cfg(out)
    with pytest.raises(ConfigError, match="another grid"):
        run_sweep(cfg, [("strategy.lookback", [21])], evaluator=TOY, resume=reference.sweep_id)


def test_cli_sweep_then_promote_a_trial_to_a_full_run_with_equal_metrics(tmp_path, capsys):
    """The real evaluator from ``runner.py``: the top table, then ``sweep promote`` makes a run
    folder and report whose metrics.json equals the trial's row, value for value."""
    import math

    from qpipe.cli import main, runner_main
    from tests.conftest import SMALL_BUILTIN_SETS

    out = tmp_path / "runs"
    sweep_flags = ["--sweep", "strategy.lookback=40,60", "--sweep", "allocation.top_n=3,5"]
    code = runner_main([*SMALL_BUILTIN_SETS, *sweep_flags, "--out", str(out), "--no-report"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "top 20 by sharpe" in captured.out and "4 trials" in captured.out
    (verdict,) = [x for x in captured.out.splitlines() if x.startswith("DSR ")]
    assert " with N = 4 trials: " in verdict
    (folder,) = (out / "sweeps").iterdir()
    _check_sweep_statistics(out, folder, verdict)
    summary = open_ipc(folder / "summary.arrow")
    assert summary.height == 4 and (summary["status"] == "ok").all()
    assert not [p for p in out.iterdir() if p.name[:1].isdigit()]  # no run folders for trials
    trial = int(summary["trial"][1])
    row = summary.filter(pl.col("trial") == trial).row(0, named=True)
    code = main(["sweep", "promote", folder.name, str(trial), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    (run_dir,) = [p for p in out.iterdir() if p.name[:1].isdigit()]
    assert (run_dir / "report.html").exists()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for name, value in metrics.items():
        if value is None:
            assert row[name] is None or math.isnan(row[name]), name
        else:
            assert row[name] == value, (name, row[name], value)  # exactly, not approximately
    config = (run_dir / "config.toml").read_text()
    assert f"lookback = {row['strategy.lookback']}" in config
    manifest = json.loads((folder / "sweep.json").read_text())
    assert manifest["promoted"] == {str(trial): run_dir.name}
    page = (folder / "sweep.html").read_text(encoding="utf-8")  # drawn again by the promote
    assert verdict in page and f"../../{run_dir.name}/report.html" in page
    assert '<section id="pbo">' in page and '<section id="min-trl">' in page
    code = main(["stats", folder.name, "--out", str(out)])  # the same judgement, by hand
    assert code == 0 and capsys.readouterr().out.strip() == verdict


def _check_sweep_statistics(out: Path, folder: Path, verdict: str) -> None:
    """The finished sweep's statistics: one ``trial_stats`` record listing the sweep it
    counted, kept in the manifest, and on ``sweep.html`` (DSR, IS vs OOS, PBO, MinTRL, the
    sweeps counted in N)."""
    stats = [r for r in iter_records(out / "audit.jsonl") if r["kind"] == "trial_stats"]
    assert len(stats) == 1 and stats[0]["data"]["sweep_id"] == folder.name
    data = stats[0]["data"]
    assert data["sweeps_counted"] == [{"sweep_id": folder.name, "n_trials": 4, "n_ok": 4}]
    assert data["n_trials"] == 4 and data["trials_from"] == "ledger"
    assert f"DSR {data['values']['dsr']:.2f} with N = 4 trials" in verdict
    kept = json.loads((folder / "sweep.json").read_text())["stats"]
    assert kept["stats_id"] == stats[0]["run_id"] and kept["values"]["dsr"] == data["values"]["dsr"]
    page = (folder / "sweep.html").read_text(encoding="utf-8")
    for sid in ("verdict", "is-oos", "pbo", "min-trl", "sweeps", "trials"):
        assert f'<section id="{sid}">' in page, sid
    assert verdict in page and "A sweep has no folds" in page
    assert page.index('<section id="verdict">') < page.index('<section id="trials">')


def test_peak_memory_does_not_grow_with_the_number_of_trials(tmp_path):
    """Rows are streamed to chunk files; the driver holds counters. 10x the trials, in a fresh
    process each, may add little more than the summary table itself (~1 KB a row)."""
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from qpipe.config import ThreadSafeConfig
        from qpipe.sweep import grid_from_config, run_sweep
        n, out = int(sys.argv[1]), Path(sys.argv[2])
        cfg = ThreadSafeConfig.from_mapping(
            {"data": {"symbols": 20, "start": "2019-01-01", "end": "2020-06-30"},
             "run": {"report": False, "out": str(out)}})
        axes = [("strategy.lookback", list(range(30, 30 + n // 100)), "a"),
                ("allocation.top_n", list(range(1, 101)), "b")]
        result = run_sweep(cfg, grid_from_config(cfg, axes), evaluator="tests.unit.sweep.toy")
        assert result.summary.height == n and result.failed.height == 0
        status = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
        print(int(status) * 1024)
        """
    )
    peak = {}
    for n in (1_000, 10_000):
        done = subprocess.run(
            [sys.executable, "-c", script, str(n), str(tmp_path / str(n))],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True, text=True, timeout=600, check=True,
        )  # fmt: skip
        peak[n] = int(done.stdout.split()[-1])
    growth = peak[10_000] - peak[1_000]
    assert growth < 64 * 2**20, {n: f"{p / 2**20:.0f} MB" for n, p in peak.items()}


# Ray: last in the module, so the two-node cluster starts once -------------------------------
@pytest.mark.ray
def test_a_two_node_cluster_gives_the_local_summary_with_constant_task_bytes(
    reference, tmp_path, ray_cluster_address
):
    """Same results digest as the local sweep; each task ships the chunk description and an
    ObjectRef to the shared job, so its bytes do not depend on the number of trials."""
    from qpipe.engines.ray import RayEngine

    cfg = make_cfg(tmp_path)
    engine = RayEngine(address=ray_cluster_address)
    on_ray = run_sweep(cfg, make_grid(cfg), evaluator=TOY, engine=engine)
    assert on_ray.results_digest == reference.results_digest
    assert data_columns(on_ray.summary).equals(data_columns(reference.summary))
    assert len(engine.stats.nodes) == 2  # chunks ran on both nodes
    small = engine.stats.max_task_bytes
    big_cfg = make_cfg(tmp_path / "big")
    big = grid_from_config(
        big_cfg,
        [
            ("strategy.lookback", list(range(20, 120)), "a"),
            ("allocation.top_n", list(range(1, 41)), "b"),
        ],
    )
    run_sweep(big_cfg, big, evaluator=TOY, engine=engine)  # 4,000 trials
    assert engine.stats.tasks > 1
    assert small < 1024 and abs(engine.stats.max_task_bytes - small) <= 8, (
        small,
        engine.stats.max_task_bytes,
    )


@pytest.mark.ray
def test_a_worker_killed_mid_sweep_costs_a_retry_not_a_trial(
    reference, tmp_path, ray_cluster_address
):
    """SIGKILL of the worker running a chunk: Ray retries the chunk, and the summary equals the
    undisturbed local sweep's (no trial lost, none counted twice)."""
    from qpipe.engines.ray import RayEngine

    cfg = make_cfg(tmp_path)
    engine = RayEngine(address=ray_cluster_address)
    on_ray = run_sweep(cfg, make_grid(cfg), evaluator=DYING_TOY, engine=engine)
    assert (tmp_path / "store" / "killed-once").exists(), "no worker died: nothing was tested"
    assert on_ray.results_digest == reference.results_digest
    assert data_columns(on_ray.summary).equals(data_columns(reference.summary))
    assert trials_tried(tmp_path / "audit.jsonl", on_ray.sweep_id) == 80  # each counted once
    assert verify(tmp_path / "audit.jsonl").ok


def test_a_sweep_whose_statistics_cannot_be_computed_says_why(tmp_path):
    """One trial has no variance of trial Sharpe ratios: the sweep finishes, its page and its
    verdict say why the DSR is not there, and no `trial_stats` is recorded. Two trials over a
    PBO limit of 1: the DSR is there, the PBO section says why it is not."""
    from qpipe.research.pages import sweep_research
    from qpipe.research.sweep_stats import judge_sweep
    from qpipe.views import render_sweep

    cfg = ThreadSafeConfig.default().replace(
        data={"symbols": 20, "start": "2020-01-01", "end": "2021-06-30"},
        strategy={"lookback": 60, "skip": 5},
        allocation={"top_n": 5},
    )
    out = tmp_path / "runs"
    one = run_sweep(cfg, [("allocation.top_n", [5])], out=out, engine="local")
    assert one.verdict.startswith("DSR not computed: the variance of trial sharpe ratios needs")
    page = (one.folder / "sweep.html").read_text(encoding="utf-8")
    assert html.escape(one.verdict, quote=False) in page and '<section id="trials">' in page
    assert not [r for r in iter_records(out / "audit.jsonl") if r["kind"] == "trial_stats"]
    (failed,) = [r for r in iter_records(out / "audit.jsonl") if r["kind"] == "trial_stats_failed"]
    assert failed["data"]["sweep_id"] == one.sweep_id
    assert one.verdict == f"DSR not computed: {failed['data']['message']}"
    two = run_sweep(cfg, [("allocation.top_n", [3, 5])], out=out, engine="local")
    assert " with N = 3 trials: " in two.verdict  # the family: both sweeps (1 + 2 trials)
    stats = judge_sweep(two.sweep_id, out / "audit.jsonl", out / "store", pbo_limit=1)
    assert stats.pbo is None and "more than the 1 whose daily returns" in stats.why_no_pbo
    page = render_sweep(two.summary, metric="sharpe", params=list(two.params), title="t",
                        research=sweep_research(stats))  # fmt: skip
    assert '<section id="verdict">' in page and "more than the 1 whose daily returns" in page
