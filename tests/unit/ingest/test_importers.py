"""``data import``: vendor folders, wide and long files, the close choice, and all-or-nothing."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings, target
from hypothesis import strategies as st

from qpipe.errors import DataFormatError, PathSafetyError, SchemaValidationError, StoreError
from qpipe.ingest.named import dataset_names, import_dataset, open_named
from qpipe.store import ArrowStore
from tests.conftest import REPO

TODAY = dt.date(2030, 1, 1)
EXAMPLES = REPO / "examples"
VENDOR_HEADER = "Date,Open,High,Low,Close,Adj Close,Volume\n"


@pytest.fixture
def store(tmp_path: Path) -> ArrowStore:
    return ArrowStore(tmp_path / "store")


def vendor_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def stored(store: ArrowStore, name: str) -> pl.DataFrame:
    return store.open(open_named(f"store:{name}", store).ref)


# ----------------------------------------------------------------------------- vendor


def test_vendor_folder_adjusted_close_scales_the_bar(store):
    result = import_dataset(EXAMPLES / "vendor", store, name="adj", close="adjusted", today=TODAY)
    frame = stored(store, "adj")
    assert result.files == 12 and result.symbols == 12 and result.format == "vendor"
    # Independently, from the CSV text: close = Adj Close; open/high/low x (Adj Close / Close).
    for path in sorted((EXAMPLES / "vendor").glob("*.csv"))[:3]:
        rows = vendor_rows(path)
        got = frame.filter(pl.col("symbol") == path.stem).sort("date")
        assert got.height == len(rows)
        for want, have in zip(rows, got.iter_rows(named=True), strict=True):
            factor = float(want["Adj Close"]) / float(want["Close"])
            assert have["date"].isoformat() == want["Date"]
            assert have["close"] == float(want["Adj Close"])
            for col in ("Open", "High", "Low"):
                assert math.isclose(have[col.lower()], float(want[col]) * factor, rel_tol=1e-12)
            assert have["volume"] == int(want["Volume"])


def test_vendor_folder_raw_close_is_the_long_example_before_its_split(store):
    """Raw prices carry the 2:1 split of 2023-06-01 (doubled before it); nothing else differs."""
    import_dataset(EXAMPLES / "vendor", store, name="raw", close="raw", today=TODAY)
    long = pl.read_csv(EXAMPLES / "prices.csv", try_parse_dates=True)
    doubled = pl.when(pl.col("date") < dt.date(2023, 6, 1)).then(2.0).otherwise(1.0)
    want = long.with_columns(
        [(pl.col(c) * doubled).round(4) for c in ("open", "high", "low", "close")]
    ).sort("symbol", "date")
    frame = stored(store, "raw")
    assert frame.columns == ["date", "open", "high", "low", "close", "volume", "symbol"]
    assert frame.select(long.columns).equals(want)


def test_the_adjusted_close_has_no_split_day_and_the_raw_close_has_one(store):
    """What `--close` is for: on the split day the raw close halves, the adjusted one does not
    (the example data once doubled its adjusted close overnight: +50 % equity in a day)."""
    for close in ("raw", "adjusted"):
        import_dataset(EXAMPLES / "vendor", store, name=close, close=close, today=TODAY)
    moves = {
        close: stored(store, close)
        .sort("symbol", "date")
        .select((pl.col("close") / pl.col("close").shift(1).over("symbol") - 1).abs().max())
        .item()
        for close in ("raw", "adjusted")
    }
    assert moves["raw"] > 0.45 and moves["adjusted"] < 0.2, moves


def test_both_closes_and_no_choice_asks_for_one(store):
    with pytest.raises(DataFormatError, match="`--close adjusted` or `--close raw`"):
        import_dataset(EXAMPLES / "vendor", store, name="x", today=TODAY)
    assert not store.entries()


def test_adjusted_with_a_file_lacking_adj_close_is_a_bad_file(tmp_path, store):
    folder = tmp_path / "v"
    folder.mkdir()
    (folder / "AAA.csv").write_text(VENDOR_HEADER + "2020-01-02,1,2,1,2,1,100\n")
    (folder / "BBB.csv").write_text("Date,Close\n2020-01-02,5\n")
    with pytest.raises(SchemaValidationError, match=r"BBB\.csv.*no adjusted close") as exc:
        import_dataset(folder, store, name="x", close="adjusted", today=TODAY)
    assert [f.source for f in exc.value.failures] == [str(folder / "BBB.csv")]
    assert not store.entries()


def test_a_vendor_file_without_adj_close_imports_with_raw_or_no_choice(tmp_path, store):
    folder = tmp_path / "v"
    folder.mkdir()
    (folder / "AAA.csv").write_text("Date,Close,Volume\n2020-01-03,2,5\n2020-01-02,1,7\n")
    import_dataset(folder, store, name="x", today=TODAY)
    assert stored(store, "x")["close"].to_list() == [1.0, 2.0]


# ------------------------------------------------------------------------------- wide


def test_wide_csv_equals_the_long_closes(store):
    import_dataset(EXAMPLES / "wide.csv", store, name="w", today=TODAY)
    long = pl.read_csv(EXAMPLES / "prices.csv", try_parse_dates=True)
    want = long.select("date", "symbol", "close").sort("symbol", "date")
    assert stored(store, "w").select(want.columns).equals(want)


def test_wide_parquet_and_long_parquet(tmp_path, store):
    long = pl.read_csv(EXAMPLES / "prices.csv", try_parse_dates=True)
    wide = long.pivot(on="symbol", index="date", values="close").sort("date")
    wide.write_parquet(tmp_path / "w.parquet")
    long.write_parquet(tmp_path / "l.parquet")
    a = import_dataset(tmp_path / "w.parquet", store, name="wp", today=TODAY)
    b = import_dataset(tmp_path / "l.parquet", store, name="lp", today=TODAY)
    assert (a.format, b.format) == ("wide", "long")
    assert stored(store, "wp").equals(long.select("date", "symbol", "close").sort("symbol", "date"))
    assert stored(store, "lp").equals(long.sort("symbol", "date"))


def test_wide_bad_cells_name_their_wide_row(tmp_path, store):
    path = tmp_path / "w.csv"
    path.write_text("date,AAA,BBB\n2020-01-02,1,2\n2020-01-03,x,3\n2020-01-06,-4,\n")
    with pytest.raises(SchemaValidationError, match="'x' on row 2") as exc:
        import_dataset(path, store, name="w", today=TODAY)
    assert exc.value.failures[0].kind == "type"
    path.write_text("date,AAA,BBB\n2020-01-02,1,2\n2020-01-03,5,3\n2020-01-06,-4,\n")
    with pytest.raises(SchemaValidationError, match=r"close=-4.0 \(row 3\)"):
        import_dataset(path, store, name="w", today=TODAY, quarantine_dir=tmp_path / "q")
    q = pl.read_ipc(tmp_path / "q" / "w.quarantine.arrow")
    assert q.select("symbol", "row", "file").row(0) == ("AAA", 3, str(path))


@settings(max_examples=25, deadline=None)
@given(
    cells=st.lists(
        st.lists(st.one_of(st.none(), st.floats(0.01, 1e6)), min_size=3, max_size=3),
        min_size=1,
        max_size=12,
    )
)
def test_wide_import_is_the_long_table_of_its_non_empty_cells(tmp_path_factory, cells):
    """Property: importing a wide file stores exactly its non-empty cells, long and sorted."""
    root = tmp_path_factory.mktemp("wide")
    days = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(len(cells))]
    wide = pl.DataFrame(
        {"date": days, **{s: [r[i] for r in cells] for i, s in enumerate(("B", "A", "C"))}},
        schema={"date": pl.Date, "B": pl.Float64, "A": pl.Float64, "C": pl.Float64},
    )
    wide.write_csv(root / "w.csv")
    expected = sorted(
        (s, d, v)
        for d, *vals in wide.iter_rows()
        for s, v in zip("BAC", vals, strict=True)
        if v is not None
    )
    store = ArrowStore(root / "store")
    try:
        import_dataset(root / "w.csv", store, name="w", today=TODAY)
    except SchemaValidationError:
        assert not expected  # only an all-empty file has no rows
        return
    target(float(len(expected)), label="cells imported")
    got = stored(store, "w").select("symbol", "date", "close").rows()
    assert [(s, d) for s, d, _ in got] == [(s, d) for s, d, _ in expected]
    assert all(math.isclose(a[2], b[2], rel_tol=1e-15) for a, b in zip(got, expected, strict=True))


# ------------------------------------------------------------------------ all or nothing


def make_bad_folder(folder: Path) -> None:
    folder.mkdir()
    good = "".join(f"2020-01-{d:02d},1,2,1,1.5,1.5,100\n" for d in (2, 3, 6))
    (folder / "GOOD.csv").write_text(VENDOR_HEADER + good)
    (folder / "LATIN.csv").write_bytes(
        (VENDOR_HEADER + "2020-01-02,é,1,1,1,1,1\n").encode("latin-1")
    )
    (folder / "NOCLOSE.csv").write_text("Date,Open\n2020-01-02,1\n")
    (folder / "TYPES.csv").write_text(VENDOR_HEADER + "2020-01-02,1,2,1,abc,1,100\n")
    (folder / "ROWS.csv").write_text(
        VENDOR_HEADER + "2020-01-02,1,2,1,-1,-1,100\n2020-01-03,1,2,1,1,1,100\n"
        "2020-01-03,1,2,1,1,1,100\n"
    )


def test_every_bad_file_and_row_is_reported_at_once_and_nothing_is_imported(tmp_path, store):
    folder = tmp_path / "bad"
    make_bad_folder(folder)
    import_dataset(EXAMPLES / "prices.csv", store, name="keep", today=TODAY)
    before = (store.root / "datasets" / "keep.json").read_bytes()
    entries = set(store.entries())
    calls: list[object] = []
    with pytest.raises(SchemaValidationError) as exc:
        import_dataset(
            folder,
            store,
            name="keep",
            close="raw",
            quarantine_dir=tmp_path / "q",
            today=TODAY,
            record=calls.append,
        )
    text = str(exc.value)
    assert "\n" not in text and "nothing imported" in text and "4 bad files" in text
    for name in ("LATIN.csv", "NOCLOSE.csv", "TYPES.csv", "ROWS.csv"):
        assert name in text
    assert "GOOD.csv" not in text
    sources = {Path(f.source).name for f in exc.value.failures}
    assert sources == {"LATIN.csv", "NOCLOSE.csv", "TYPES.csv", "ROWS.csv"}
    kinds = {Path(f.source).name: f.kind for f in exc.value.failures}
    assert kinds == {
        "LATIN.csv": "file",
        "NOCLOSE.csv": "column",
        "TYPES.csv": "type",
        "ROWS.csv": "row",
    }
    q = pl.read_ipc(tmp_path / "q" / "keep.quarantine.arrow")
    assert q["file"].unique().to_list() == [str(folder / "ROWS.csv")]
    assert sorted(q["row"].to_list()) == [1, 2, 3]
    # Atomic: no new entry, the old name untouched, no ledger record.
    assert set(store.entries()) == entries and not calls
    assert (store.root / "datasets" / "keep.json").read_bytes() == before


def test_the_ledger_record_comes_before_the_name(tmp_path, store):
    seen: list[bool] = []

    def record(result):
        seen.append((store.root / "datasets" / f"{result.name}.json").exists())

    result = import_dataset(EXAMPLES / "prices.csv", store, name="p", today=TODAY, record=record)
    assert seen == [False]
    pointer = json.loads((store.root / "datasets" / "p.json").read_text())
    assert pointer["digest"] == result.digest and pointer["import_id"].startswith("import-")
    assert [d["name"] for d in dataset_names(store)] == ["p"]


def test_a_failing_record_names_nothing(store):
    def record(result):
        raise StoreError("ledger is read-only")

    with pytest.raises(StoreError):
        import_dataset(EXAMPLES / "prices.csv", store, name="p", today=TODAY, record=record)
    assert dataset_names(store) == []


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".hidden", "x" * 65, "store:x"])
def test_unsafe_names_are_refused(store, name):
    with pytest.raises(PathSafetyError, match="dataset name"):
        import_dataset(EXAMPLES / "prices.csv", store, name=name, today=TODAY)


def test_an_unknown_name_lists_the_known_ones(store):
    import_dataset(EXAMPLES / "prices.csv", store, name="p", today=TODAY)
    with pytest.raises(DataFormatError, match=r"no dataset named `q`.*known: `p`.*data import"):
        open_named("store:q", store)


def test_a_damaged_entry_is_not_used(store):
    result = import_dataset(EXAMPLES / "prices.csv", store, name="p", today=TODAY)
    path = Path(result.path)
    path.chmod(0o644)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match="corrupt"):
        open_named("store:p", store)
