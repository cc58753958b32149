"""The bad-input catalogue (issue 6), each case run through ``runner_main`` in-process.

Every case must end the same way: exit code 1, the last stderr line a single ``qpipe: error:``
line naming the file, column or key at fault, no traceback, a ``run_failed`` record at the end of
the ledger (config errors too: they are recorded as a run that failed at once), and the outputs
of the good run made first in the same runs folder byte-for-byte untouched.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

import qpipe.ingest
import qpipe.ingest.batched as batched_mod
import qpipe.runs.ingest
from qpipe.cli import main, runner_main
from tests.conftest import FAST_SETS, SMALL_BUILTIN_SETS, random_walk_prices

# the strategy settings that fit the 8-symbol, 120-day test prices
FAST = [
    *FAST_SETS,
    "--no-report",
    "--quiet",
]
# the small built-in universe (20 symbols, 18 months)
SMALL_BUILTIN = [
    *SMALL_BUILTIN_SETS,
    "--no-report",
    "--quiet",
]


def tree_digest(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (relative path -> digest)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def ledger_records(out: Path) -> list[dict]:
    """The runs' records (the signed checkpoint that ends each run is left out)."""
    lines = (out / "audit.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] != "checkpoint"]


class Runs:
    """One runs folder shared by the module: a good run first, then every bad one."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.out = root / "runs"
        self.inputs = root / "inputs"
        self.inputs.mkdir()
        self.prices = random_walk_prices()
        self.prices_csv = self.inputs / "prices.csv"
        self.prices.write_csv(self.prices_csv)
        assert runner_main(["--data", str(self.prices_csv), "--out", str(self.out), *FAST]) == 0
        records = ledger_records(self.out)
        self.good_run = records[-1]["run_id"]
        self.good_dir = self.out / self.good_run
        self.good_store = {
            r["data"]["path"]: r["data"]["digest"] for r in records if r["kind"] == "dataset"
        }
        self.good_digests = tree_digest(self.good_dir)
        assert {"equity.arrow", "weights.arrow", "trades.arrow", "metrics.json"} <= set(
            self.good_digests
        )

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.inputs / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def fail(self, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[str, dict]:
        """Run ``argv`` (expected to fail); return the error line and the last ledger record."""
        before = len(ledger_records(self.out))
        code = runner_main([*argv, "--out", str(self.out)])
        stderr = capsys.readouterr().err
        lines = stderr.strip().splitlines()
        assert code == 1, stderr
        assert lines, "no error line"
        err = lines[-1]
        assert err.startswith("qpipe: error: "), err
        assert "Traceback" not in stderr
        records = ledger_records(self.out)
        assert len(records) > before, "the failure was not recorded"
        last = records[-1]
        assert last["kind"] in ("run_failed", "sweep_failed") and last["run_id"] != self.good_run
        assert last["data"]["message"] in err
        self.assert_good_run_untouched()
        return err, last

    def assert_good_run_untouched(self) -> None:
        assert tree_digest(self.good_dir) == self.good_digests
        for path, digest in self.good_store.items():
            assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == digest


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Runs:
    return Runs(tmp_path_factory.mktemp("bad_inputs"))


def assert_mentions(err: str, *fragments: str) -> None:
    low = err.lower()
    for f in fragments:
        assert f.lower() in low, f"{f!r} not in {err!r}"


# ------------------------------------------------------------------------- price files

GOOD_HEAD = "date,symbol,close\n2020-01-02,A,10.0\n2020-01-03,A,10.5\n"

CSV_CASES: dict[str, tuple[str | bytes, tuple[str, ...]]] = {
    "missing-column": ("date,symbol\n2020-01-02,A\n", ("`close`",)),
    "misnamed-column": ("date,symbol,clsoe\n2020-01-02,A,1\n", ("`close`", "`clsoe`")),
    "price-as-string": ("date,symbol,close\n2020-01-02,A,abc\n", ("`close`", "abc")),
    "mixed-date-formats": (
        "date,symbol,close\n2020-01-02,A,1\n01/03/2020,A,2\n",
        ("`date`", "01/03/2020"),
    ),
    "nan-price": (GOOD_HEAD + "2020-01-06,A,NaN\n", ("`close`",)),
    "inf-price": (GOOD_HEAD + "2020-01-06,A,inf\n", ("`close`",)),
    "minus-inf-price": (GOOD_HEAD + "2020-01-06,A,-inf\n", ("`close`",)),
    "zero-price": (GOOD_HEAD + "2020-01-06,A,0\n", ("`close`",)),
    "negative-price": (GOOD_HEAD + "2020-01-06,A,-3\n", ("`close`",)),
    "duplicate-date-symbol": (GOOD_HEAD + "2020-01-03,A,11\n", ("unique", "2020-01-03 A")),
    "null-symbol": (GOOD_HEAD + "2020-01-06,,11\n", ("`symbol`",)),
    "empty-string-symbol": (GOOD_HEAD + '2020-01-06,"",11\n', ("`symbol`",)),
    "empty-file": ("", ("empty",)),
    "header-only": ("date,symbol,close\n", ("no rows",)),
    "wrong-delimiter": ("date;symbol;close\n2020-01-02;A;1\n", ("wrong delimiter", "';'")),
    "latin1-encoding": ("date,symbol,close\n2020-01-02,Café,1\n".encode("latin-1"), ("utf-8",)),
}


@pytest.mark.parametrize("case", CSV_CASES, ids=list(CSV_CASES))
def test_bad_price_csv(runs, capsys, case):
    content, fragments = CSV_CASES[case]
    path = runs.file(f"{case}.csv", content)
    err, last = runs.fail(["--data", str(path), *FAST], capsys)
    assert_mentions(err, f"{case}.csv", *fragments)
    assert last["data"]["error"] in ("DataFormatError", "SchemaValidationError")


def _binary(runs: Runs, name: str, damage: Callable[[bytes], bytes]) -> Path:
    path = runs.inputs / name
    if name.endswith(".parquet"):
        runs.prices.write_parquet(path)
    else:
        runs.prices.write_ipc(path, compression="uncompressed")
    path.write_bytes(damage(path.read_bytes()))
    return path


def _flip_middle(raw: bytes) -> bytes:
    mid = len(raw) // 2
    return raw[:mid] + bytes(b ^ 0xFF for b in raw[mid : mid + 64]) + raw[mid + 64 :]


@pytest.mark.parametrize("ext", ["parquet", "arrow"])
@pytest.mark.parametrize(
    "damage",
    [lambda raw: raw[: len(raw) // 2], _flip_middle],
    ids=["truncated", "corrupt"],
)
def test_truncated_or_corrupt_binary_price_file(runs, capsys, ext, damage):
    name = f"damaged-{damage.__name__}-{ext}.{ext}".replace("<lambda>", "cut")
    path = _binary(runs, name, damage)
    err, _ = runs.fail(["--data", str(path), *FAST], capsys)
    assert_mentions(err, name)


def test_dates_as_numbers_in_parquet(runs, capsys):
    path = runs.inputs / "int-dates.parquet"
    runs.prices.with_columns(pl.col("date").cast(pl.Int32)).write_parquet(path)
    err, _ = runs.fail(["--data", str(path), *FAST], capsys)
    assert_mentions(err, "int-dates.parquet", "`date`")


def test_missing_price_file(runs, capsys):
    err, last = runs.fail(["--data", str(runs.inputs / "nope.csv"), *FAST], capsys)
    assert_mentions(err, "nope.csv", "does not exist")
    assert last["data"]["error"] == "DataFormatError"


def test_unsorted_rows_are_accepted_and_stored_sorted(runs, capsys):
    shuffled = runs.prices.sample(fraction=1.0, shuffle=True, seed=3)
    path = runs.inputs / "shuffled.csv"
    shuffled.write_csv(path)
    assert runner_main(["--data", str(path), "--out", str(runs.out), *FAST]) == 0
    capsys.readouterr()
    records = ledger_records(runs.out)
    assert records[-1]["kind"] == "run_finished"
    run_id = records[-1]["run_id"]
    dataset = next(r for r in records if r["run_id"] == run_id and r["kind"] == "dataset")
    good = next(r for r in records if r["run_id"] == runs.good_run and r["kind"] == "dataset")
    assert dataset["data"]["digest"] == good["data"]["digest"]  # same rows, same sorted bytes
    equity = runs.out / run_id / "equity.arrow"
    assert equity.read_bytes() == (runs.good_dir / "equity.arrow").read_bytes()
    runs.assert_good_run_untouched()


def test_a_file_above_the_batch_threshold_is_ingested_in_batches(runs, capsys, monkeypatch):
    """A file "larger than memory" takes the batched path: converted and validated in batches
    of ``batch_rows`` (here 97 rows for a 900-row file), never loaded whole, and it stores the
    same dataset as the in-memory path."""
    calls: list[int] = []
    batched = batched_mod.ingest_batched

    def spy(*args, **kwargs):
        calls.append(1)
        return batched(*args, **kwargs)

    monkeypatch.setattr(batched_mod, "ingest_batched", spy)
    monkeypatch.setattr(
        qpipe.runs.ingest,
        "ingest_prices",
        functools.partial(qpipe.ingest.ingest_prices, batch_rows=97),
    )
    path = runs.inputs / "big.parquet"
    runs.prices.sample(fraction=1.0, shuffle=True, seed=5).write_parquet(path, row_group_size=50)
    assert runner_main(["--data", str(path), "--out", str(runs.out), *FAST]) == 0
    capsys.readouterr()
    assert calls, "the batched path was not taken"
    records = ledger_records(runs.out)
    run_id = records[-1]["run_id"]
    dataset = next(r for r in records if r["run_id"] == run_id and r["kind"] == "dataset")
    good = next(r for r in records if r["run_id"] == runs.good_run and r["kind"] == "dataset")
    assert dataset["data"]["digest"] == good["data"]["digest"]


def test_a_bad_row_in_a_late_batch_fails_with_the_row(runs, capsys, monkeypatch):
    monkeypatch.setattr(
        qpipe.runs.ingest,
        "ingest_prices",
        functools.partial(qpipe.ingest.ingest_prices, batch_rows=97),
    )
    bad = (
        runs.prices.with_row_index()
        .with_columns(
            pl.when(pl.col("index") == 800).then(-1.0).otherwise(pl.col("close")).alias("close")
        )
        .drop("index")
    )
    path = runs.inputs / "big-bad.csv"
    bad.write_csv(path)
    err, _ = runs.fail(["--data", str(path), *FAST], capsys)
    assert_mentions(err, "big-bad.csv", "`close`")


# ------------------------------------------------------------------------- weights files


def _weights(runs: Runs, name: str, rows: list[tuple[dt.date, str, float]]) -> Path:
    frame = pl.DataFrame(
        {
            "date": [r[0] for r in rows],
            "symbol": [r[1] for r in rows],
            "weight": [r[2] for r in rows],
        },
        schema={"date": pl.Date, "symbol": pl.String, "weight": pl.Float64},
    )
    path = runs.inputs / name
    frame.write_csv(path)
    return path


def _weights_cases(prices: pl.DataFrame) -> dict[str, tuple[list, tuple[str, ...]]]:
    dates = prices["date"].unique().sort()
    d = dates[60]
    saturday = next(
        dates[0] + dt.timedelta(days=k)
        for k in range(7)
        if (dates[0] + dt.timedelta(days=k)).weekday() == 5
    )
    late = prices.filter(pl.col("symbol") == "S01")["date"].min()  # S01 lists late
    return {
        "unknown-symbol": ([(d, "ZZZ", 0.1)], ("unknown_symbol", "`ZZZ`")),
        "date-without-prices": ([(saturday, "S00", 0.1)], ("price_date", saturday.isoformat())),
        "nan-weight": ([(d, "S00", float("nan"))], ("finite", "`S00`")),
        "inf-weight": ([(d, "S00", float("inf"))], ("finite", "`S00`")),
        "duplicate": ([(d, "S00", 0.05), (d, "S00", 0.05)], ("duplicate", "`S00`")),
        "gross-above-limit": (
            [(d, f"S{i:02d}", 0.2) for i in range(6)],  # gross 1.2
            ("gross_leverage", "`allocation.gross_leverage`"),
        ),
        "before-first-price-date": (
            [(dates[0] - dt.timedelta(days=1), "S00", 0.1)],
            ("price_date", (dates[0] - dt.timedelta(days=1)).isoformat()),
        ),
        "before-symbols-first-price": (
            [(dates[1], "S01", 0.1)] if dates[1] < late else [],
            ("before_first_price", "`S01`"),
        ),
    }


WEIGHT_CASES = list(_weights_cases(random_walk_prices()))


@pytest.mark.parametrize("case", WEIGHT_CASES)
def test_bad_weights_file(runs, capsys, case):
    rows, fragments = _weights_cases(runs.prices)[case]
    path = _weights(runs, f"w-{case}.csv", rows)
    argv = ["--data", str(runs.prices_csv), "--weights", str(path), *FAST]
    if case == "gross-above-limit":
        argv += ["--set", "allocation.max_weight=0.5"]  # only the gross limit is broken
    err, last = runs.fail(argv, capsys)
    assert_mentions(err, f"w-{case}.csv", *fragments)
    assert last["data"]["error"] == "AllocationAuditError"


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        ("date,symbol\n2020-01-02,S00\n", ("`weight`",)),
        ("date,symbol,weight\n2020-01-02,S00,lots\n", ("`weight`", "lots")),
        ("", ("empty",)),
    ],
    ids=["missing-column", "weight-as-string", "empty-file"],
)
def test_unreadable_weights_file(runs, capsys, content, fragments):
    path = runs.file(f"w-{fragments[0].strip('`')}-{len(content)}.csv", content)
    err, _ = runs.fail(["--data", str(runs.prices_csv), "--weights", str(path), *FAST], capsys)
    assert_mentions(err, path.name, *fragments)


# ------------------------------------------------------------------------- config


CONFIG_CASES: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "unknown-key": (["--set", "backtest.cost_bsp=5"], ("did you mean `backtest.cost_bps`",)),
    "unknown-section": (["--set", "backtset.cost_bps=5"], ("did you mean `backtest`",)),
    "wrong-type": (["--set", 'backtest.cost_bps="ten"'], ("`backtest.cost_bps`", "float")),
    "negative-cost": (["--set", "backtest.cost_bps=-1"], ("`backtest.cost_bps`", ">= 0")),
    "zero-lookback": (
        ["--set", "strategy.lookback=0", "--set", "strategy.skip=0"],
        ("`strategy.lookback`", ">= 1"),
    ),
    "bad-choice": (["--set", "allocation.scheme=top_m"], ("`allocation.scheme`", "top_n")),
    "malformed-set-no-equals": (["--set", "backtest"], ("`backtest`", "section.key=value")),
    "malformed-set-no-key": (["--set", "=5"], ("`=5`", "section.key=value")),
    "malformed-set-three-parts": (["--set", "a.b.c=1"], ("`a.b.c=1`", "section.key=value")),
}
# a sweep is one unit in the ledger: a bad grid is a `sweep_failed` record, not a run
SWEEP_CASES: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "malformed-sweep": (
        ["--sweep", "strategy.lookback"],
        ("--sweep strategy.lookback", "malformed"),
    ),
    "sweep-unknown-key": (["--sweep", "strategy.lookbak=5,10"], ("did you mean",)),
    "sweep-duplicate": (["--sweep", "strategy.lookback=5,10,5"], ("twice",)),
    "sweep-wrong-type": (["--sweep", "allocation.top_n=3,x"], ("`allocation.top_n`", "int")),
    "sweep-too-large": (
        ["--sweep", "strategy.lookback=5,10,15", "--max-trials", "2"],
        ("3 trials", "--max-trials"),
    ),
}


@pytest.mark.parametrize("case", SWEEP_CASES)
def test_bad_sweep_grid(runs, capsys, case):
    argv, fragments = SWEEP_CASES[case]
    err, last = runs.fail([*argv, "--no-report"], capsys)
    assert_mentions(err, *fragments)
    assert last["kind"] == "sweep_failed"
    assert last["data"] == {
        "error": "ConfigError",
        "message": last["data"]["message"],
        "phase": "config",
    }
    assert not (runs.out / "sweeps").exists()  # refused before any work


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_bad_config_override(runs, capsys, case):
    argv, fragments = CONFIG_CASES[case]
    err, last = runs.fail([*argv, "--no-report"], capsys)
    assert_mentions(err, *fragments)
    assert last["data"] == {
        "error": "ConfigError",
        "message": last["data"]["message"],
        "phase": "config",
    }
    started = [r for r in ledger_records(runs.out) if r["run_id"] == last["run_id"]]
    assert [r["kind"] for r in started] == ["run_started", "run_failed"]
    assert started[0]["data"]["config"] is None


def test_missing_config_file(runs, capsys):
    err, _ = runs.fail(["--config", str(runs.inputs / "nope.toml")], capsys)
    assert_mentions(err, "nope.toml", "does not exist")


def test_invalid_toml_names_line_and_column(runs, capsys):
    path = runs.file("broken.toml", "[backtest]\ncost_bps = 5\nslippage_bps = = 1\n")
    err, _ = runs.fail(["--config", str(path)], capsys)
    assert_mentions(err, "broken.toml", "line 3", "column")


def test_wrong_key_in_a_config_file_names_the_file_and_suggests(runs, capsys):
    path = runs.file("typo.toml", '[strategy]\nlookbak = 20\n[run]\nout = "elsewhere"\n')
    err, _ = runs.fail(["--config", str(path)], capsys)
    assert_mentions(err, "typo.toml", "did you mean `strategy.lookback`")


def test_config_error_is_recorded_in_the_ledger_the_config_names(tmp_path, capsys):
    """A good config file with a bad ``--set``: the failure goes to the config's ledger."""
    ledger = tmp_path / "elsewhere" / "book.jsonl"
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f'[run]\nledger = "{ledger}"\nout = "{tmp_path / "runs"}"\n')
    assert runner_main(["--config", str(cfg), "--set", "strategy.kind=momentun"]) == 1
    assert "`strategy.kind`" in capsys.readouterr().err
    lines = ledger.read_text().splitlines()
    assert [json.loads(line)["kind"] for line in lines[-2:]] == ["run_failed", "checkpoint"]
    assert main(["ledger", "verify", str(ledger)]) == 0


def test_top_n_larger_than_the_universe_of_a_file(runs, capsys):
    err, last = runs.fail(
        ["--data", str(runs.prices_csv), *FAST, "--set", "allocation.top_n=9"], capsys
    )
    assert_mentions(err, "`allocation.top_n` (9)", "prices.csv", "8 symbols", "at most 8")
    assert last["data"]["error"] == "ConfigError"


def test_top_n_larger_than_the_builtin_universe(runs, capsys):
    err, _ = runs.fail([*SMALL_BUILTIN, "--set", "allocation.top_n=21"], capsys)
    assert_mentions(err, "`allocation.top_n` (21)", "20 symbols")


# ------------------------------------------------------------------------- afterwards


def test_zz_the_ledger_verifies_and_lists_every_failure(runs, capsys):
    """Runs last in this module: after the whole catalogue the chain is intact."""
    assert main(["ledger", "verify", "--out", str(runs.out)]) == 0
    assert main(["ledger", "show", "--out", str(runs.out)]) == 0
    shown = capsys.readouterr().out
    assert "failed" in shown and runs.good_run in shown
    runs.assert_good_run_untouched()
