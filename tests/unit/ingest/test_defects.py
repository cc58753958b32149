"""Regression tests for the ingestion defects of issue 15 (1, 6, 7, 11) and issue 10 §10.

Each test reproduces the defect as it was found: a duplicate header silently dropped a column, a
user column named like an internal one crashed with ``DuplicateError``, a FIFO or device blocked
forever, and an allocation failure was reported as a corrupt file.
"""

from __future__ import annotations

import datetime as dt
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest

from qpipe.errors import (
    DataFormatError,
    OutOfMemoryError,
    SchemaFailure,
    SchemaValidationError,
)
from qpipe.ingest import ingest_frame, ingest_prices, ingest_weights
from qpipe.store import ArrowStore
from qpipe.validation.schema import validate_prices
from tests.conftest import REPO

TODAY = dt.date(2030, 1, 1)


@pytest.fixture
def store(tmp_path: Path) -> ArrowStore:
    return ArrowStore(tmp_path / "store")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------- defect 1: duplicate header


@pytest.mark.parametrize(
    "header",
    ["date,symbol,close,close", "date,symbol,close, close", "date,date,symbol,close"],
)
def test_an_exact_duplicate_column_header_is_refused(tmp_path, store, header):
    path = write(tmp_path, "dup.csv", f"{header}\n" + "2020-01-02,A,1,2\n")
    name = header.split(",")[1 if header.startswith("date,date") else 2].strip()
    with pytest.raises(DataFormatError, match=f"two columns named `{name}`") as exc:
        ingest_prices(path, store, today=TODAY)
    assert "dup.csv" in str(exc.value)
    assert not store.entries()


def test_a_duplicate_header_is_refused_on_the_batched_path_too(tmp_path, store):
    rows = "".join(f"2020-01-{d:02d},A,{d},{d}\n" for d in range(1, 29))
    path = write(tmp_path, "dup.csv", "date,symbol,close,close\n" + rows)
    with pytest.raises(DataFormatError, match="two columns named `close`"):
        ingest_prices(path, store, today=TODAY, batch_rows=5)


def test_a_duplicate_weights_header_is_refused(tmp_path, store):
    path = write(tmp_path, "w.csv", "date,symbol,weight,weight\n2020-01-02,A,0.1,0.2\n")
    with pytest.raises(DataFormatError, match="two columns named `weight`"):
        ingest_weights(path, store)


def test_case_duplicates_keep_their_own_message(tmp_path, store):
    path = write(tmp_path, "dup.csv", "date,symbol,close,Close\n2020-01-02,A,1,2\n")
    with pytest.raises(DataFormatError, match="once case and spaces are ignored"):
        ingest_prices(path, store, today=TODAY)


# ----------------------------------------------------- defect 6: internal column names

RESERVED = ["row", "__qpipe_row", "failed_check", "__qpipe_key", "__bad_close"]


@pytest.mark.parametrize("column", RESERVED)
@pytest.mark.parametrize("batch_rows", [1_000_000, 3], ids=["in-memory", "batched"])
def test_a_user_column_named_like_an_internal_one_is_kept_and_quarantined(
    tmp_path, store, column, batch_rows
):
    text = (
        f"date,symbol,close,{column}\n"
        "2020-01-03,B,2.0,u1\n2020-01-02,A,-1.0,u2\n2020-01-03,A,1.5,u3\n"
        "2020-01-02,B,2.0,u4\n2020-01-06,A,abc,u5\n"
    ).replace("abc", "1.6")
    path = write(tmp_path, "p.csv", text)
    quarantine = tmp_path / "q"
    with pytest.raises(SchemaValidationError, match=r"`close` finite and > 0 \(1 row") as exc:
        ingest_prices(path, store, quarantine_dir=quarantine, today=TODAY, batch_rows=batch_rows)
    assert "row 2" in str(exc.value)  # the source row, not the user's column
    q = pl.read_ipc(quarantine / "p.quarantine.arrow")
    assert q.height == 1
    assert q[column].to_list() == ["u2"]  # the user's own column, untouched
    row_col = "row" if column != "row" else "row_1"
    check_col = "failed_check" if column != "failed_check" else "failed_check_1"
    assert q[row_col].to_list() == [2]
    assert q[check_col].to_list() == ["`close` finite and > 0"]


@pytest.mark.parametrize("column", RESERVED)
def test_a_user_column_named_like_an_internal_one_survives_a_good_ingestion(
    tmp_path, store, column
):
    frame = pl.DataFrame(
        {
            "date": [dt.date(2020, 1, 3), dt.date(2020, 1, 2)],
            "symbol": ["A", "A"],
            "close": [1.0, 2.0],
            column: ["x", "y"],
        }
    )
    stored = store.open(ingest_frame(frame, store, today=TODAY).ref)
    assert stored.columns == frame.columns
    assert stored[column].to_list() == ["y", "x"]  # sorted by date, values carried along


def test_a_bad_type_with_a_user_row_column_names_the_source_row(tmp_path, store):
    path = write(tmp_path, "p.csv", "row,date,symbol,close\n7,2020-01-02,A,abc\n")
    with pytest.raises(SchemaValidationError, match="'abc' on row 1"):
        ingest_prices(path, store, today=TODAY)


# ------------------------------------------------------ defect 7: FIFOs and devices


def test_a_fifo_is_refused_before_it_is_opened(tmp_path, store):
    fifo = tmp_path / "prices.csv"
    os.mkfifo(fifo)  # nobody writes: opening it for reading would block forever
    with pytest.raises(DataFormatError, match=r"is a FIFO \(named pipe\), not a regular file"):
        ingest_prices(fifo, store)
    with pytest.raises(DataFormatError, match="FIFO"):
        ingest_weights(fifo, store)


def test_file_digest_refuses_a_fifo_and_a_device(tmp_path):
    from qpipe.ingest import file_digest

    fifo = tmp_path / "p.csv"
    os.mkfifo(fifo)
    with pytest.raises(DataFormatError, match="FIFO"):
        file_digest(fifo)
    with pytest.raises(DataFormatError, match="character device"):
        file_digest("/dev/zero")  # never ends


def test_a_character_device_is_refused(store):
    with pytest.raises(DataFormatError, match="`/dev/zero` is a character device"):
        ingest_prices("/dev/zero", store)


def test_a_directory_is_refused(tmp_path, store):
    folder = tmp_path / "prices.csv"
    folder.mkdir()
    with pytest.raises(DataFormatError, match="is a directory"):
        ingest_prices(folder, store)


def test_the_low_level_digest_refuses_a_fifo_without_blocking(tmp_path):
    """Even when the check before it is raced, ``_fs.file_digest`` opens non-blocking."""
    from qpipe import _fs

    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="FIFO"):
        _fs.file_digest(fifo)


def test_a_config_that_is_a_fifo_or_device_is_refused(tmp_path):
    from qpipe.config import ThreadSafeConfig
    from qpipe.errors import ConfigError

    fifo = tmp_path / "c.toml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=r"config file `.*c\.toml` is a FIFO"):
        ThreadSafeConfig.from_toml(fifo)
    with pytest.raises(ConfigError, match="character device"):
        ThreadSafeConfig.from_toml("/dev/zero")


# ---------------------------------------------------- defect 11: out of memory

_UNDER_LIMIT = """
import os, resource, sys
sys.path.insert(0, {repo!r})
from qpipe.errors import QpipeError

def vm_bytes():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024

def run(fn):
    # Like `prlimit --as`: the address space may grow by 32 MiB, less than the file needs.
    limit = vm_bytes() + (32 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        fn()
    except QpipeError as exc:
        print(type(exc).__name__ + ": " + str(exc))
    else:
        print("no error")
"""


def _under_memory_limit(tmp_path: Path, body: str) -> str:
    frame = pl.DataFrame(
        {
            "date": [dt.date(2020, 1, 2)] * 2_000_000,
            "symbol": [f"S{i}" for i in range(2_000_000)],
            "close": [1.0] * 2_000_000,
        }
    )
    big = tmp_path / "big.arrow"
    frame.write_ipc(big, compression="uncompressed")  # ~60 MiB to map
    script = _UNDER_LIMIT.format(repo=str(REPO)) + textwrap.dedent(body)
    done = subprocess.run(
        [sys.executable, "-c", script, str(big), str(tmp_path / "store")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "POLARS_MAX_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_mapping_a_file_beyond_the_memory_limit_says_out_of_memory(tmp_path):
    out = _under_memory_limit(
        tmp_path,
        """
        from qpipe.store.arrow import open_ipc
        run(lambda: open_ipc(sys.argv[1]))
        """,
    )
    assert out.startswith("OutOfMemoryError: out of memory mapping `"), out
    assert "big.arrow" in out and "MiB of address space" in out
    assert "not a readable Arrow IPC file" not in out and "\n" not in out


def test_ingesting_a_file_beyond_the_memory_limit_says_out_of_memory(tmp_path):
    out = _under_memory_limit(
        tmp_path,
        """
        from qpipe.ingest import ingest_prices
        from qpipe.store import ArrowStore
        store = ArrowStore(sys.argv[2])
        run(lambda: ingest_prices(sys.argv[1], store))
        """,
    )
    # Hashing (a 16 MiB buffer) or reading (the file's size) fails first, by the headroom left.
    assert out.startswith("OutOfMemoryError: out of memory "), out
    assert "big.arrow" in out and "MiB" in out and "\n" not in out


def test_out_of_memory_is_a_memory_error_and_a_qpipe_error():
    assert issubclass(OutOfMemoryError, MemoryError)


# ------------------------------------------------ issue 10 §10: typed failure records

FAILING = {
    "missing-column": "date,symbol\n2020-01-02,A\n",
    "bad-types": "date,symbol,close,volume\n2020/01/02,A,x,lots\n",
    "bad-rows": "date,symbol,close\n2020-01-02,A,-1\n2020-01-02,A,2\n2020-01-03,,3\n",
}


@pytest.mark.parametrize("case", FAILING)
def test_failures_are_always_typed_records(tmp_path, store, case):
    path = write(tmp_path, f"{case}.csv", FAILING[case])
    with pytest.raises(SchemaValidationError) as exc:
        ingest_prices(path, store, today=TODAY, quarantine_dir=tmp_path)
    failures = exc.value.failures
    assert failures and all(isinstance(f, SchemaFailure) for f in failures)
    kinds = {f.kind for f in failures}
    assert kinds == {"missing-column": {"column"}, "bad-types": {"type"}, "bad-rows": {"row"}}[case]
    again = pickle.loads(pickle.dumps(exc.value))
    assert again.failures == failures
    for f in failures:
        assert f.to_json()["check"] == f.check and f.describe() in str(exc.value)


def test_row_failures_name_their_column_and_uniqueness_names_none(tmp_path, store):
    path = write(tmp_path, "p.csv", FAILING["bad-rows"])
    with pytest.raises(SchemaValidationError) as exc:
        ingest_prices(path, store, today=TODAY)
    by_check = {f.check: f for f in exc.value.failures}
    assert by_check["`close` finite and > 0"].column == "close"
    assert by_check["`symbol` not null"].column == "symbol"
    assert by_check["(date, symbol) unique"].column is None
    assert by_check["(date, symbol) unique"].count == 1


def test_a_wrong_dtype_found_by_pandera_is_a_column_failure():
    frame = pl.DataFrame({"date": ["2020-01-02"], "symbol": ["A"], "close": [1.0]})
    with pytest.raises(SchemaValidationError) as exc:
        validate_prices(frame, today=TODAY)
    (failure,) = exc.value.failures
    assert failure.kind == "column" and failure.column == "date"


def test_step_output_failures_are_typed_records_grouped_by_check():
    from types import SimpleNamespace

    from qpipe.validation.steps import check_step_output

    broken = SimpleNamespace(name="broken")  # only its name is used in the message
    frame = pl.DataFrame(
        {
            "date": [dt.date(2020, 1, 2)] * 3,
            "symbol": ["A", "B", "C"],
            "weight": [float("nan"), float("inf"), 0.1],
        }
    )
    with pytest.raises(SchemaValidationError) as exc:
        check_step_output(broken, "weights", frame)
    assert all(isinstance(f, SchemaFailure) for f in exc.value.failures)
    weight = [f for f in exc.value.failures if f.column == "weight"]
    assert weight and sum(f.count for f in weight) >= 2


def test_a_schema_validation_error_refuses_untyped_failures():
    with pytest.raises(TypeError, match="SchemaFailure"):
        SchemaValidationError("x", ("a string",))  # type: ignore[arg-type]
