"""Reading a membership file (symbol, from, to): good files stored sorted; every bad row at once."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import polars as pl
import pytest

from qpipe.errors import DataFormatError, SchemaValidationError
from qpipe.ingest.membership import ingest_membership
from qpipe.store import ArrowStore
from tests.conftest import REPO

D = dt.date


@pytest.fixture
def store(tmp_path: Path) -> ArrowStore:
    return ArrowStore(tmp_path / "store")


def test_the_example_membership_file(store):
    res = ingest_membership(REPO / "examples" / "membership.csv", store)
    frame = store.open(res.ref)
    assert frame.columns == ["symbol", "from", "to"]
    assert frame.schema["from"] == pl.Date and frame.schema["to"] == pl.Date
    flux = frame.filter(pl.col("symbol") == "FLUX").rows()
    assert flux == [("FLUX", D(2022, 1, 1), D(2022, 9, 30)), ("FLUX", D(2023, 4, 3), None)]
    assert (res.rows, res.symbols) == (12, 11) and res.validated  # LUXE is never a member


def test_aliases_spaces_and_case(tmp_path, store):
    path = tmp_path / "m.csv"
    path.write_text(" Ticker ,START,End\nB, 2020-01-02 ,\nA,2020-01-01,2020-06-30\n")
    frame = store.open(ingest_membership(path, store).ref)
    assert frame.rows() == [("A", D(2020, 1, 1), D(2020, 6, 30)), ("B", D(2020, 1, 2), None)]


def test_every_bad_row_is_reported_and_quarantined(tmp_path, store):
    path = tmp_path / "m.csv"
    path.write_text(
        "symbol,from,to\nA,2020-01-01,\n,2020-01-01,\nB,01/02/2020,\nC,2020-01-05,2020-01-01\n"
        "D,2020-01-01,soon\n"
    )
    with pytest.raises(SchemaValidationError) as exc:
        ingest_membership(path, store, quarantine_dir=tmp_path / "q")
    text = str(exc.value)
    assert "\n" not in text and "failed 4 checks" in text
    by_check = {f.check: f for f in exc.value.failures}
    assert (
        by_check["`from` an ISO date"].count == 1
        and "(row 3)" in by_check["`from` an ISO date"].examples[0]
    )
    assert by_check["`to` not before `from`"].column == "to"
    q = pl.read_ipc(tmp_path / "q" / "m.quarantine.arrow")
    assert sorted(q["row"].to_list()) == [2, 3, 4, 5]
    assert not store.entries()


def test_missing_columns(tmp_path, store):
    path = tmp_path / "m.csv"
    path.write_text("symbol,from\nA,2020-01-01\n")
    with pytest.raises(SchemaValidationError, match="missing `to`"):
        ingest_membership(path, store)


def test_a_fifo_is_refused(tmp_path, store):
    fifo = tmp_path / "m.csv"
    os.mkfifo(fifo)
    with pytest.raises(DataFormatError, match="FIFO"):
        ingest_membership(fifo, store)
