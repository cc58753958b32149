"""A run with a point-in-time universe (``--membership``): no weight on a non-member, ever."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from qpipe.cli import main, runner_main
from tests.conftest import REPO

PRICES = REPO / "examples" / "prices.csv"
MEMBERSHIP = REPO / "examples" / "membership.csv"
SETS = ["--set", "allocation.top_n=5", "--no-report", "--quiet"]


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "audit.jsonl").read_text().splitlines()]


def member_on(symbol: str, date, intervals: list[tuple]) -> bool:
    return any(s == symbol and a <= date and (b is None or date <= b) for s, a, b in intervals)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("pit") / "runs"
    dirs = {}
    for key, extra in (("pit", ["--membership", str(MEMBERSHIP)]), ("all", [])):
        assert runner_main(["--data", str(PRICES), *extra, "--out", str(out), *SETS]) == 0
        dirs[key] = out / records(out)[-1]["run_id"]
    dirs["out"] = out
    return dirs


def test_no_weight_on_a_non_member_on_any_rebalance_date(runs):
    intervals = pl.read_csv(MEMBERSHIP, try_parse_dates=True).rows()
    weights = pl.read_ipc(runs["pit"] / "weights.arrow").filter(pl.col("weight") != 0)
    assert weights.height > 0
    for date, symbol, _ in weights.select("date", "symbol", "weight").iter_rows():
        assert member_on(symbol, date, intervals), f"{symbol} held on {date} while not a member"
    unrestricted = pl.read_ipc(runs["all"] / "weights.arrow").filter(pl.col("weight") != 0)
    outsiders = [
        (d, s)
        for d, s in unrestricted.select("date", "symbol").iter_rows()
        if not member_on(s, d, intervals)
    ]
    assert outsiders, "the membership file should bite on the example data"


def test_the_run_records_whether_its_universe_is_point_in_time(runs):
    recs = records(runs["out"])
    by_run = {}
    for r in recs:
        if r["kind"] == "dataset":
            by_run.setdefault(r["run_id"], {})[r["data"]["name"]] = r["data"]
    pit, plain = by_run[runs["pit"].name], by_run[runs["all"].name]
    assert pit["prices"]["point_in_time"] is True and pit["membership"]["source"] == str(MEMBERSHIP)
    assert plain["prices"]["point_in_time"] is False and "membership" not in plain
    assert main(["ledger", "verify", "--out", str(runs["out"])]) == 0


def test_a_point_in_time_run_replays(runs, capsys):
    assert main(["replay", runs["pit"].name, "--out", str(runs["out"])]) == 0
    assert "data outputs identical" in capsys.readouterr().out


def test_membership_with_external_weights_is_refused(tmp_path, capsys):
    argv = ["--data", str(PRICES), "--weights", str(REPO / "examples" / "weights.csv")]
    code = runner_main([*argv, "--membership", str(MEMBERSHIP), "--out", str(tmp_path), *SETS])
    assert code == 1
    assert "`data.membership`" in capsys.readouterr().err
