"""Sweeps: grid parsing, one ledger run per trial, shared steps computed once, a failed trial
recorded while the others finish, the summary files, the CLI, and local/Ray parity."""

from __future__ import annotations

import json
import os

import polars as pl
import pytest

from qpipe.config import ThreadSafeConfig
from qpipe.errors import ConfigError
from qpipe.store import open_ipc
from qpipe.sweep import parse_sweep, run_sweep, sweep_main, trial_configs

SMALL = {
    "data": {"symbols": 20, "start": "2019-01-01", "end": "2020-06-30"},
    "strategy": {"lookback": 42, "skip": 5},
    "allocation": {"top_n": 5},
    "run": {"report": False},
}


@pytest.fixture
def cfg(tmp_path) -> ThreadSafeConfig:
    run = {**SMALL["run"], "out": str(tmp_path / "runs")}
    return ThreadSafeConfig.from_mapping({**SMALL, "run": run})


def ledger_kinds(path) -> list[tuple[str, str]]:
    return [(r["run_id"], r["kind"]) for r in map(json.loads, path.read_text().splitlines())]


def test_parse_sweep_reads_toml_scalars_and_the_sweep_table():
    cfg = ThreadSafeConfig.from_mapping(
        {"sweep": {"strategy.lookback": [21, 42], "metric": "cagr", "allocation": {"top_n": [3]}}}
    )
    grid = parse_sweep(["allocation.scheme=top_n,inverse_vol", "strategy.lookback=63"], cfg)
    assert grid == [
        ("strategy.lookback", [63]),  # the flag replaces the table's entry
        ("allocation.top_n", [3]),
        ("allocation.scheme", ["top_n", "inverse_vol"]),
    ]
    configs = trial_configs(cfg, grid)
    assert [p for p, _ in configs] == [
        {"strategy.lookback": 63, "allocation.top_n": 3, "allocation.scheme": s}
        for s in ("top_n", "inverse_vol")
    ]
    assert all(len(c.sweep) == 0 for _, c in configs)


@pytest.mark.parametrize(
    ("flag", "match"),
    [
        ("strategy.lookbak=5,10", r"--sweep strategy.lookbak=5,10.*unknown key"),
        ("strategy.lookback", r"--sweep strategy.lookback.*malformed"),
        ("lookback=5", r"must be `section.key`"),
        ("strategy.lookback=", r"one or more"),
        ("strategy.lookback=x,y", r"--sweep strategy.lookback=x,y.*must be int"),
    ],
)
def test_a_bad_sweep_flag_is_a_config_error_naming_it(flag, match):
    with pytest.raises(ConfigError, match=match):
        parse_sweep([flag], ThreadSafeConfig.default())


def test_local_sweep_one_run_per_trial_shared_features_and_a_failed_trial(cfg, tmp_path):
    # the two top_n trials of each lookback share its features and signals
    grid = parse_sweep(["strategy.lookback=21,42", "allocation.top_n=3,5"], cfg)
    grid.append(("backtest.cost_bps", [5.0]))
    result = run_sweep(cfg, grid, progress=False, metric="sharpe")
    assert [t.status for t in result.trials] == ["ok"] * 4
    kinds = ledger_kinds(tmp_path / "runs" / "audit.jsonl")
    finished = {rid for rid, k in kinds if k == "run_finished"}
    assert finished == {t.run_id for t in result.trials}
    stage_records = [
        json.loads(line)["data"]
        for line in (tmp_path / "runs" / "audit.jsonl").read_text().splitlines()
        if json.loads(line)["kind"] == "stage"
    ]
    features = [r for r in stage_records if r["stage"] == "features"]
    assert sum(not r["cached"] for r in features) == 2  # one per lookback, the rest reused
    summary = open_ipc(result.summary_path)
    assert summary.equals(result.summary)
    assert summary.columns[:6] == [
        "trial", "strategy.lookback", "allocation.top_n", "backtest.cost_bps", "run_id", "status",
    ]
    sharpe = summary["sharpe"].to_list()
    assert sharpe == sorted(sharpe, reverse=True)
    assert result.html_path is not None and "<html" in result.html_path.read_text().lower()


def test_a_failed_trial_is_recorded_and_the_others_finish(cfg, tmp_path):
    # top_n=0 is rejected by the config (no run); the prices file of the second data source
    # does not exist, so that trial's run starts and is recorded as failed
    grid = [("allocation.top_n", [0, 3]), ("data.source", ["builtin", str(tmp_path / "nope.csv")])]
    result = run_sweep(cfg, grid, progress=False)
    status = {tuple(t.params.values()): (t.status, t.run_id) for t in result.trials}
    assert status[(3, "builtin")][0] == "ok"
    assert status[(0, "builtin")] == ("failed", None)
    failed_status, failed_run = status[(3, str(tmp_path / "nope.csv"))]
    assert failed_status == "failed" and failed_run is not None
    assert (failed_run, "run_failed") in ledger_kinds(tmp_path / "runs" / "audit.jsonl")
    assert result.summary["status"].to_list()[0] == "ok"  # the metric ranks; failures last


def test_cli_sweep_exits_1_and_names_the_failed_trial(cfg, tmp_path, capsys):
    sweep_cfg = cfg.replace(sweep={"allocation.top_n": [3, 0]})
    code = sweep_main(sweep_cfg, [], argv=["--sweep"], quiet=True)
    captured = capsys.readouterr()
    assert code == 1
    assert "trial 1 [allocation.top_n=0] failed" in captured.err
    folder = captured.out.strip().splitlines()[-1]
    assert (tmp_path / "runs" / "sweeps").exists() and folder.endswith(
        tuple(p.name for p in (tmp_path / "runs" / "sweeps").iterdir())
    )


@pytest.mark.ray
def test_a_sweep_gives_identical_outputs_on_both_engines(cfg, tmp_path, ray_hub):
    from qpipe.engines.local import LocalEngine
    from qpipe.engines.ray import RayEngine

    ray_hub.local()
    # every trial shares the features and signals steps
    grid = [("allocation.top_n", [3, 5]), ("backtest.cost_bps", [0.0, 10.0])]
    data = ("equity.arrow", "weights.arrow", "trades.arrow", "metrics.json")

    def outputs(result):
        return [
            (*t.params.values(), *(t.artifacts[n] for n in data))
            for t in sorted(result.trials, key=lambda t: t.index)
        ]

    local = run_sweep(cfg, grid, engine=LocalEngine(), out=tmp_path / "a", progress=False)
    on_ray = run_sweep(cfg, grid, engine=RayEngine(), out=tmp_path / "b", progress=False)
    differ = [
        (t.index, n)
        for t, u in zip(on_ray.trials, local.trials, strict=True)
        for n in data
        if t.artifacts.get(n) != u.artifacts.get(n)
    ]
    assert not differ, differ  # (trial, artifact) whose digests differ
    assert outputs(on_ray) == outputs(local)
    assert all(t.status == "ok" for t in on_ray.trials)
    assert on_ray.cache_entries == 2  # features and signals, computed once on the driver
    assert pl.Series(on_ray.summary["trial"]).to_list() == local.summary["trial"].to_list()


@pytest.mark.ray
def test_killing_a_ray_worker_mid_sweep_loses_no_trial(tmp_path, ray_hub):
    """SIGKILL a worker while it runs a trial: Ray retries it; every trial ends ok with the
    same outputs as the local sweep, and the ledger still verifies."""
    import signal
    import threading

    import psutil

    from qpipe.engines.local import LocalEngine
    from qpipe.engines.ray import RayEngine
    from qpipe.ledger import verify

    ray_hub.local()
    big = {**SMALL, "data": {**SMALL["data"], "symbols": 120}}
    cfg = ThreadSafeConfig.from_mapping({**big, "run": {"report": False}})
    grid = [("allocation.top_n", [3, 5, 8])]
    killed: list[int] = []
    stop = threading.Event()

    def killer() -> None:
        while not stop.is_set() and not killed:
            for proc in psutil.process_iter(["pid", "cmdline"]):
                cmd = " ".join(proc.info["cmdline"] or [])
                if "_run_trial" in cmd and proc.pid != os.getpid():
                    os.kill(proc.pid, signal.SIGKILL)
                    killed.append(proc.pid)
                    return
            stop.wait(0.02)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        on_ray = run_sweep(cfg, grid, engine=RayEngine(), out=tmp_path / "b", progress=False)
    finally:
        stop.set()
        thread.join()
    local = run_sweep(cfg, grid, engine=LocalEngine(), out=tmp_path / "a", progress=False)
    assert killed, "no trial worker was seen running; nothing was killed"
    assert [t.status for t in on_ray.trials] == ["ok"] * 3
    data = ("equity.arrow", "weights.arrow", "trades.arrow", "metrics.json")
    for t, u in zip(on_ray.trials, local.trials, strict=True):
        assert [t.artifacts[n] for n in data] == [u.artifacts[n] for n in data]
    report = verify(tmp_path / "b" / "audit.jsonl")
    assert report.ok, report.reason
