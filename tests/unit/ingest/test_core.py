"""Tier 1 ingestion: every bad input gets a clear, typed error; good input is stored sorted."""

from __future__ import annotations

import datetime as dt
import pickle
from pathlib import Path

import polars as pl
import pytest

from qpipe.data import builtin_universe
from qpipe.errors import DataFormatError, QpipeError, SchemaFailure, SchemaValidationError
from qpipe.ingest import (
    IngestResult,
    file_digest,
    ingest_frame,
    ingest_prices,
    ingest_weights,
)
from qpipe.store import ArrowStore
from qpipe.validation.schema import price_schema, validate_prices

TODAY = dt.date(2030, 1, 1)
GOOD_CSV = "date,symbol,close\n2020-01-02,AAA,10.0\n2020-01-03,AAA,10.5\n2020-01-02,BBB,20.0\n"


@pytest.fixture
def store(tmp_path: Path) -> ArrowStore:
    return ArrowStore(tmp_path / "store")


@pytest.fixture
def small() -> pl.DataFrame:
    return builtin_universe(symbols=4, start="2020-01-01", end="2020-02-29", seed=3)


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def ingest(path: Path, store: ArrowStore, **kw) -> IngestResult:
    kw.setdefault("today", TODAY)
    kw.setdefault("quarantine_dir", path.parent / "quarantine")
    return ingest_prices(path, store, **kw)


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


# ------------------------------------------------------------------------------- good input


def test_csv_is_stored_sorted_with_contract_types(tmp_path, store):
    path = write(tmp_path, "p.csv", GOOD_CSV)
    result = ingest(path, store)
    stored = store.open(result.ref)
    assert stored.schema == pl.Schema({"date": pl.Date, "symbol": pl.String, "close": pl.Float64})
    assert stored.equals(stored.sort("symbol", "date"))
    assert (result.rows, result.symbols, result.validated) == (3, 2, True)
    assert result.source == str(path)
    assert result.source_digest == file_digest(path)
    assert result.quarantine is None


def test_unsorted_rows_are_accepted_and_sorted(tmp_path, store, small):
    shuffled = small.sample(fraction=1.0, shuffle=True, seed=11)
    assert not shuffled.equals(small)
    path = tmp_path / "shuffled.csv"
    shuffled.write_csv(path)
    stored = store.open(ingest(path, store).ref)
    assert stored.equals(small)


def test_column_names_are_case_insensitive_and_trimmed(tmp_path, store):
    path = write(tmp_path, "p.csv", " Date ,SYMBOL, Close\n2020-01-02,AAA,10\n")
    stored = store.open(ingest(path, store).ref)
    assert stored.columns == ["date", "symbol", "close"]


@pytest.mark.parametrize("ext", [".csv", ".parquet", ".pq", ".arrow", ".ipc", ".feather"])
def test_round_trip_every_format_gives_the_same_dataset(tmp_path, store, small, ext):
    path = tmp_path / f"prices{ext}"
    if ext == ".csv":
        small.write_csv(path)
    elif ext in (".parquet", ".pq"):
        small.write_parquet(path)
    else:
        small.write_ipc(path)
    result = ingest(path, store)
    assert store.open(result.ref).equals(small)
    assert result.ref.digest == ingest_frame(small, store, today=TODAY).ref.digest


def test_integer_volume_stays_int64_and_datetime_dates_become_dates(tmp_path, store):
    frame = pl.DataFrame(
        {
            "Date": [dt.datetime(2020, 1, 2), dt.datetime(2020, 1, 3)],
            "Symbol": pl.Series(["AAA", "AAA"], dtype=pl.Categorical),
            "Close": [1, 2],
            "Volume": [100, 200],
        }
    )
    path = tmp_path / "p.parquet"
    frame.write_parquet(path)
    stored = store.open(ingest(path, store).ref)
    assert stored.schema == pl.Schema(
        {"date": pl.Date, "symbol": pl.String, "close": pl.Float64, "volume": pl.Int64}
    )


def test_validate_false_skips_checks_but_still_sorts(tmp_path, store):
    path = write(tmp_path, "p.csv", "date,symbol,close\n2020-01-03,AAA,-1\n2020-01-02,AAA,1\n")
    result = ingest(path, store, validate=False)
    assert not result.validated
    assert store.open(result.ref)["close"].to_list() == [1.0, -1.0]


def test_extra_columns_are_kept(tmp_path, store):
    path = write(tmp_path, "p.csv", "date,symbol,close,Sector\n2020-01-02,AAA,1,tech\n")
    assert "sector" in store.open(ingest(path, store).ref).columns


# ------------------------------------------------------------------------- bad input: files


def test_missing_file(tmp_path, store):
    with pytest.raises(DataFormatError, match=r"`.*nope\.csv` does not exist") as exc:
        ingest(tmp_path / "nope.csv", store)
    one_line(exc)


def test_empty_file(tmp_path, store):
    path = write(tmp_path, "empty.csv", "")
    with pytest.raises(DataFormatError, match=r"`.*empty\.csv` is empty"):
        ingest(path, store)


@pytest.mark.parametrize("name", ["header.csv", "header.parquet", "header.arrow"])
def test_header_only_file(tmp_path, store, name):
    path = tmp_path / name
    empty = pl.DataFrame(schema={"date": pl.Date, "symbol": pl.String, "close": pl.Float64})
    if name.endswith(".csv"):
        path.write_text("date,symbol,close\n")
    elif name.endswith(".parquet"):
        empty.write_parquet(path)
    else:
        empty.write_ipc(path)
    with pytest.raises(DataFormatError, match=rf"`.*{name}` has a header but no rows"):
        ingest(path, store)


@pytest.mark.parametrize("ext", [".parquet", ".arrow"])
def test_truncated_binary_file(tmp_path, store, small, ext):
    good = tmp_path / f"good{ext}"
    small.write_parquet(good) if ext == ".parquet" else small.write_ipc(good)
    data = good.read_bytes()
    path = write(tmp_path, f"cut{ext}", data[: len(data) // 2])
    with pytest.raises(DataFormatError, match=rf"`.*cut{ext}` is truncated or corrupt"):
        ingest(path, store)


@pytest.mark.parametrize("ext", [".parquet", ".arrow"])
def test_corrupt_binary_file_with_intact_magic(tmp_path, store, small, ext):
    good = tmp_path / f"good{ext}"
    small.write_parquet(good) if ext == ".parquet" else small.write_ipc(good)
    data = bytearray(good.read_bytes())
    middle = slice(8, len(data) - 8)
    data[middle] = bytes(len(data) - 16)  # zero everything between the magic bytes
    path = write(tmp_path, f"zeroed{ext}", bytes(data))
    with pytest.raises(DataFormatError, match=rf"`.*zeroed{ext}`"):
        ingest(path, store)


@pytest.mark.parametrize(
    ("name", "writer", "says"),
    [
        ("really_parquet.csv", "parquet", "is a Parquet file, not CSV"),
        ("really_arrow.parquet", "ipc", "is a Arrow IPC file, not Parquet"),
        ("really_csv.arrow", "csv", "is a CSV file, not Arrow IPC"),
    ],
)
def test_file_that_is_not_what_its_extension_says(tmp_path, store, small, name, writer, says):
    path = tmp_path / name
    getattr(small, f"write_{writer}")(path)
    with pytest.raises(DataFormatError, match=says) as exc:
        ingest(path, store)
    assert name in one_line(exc)


def test_unsupported_extension(tmp_path, store):
    path = write(tmp_path, "prices.xlsx", GOOD_CSV)
    with pytest.raises(DataFormatError, match=r"unsupported extension `\.xlsx`"):
        ingest(path, store)


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_wrong_delimiter(tmp_path, store, sep):
    path = write(tmp_path, "semi.csv", GOOD_CSV.replace(",", sep))
    with pytest.raises(DataFormatError, match="wrong delimiter") as exc:
        ingest(path, store)
    assert "semi.csv" in one_line(exc)


def test_non_utf8_encoding(tmp_path, store):
    path = write(
        tmp_path, "latin1.csv", "date,symbol,close\n2020-01-02,SOCIÉTÉ,1\n".encode("latin-1")
    )
    with pytest.raises(DataFormatError, match=r"`.*latin1\.csv` is not UTF-8"):
        ingest(path, store)


def test_ragged_csv(tmp_path, store):
    path = write(tmp_path, "ragged.csv", "date,symbol,close\n2020-01-02,AAA,1,9,9\n")
    with pytest.raises(DataFormatError, match=r"cannot read prices file `.*ragged\.csv` as CSV"):
        ingest(path, store)


# ---------------------------------------------------------------------- bad input: columns


def test_missing_and_misnamed_columns_suggest_close_matches(tmp_path, store):
    path = write(tmp_path, "p.csv", "date,ticker,px_close\n2020-01-02,AAA,1\n")
    with pytest.raises(SchemaValidationError) as exc:
        ingest(path, store)
    text = one_line(exc)
    assert "p.csv" in text
    assert "missing columns `symbol`" in text and "`close` (did you mean `px_close`?)" in text
    assert "found `date`, `ticker`, `px_close`" in text


def test_columns_equal_up_to_case_are_ambiguous(tmp_path, store):
    path = write(tmp_path, "p.csv", "date,symbol,close,Close\n2020-01-02,AAA,1,2\n")
    with pytest.raises(DataFormatError, match="two columns named `close`"):
        ingest(path, store)


# ------------------------------------------------------------------------ bad input: types


def test_prices_as_unparseable_strings(tmp_path, store):
    path = write(tmp_path, "p.csv", "date,symbol,close\n2020-01-02,AAA,abc\n2020-01-03,AAA,1,5\n")
    path = write(tmp_path, "p.csv", 'date,symbol,close\n2020-01-02,AAA,abc\n2020-01-03,AAA,"1,5"\n')
    with pytest.raises(SchemaValidationError) as exc:
        ingest(path, store)
    text = one_line(exc)
    assert "p.csv" in text and "`close` has 2 values that are not numbers" in text
    assert "'abc' on row 1" in text


@pytest.mark.parametrize(
    ("value", "bad"),
    [("02/01/2020", "'02/01/2020'"), ("20200102", "'20200102'"), ("2020-1-2", "'2020-1-2'")],
)
def test_dates_not_iso_in_csv(tmp_path, store, value, bad):
    path = write(tmp_path, "p.csv", f"date,symbol,close\n2020-01-03,AAA,1\n{value},AAA,1\n")
    with pytest.raises(SchemaValidationError) as exc:
        ingest(path, store)
    text = one_line(exc)
    assert "`date` has 1 value that is not an ISO date YYYY-MM-DD" in text
    assert f"{bad} on row 2" in text


def test_dates_as_numbers_in_parquet(tmp_path, store):
    path = tmp_path / "p.parquet"
    pl.DataFrame({"date": [20200102], "symbol": ["AAA"], "close": [1.0]}).write_parquet(path)
    with pytest.raises(SchemaValidationError, match=r"`date` is numeric \(Int64\)"):
        ingest(path, store)


def test_datetimes_with_a_time_of_day_are_rejected(tmp_path, store):
    path = tmp_path / "p.parquet"
    frame = {"date": [dt.datetime(2020, 1, 2, 15, 30)], "symbol": ["AAA"], "close": [1.0]}
    pl.DataFrame(frame).write_parquet(path)
    with pytest.raises(SchemaValidationError, match="`date` has 1 value with a time of day"):
        ingest(path, store)


def test_every_bad_column_is_reported_at_once(tmp_path, store):
    path = write(tmp_path, "p.csv", "date,symbol,close,volume\n2020/01/02,AAA,x,lots\n")
    with pytest.raises(SchemaValidationError) as exc:
        ingest(path, store)
    assert [f.column for f in exc.value.failures] == ["date", "close", "volume"]
    assert {f.kind for f in exc.value.failures} == {"type"}


# ---------------------------------------------------------------------- bad input: values


BAD_VALUES = """date,symbol,close
2020-01-02,AAA,-1.0
2020-01-03,AAA,0
2020-01-06,AAA,nan
2020-01-07,AAA,inf
2020-01-08,AAA,-inf
2020-01-09,AAA,5.0
"""


def test_nan_inf_zero_and_negative_prices(tmp_path, store):
    path = write(tmp_path, "p.csv", BAD_VALUES)
    with pytest.raises(SchemaValidationError) as exc:
        ingest(path, store)
    text = one_line(exc)
    assert "prices `" in text and "p.csv` failed 1 check" in text
    assert "`close` finite and > 0 (5 rows, e.g. 2020-01-02 AAA close=-1.0 (row 1)" in text
    (failure,) = exc.value.failures
    assert failure == SchemaFailure("`close` finite and > 0", "close", 5, failure.examples, "row")


def test_duplicate_date_symbol(tmp_path, store):
    path = write(tmp_path, "p.csv", GOOD_CSV + "2020-01-03,AAA,10.5\n2020-01-03,AAA,11\n")
    with pytest.raises(SchemaValidationError) as exc:
        ingest(path, store)
    text = one_line(exc)
    assert "(date, symbol) unique (2 duplicates, e.g. 2020-01-03 AAA)" in text


def test_null_and_empty_symbols(tmp_path, store):
    path = write(tmp_path, "p.csv", 'date,symbol,close\n2020-01-02,,1\n2020-01-02," ",1\n')
    with pytest.raises(SchemaValidationError) as exc:
        ingest(path, store)
    text = one_line(exc)
    assert "`symbol` not null (1 row" in text and "`symbol` not empty (1 row" in text


def test_null_dates_and_missing_close(tmp_path, store):
    path = write(tmp_path, "p.csv", "date,symbol,close\n,AAA,1\n2020-01-02,AAA,\n")
    with pytest.raises(SchemaValidationError) as exc:
        ingest(path, store)
    text = one_line(exc)
    assert "`date` not null (1 row" in text and "`close` finite and > 0 (1 row" in text


def test_future_dates_against_injected_today(tmp_path, store):
    path = write(tmp_path, "p.csv", "date,symbol,close\n2020-01-02,AAA,1\n2020-01-03,AAA,1\n")
    with pytest.raises(SchemaValidationError, match=r"`date` not after 2020-01-02 \(1 row"):
        ingest(path, store, today=dt.date(2020, 1, 2))
    assert ingest(path, store, today=dt.date(2020, 1, 3)).rows == 2


def test_ohlc_consistency_checks(tmp_path, store):
    csv = (
        "date,symbol,open,high,low,close,volume\n"
        "2020-01-02,AAA,10,9,8,10,100\n"  # high below open and close
        "2020-01-03,AAA,10,12,10.5,11,100\n"  # low above open
        "2020-01-06,AAA,10,12,9,11,-1\n"  # negative volume
        "2020-01-07,AAA,,12,9,11,\n"  # missing open and volume are fine
    )
    path = write(tmp_path, "ohlc.csv", csv)
    with pytest.raises(SchemaValidationError) as exc:
        ingest(path, store)
    checks = [f.check for f in exc.value.failures]
    assert checks == [
        "`volume` finite and >= 0",
        "`high` >= max(open, close, low)",
        "`low` <= min(open, close, high)",
    ]
    assert all(f.count == 1 for f in exc.value.failures)


def test_all_failures_collected_and_quarantined(tmp_path, store):
    csv = GOOD_CSV + "2020-01-06,CCC,-5\n2020-01-03,AAA,10.5\n2020-01-07,,3\n"
    path = write(tmp_path, "vendor.csv", csv)
    with pytest.raises(SchemaValidationError) as exc:
        ingest(path, store)
    text = one_line(exc)
    assert "failed 3 checks" in text
    qpath = tmp_path / "quarantine" / "vendor.quarantine.arrow"
    assert f"written to `{qpath}`" in text
    quarantine = pl.read_ipc(qpath).sort("row")
    assert quarantine["row"].to_list() == [2, 4, 5, 6]
    assert quarantine["failed_check"].to_list() == [
        "(date, symbol) unique",
        "`close` finite and > 0",
        "(date, symbol) unique",
        "`symbol` not null",
    ]
    assert quarantine.filter(pl.col("row") == 4)["close"].item() == -5.0
    assert store.entries() == []  # nothing was stored


def test_quarantine_lists_every_check_a_row_fails(tmp_path, store):
    path = write(tmp_path, "p.csv", "date,symbol,close\n2031-01-01,,-1\n")
    with pytest.raises(SchemaValidationError):
        ingest(path, store)
    row = pl.read_ipc(tmp_path / "quarantine" / "p.quarantine.arrow").row(0, named=True)
    assert row["failed_check"] == (
        "`date` not after 2030-01-01; `symbol` not null; `close` finite and > 0"
    )


def test_without_quarantine_dir_the_message_says_so(tmp_path, store):
    path = write(tmp_path, "p.csv", BAD_VALUES)
    with pytest.raises(SchemaValidationError, match="pass a quarantine folder"):
        ingest_prices(path, store, today=TODAY)
    assert not list(tmp_path.glob("**/*.quarantine.arrow"))


def test_errors_pickle_with_their_failures(tmp_path, store):
    path = write(tmp_path, "p.csv", BAD_VALUES)
    with pytest.raises(SchemaValidationError) as exc:
        ingest(path, store)
    again = pickle.loads(pickle.dumps(exc.value))
    assert again.failures == exc.value.failures and str(again) == str(exc.value)


# ------------------------------------------------------------------------------ batched path


def test_batched_path_matches_in_memory_digest(tmp_path, store, small):
    path = tmp_path / "big.csv"
    small.sample(fraction=1.0, shuffle=True, seed=5).write_csv(path)
    whole = ingest(path, store)
    batched = ingest(path, store, batch_rows=17)
    assert batched.ref.digest == whole.ref.digest
    assert (batched.rows, batched.symbols) == (small.height, 4)
    assert store.open(batched.ref).equals(small)


@pytest.mark.parametrize("ext", [".parquet", ".arrow"])
def test_batched_path_on_sorted_binary_input(tmp_path, store, small, ext):
    path = tmp_path / f"big{ext}"
    small.write_parquet(path) if ext == ".parquet" else small.write_ipc(path)
    result = ingest(path, store, batch_rows=10)
    assert store.open(result.ref).equals(small)


def test_batched_path_finds_duplicates_across_batches_and_bad_rows(tmp_path, store, small):
    # The duplicate copies land in different input batches; only the sorted pass can see them.
    bad = pl.concat([small, small.slice(3, 1), small.slice(50, 1).with_columns(close=-1.0)])
    path = tmp_path / "big.csv"
    bad.write_csv(path)
    with pytest.raises(SchemaValidationError) as exc:
        ingest(path, store, batch_rows=7)
    counts = {f.check: f.count for f in exc.value.failures}
    assert counts["(date, symbol) unique"] == 2
    assert counts["`close` finite and > 0"] == 1
    quarantine = pl.read_ipc(tmp_path / "quarantine" / "big.quarantine.arrow")
    assert set(quarantine["row"].to_list()) >= {4, 51, small.height + 1, small.height + 2}
    assert store.entries() == []
    assert not list((store.root / "tmp").glob("ingest.*"))  # staging cleaned up


def test_batched_path_reports_type_errors_across_batches(tmp_path, store):
    rows = "".join(f"2020-01-{d:02d},AAA,{'x' if d % 3 == 0 else 1}\n" for d in range(1, 29))
    path = write(tmp_path, "big.csv", "date,symbol,close\n" + rows)
    with pytest.raises(SchemaValidationError, match="`close` has 9 values that are not numbers"):
        ingest(path, store, batch_rows=5)


def test_batched_path_header_only_and_missing_columns(tmp_path, store):
    with pytest.raises(DataFormatError, match="header but no rows"):
        ingest(write(tmp_path, "h.csv", "date,symbol,close\n"), store, batch_rows=1)
    with pytest.raises(SchemaValidationError, match="missing column `close`"):
        ingest(
            write(tmp_path, "m.csv", "date,symbol,px\n2020-01-02,A,1\n" * 5), store, batch_rows=2
        )


# ------------------------------------------------------------------------------ in memory


def test_ingest_frame_names_the_frame_and_sanitises_the_quarantine_name(tmp_path, store):
    frame = pl.DataFrame({"date": [dt.date(2020, 1, 2)], "symbol": ["A"], "close": [-1.0]})
    with pytest.raises(SchemaValidationError, match=r"prices `\.\./evil` failed"):
        ingest_frame(frame, store, name="../evil", quarantine_dir=tmp_path / "q", today=TODAY)
    assert [p.name for p in (tmp_path / "q").iterdir()] == ["_evil.quarantine.arrow"]


def test_ingest_frame_rejects_an_empty_frame(store):
    empty = pl.DataFrame(schema={"date": pl.Date, "symbol": pl.String, "close": pl.Float64})
    with pytest.raises(DataFormatError, match="no rows"):
        ingest_frame(empty, store)


# ------------------------------------------------------------------------------ weights


def test_weights_are_typed_and_sorted_by_date_then_symbol(tmp_path, store):
    path = write(tmp_path, "w.csv", "Date,Symbol,Weight\n2020-01-03,A,0.5\n2020-01-02,B,0.25\n")
    stored = store.open(ingest_weights(path, store).ref)
    assert stored.schema == pl.Schema({"date": pl.Date, "symbol": pl.String, "weight": pl.Float64})
    assert stored["date"].to_list() == [dt.date(2020, 1, 2), dt.date(2020, 1, 3)]


def test_weights_nan_and_duplicates_are_left_to_tier2(tmp_path, store):
    path = write(tmp_path, "w.csv", "date,symbol,weight\n2020-01-02,A,nan\n2020-01-02,A,inf\n")
    assert ingest_weights(path, store).rows == 2


@pytest.mark.parametrize(
    ("content", "error", "fragment"),
    [
        ("date,symbol,wt\n2020-01-02,A,1\n", SchemaValidationError, "did you mean `wt`"),
        (
            "date,symbol,weight\n2020-01-02,A,lots\n",
            SchemaValidationError,
            "1 value that is not a number",
        ),
        ("date,symbol,weight\n,A,1\n", SchemaValidationError, "`date` not null"),
        ("date,symbol,weight\n2020-01-02,A,\n", SchemaValidationError, "`weight` not null"),
        ("date;symbol;weight\n2020-01-02;A;1\n", DataFormatError, "wrong delimiter"),
        ("", DataFormatError, "is empty"),
    ],
)
def test_bad_weights_files(tmp_path, store, content, error, fragment):
    path = write(tmp_path, "w.csv", content)
    with pytest.raises(error, match=fragment) as exc:
        ingest_weights(path, store)
    assert "w.csv" in one_line(exc)


# ------------------------------------------------------------------------------ the schema


def test_pandera_schema_runs_data_checks_on_collected_frames():
    frame = pl.DataFrame({"date": [dt.date(2020, 1, 2)], "symbol": ["A"], "close": [float("inf")]})
    with pytest.raises(Exception, match="finite"):
        price_schema(today=TODAY).validate(frame, lazy=True)
    masks = validate_prices(frame, today=TODAY)
    assert masks is not None and masks.columns == ["`close` finite and > 0"]


def test_validate_prices_reports_a_wrong_dtype_without_rows():
    frame = pl.DataFrame({"date": [dt.date(2020, 1, 2)], "symbol": ["A"], "close": ["1.0"]})
    with pytest.raises(SchemaValidationError, match="`close`"):
        validate_prices(frame, today=TODAY)


def test_every_ingestion_error_is_a_qpipe_error():
    assert issubclass(DataFormatError, QpipeError) and issubclass(SchemaValidationError, QpipeError)


def test_arrow_stream_named_arrow_is_refused_with_a_hint(tmp_path, store, small):
    path = tmp_path / "stream.arrow"
    with path.open("wb") as f:
        small.write_ipc_stream(f)
    with pytest.raises(DataFormatError, match=r"`.*stream\.arrow` is an Arrow IPC stream"):
        ingest(path, store)


def test_validate_false_sorts_nulls_first_and_keeps_file_order_for_ties(tmp_path, store):
    csv = "date,symbol,close\n2020-01-03,B,1\n2020-01-02,,2\n2020-01-03,A,3\n2020-01-03,A,4\n"
    stored = store.open(ingest(write(tmp_path, "p.csv", csv), store, validate=False).ref)
    assert stored["symbol"].to_list() == [None, "A", "A", "B"]
    assert stored["close"].to_list() == [2.0, 3.0, 4.0, 1.0]


def test_missing_column_suggests_a_vendor_synonym(tmp_path, store):
    path = write(tmp_path, "p.csv", "date,ticker,close\n2020-01-02,AAA,1\n")
    with pytest.raises(SchemaValidationError, match=r"`symbol` \(did you mean `ticker`\?\)"):
        ingest(path, store)


def test_file_digest_of_a_missing_file_is_a_data_format_error(tmp_path):
    with pytest.raises(DataFormatError, match=r"`.*gone\.csv` does not exist"):
        file_digest(tmp_path / "gone.csv")


def test_a_missing_close_suggests_a_price_column_not_a_lookalike(tmp_path, store):
    """`low` is spelt like `close` but is another price: a vendor's `px_last` is the hint."""
    path = write(tmp_path, "p.csv", "date,ticker,px_last,low\n2020-01-02,AAA,1,1\n")
    with pytest.raises(SchemaValidationError) as exc:
        ingest(path, store)
    text = one_line(exc)
    assert "`symbol` (did you mean `ticker`?)" in text
    assert "`close` (did you mean `px_last`?)" in text
