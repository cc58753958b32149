"""Property tests: ingestion either stores a frame that keeps the price invariants or raises a
``QpipeError`` -- never another exception type, whatever the input."""

from __future__ import annotations

import datetime as dt
import math
import tempfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from qpipe.errors import QpipeError, SchemaValidationError
from qpipe.ingest import ingest_frame, ingest_prices
from qpipe.store import ArrowStore

TODAY = dt.date(2030, 1, 1)
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

symbols = st.sampled_from(["AAA", "BBB", "C", "", " ", None, "ünï", "../x"])
dates = st.one_of(
    st.dates(min_value=dt.date(2019, 12, 30), max_value=dt.date(2020, 1, 10)),
    st.sampled_from([None, dt.date(1970, 1, 1), dt.date(2031, 1, 1)]),
)
prices = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, -1.0, 5e-324, 1.7976931348623157e308, None]),
    st.floats(min_value=0.01, max_value=1e4),
)


@st.composite
def price_frames(draw: st.DrawFn) -> pl.DataFrame:
    """Price frames of 0-25 rows: empty, single row, single symbol, gaps, extreme and bad values,
    duplicates, and optional OHLCV columns."""
    n = draw(st.integers(0, 25))
    data: dict[str, list] = {
        "date": draw(st.lists(dates, min_size=n, max_size=n)),
        "symbol": draw(st.lists(symbols, min_size=n, max_size=n)),
        "close": draw(st.lists(prices, min_size=n, max_size=n)),
    }
    schema: dict[str, pl.DataType] = {
        "date": pl.Date(),
        "symbol": pl.String(),
        "close": pl.Float64(),
    }
    for col in draw(st.sets(st.sampled_from(["open", "high", "low"]))):
        data[col] = draw(st.lists(prices, min_size=n, max_size=n))
        schema[col] = pl.Float64()
    if draw(st.booleans()):
        if draw(st.booleans()):
            data["volume"] = draw(
                st.lists(st.integers(-10, 10**12) | st.none(), min_size=n, max_size=n)
            )
            schema["volume"] = pl.Int64()
        else:
            data["volume"] = draw(st.lists(prices, min_size=n, max_size=n))
            schema["volume"] = pl.Float64()
    return pl.DataFrame(data, schema=schema)


@st.composite
def clean_frames(draw: st.DrawFn) -> pl.DataFrame:
    """Valid prices: unique keys, finite positive closes, shuffled, possibly with gaps."""
    keys = draw(
        st.lists(
            st.tuples(st.sampled_from(["AAA", "BBB", "CCC"]), st.dates(dt.date(2020, 1, 1), TODAY)),
            min_size=1,
            max_size=30,
            unique=True,
        )
    )
    closes = draw(st.lists(st.floats(1e-6, 1e12), min_size=len(keys), max_size=len(keys)))
    return pl.DataFrame(
        {"date": [d for _, d in keys], "symbol": [s for s, _ in keys], "close": closes}
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ArrowStore:
    return ArrowStore(tmp_path_factory.mktemp("prop") / "store")


def assert_price_invariants(stored: pl.DataFrame, source: pl.DataFrame) -> None:
    assert stored.height == source.height
    assert stored.equals(stored.sort("symbol", "date"))
    assert stored.select(pl.struct("date", "symbol").is_unique().all()).item()
    assert stored.select(pl.col("date", "symbol").is_not_null().all()).row(0) == (True, True)
    closes = stored["close"].to_list()
    assert all(math.isfinite(c) and c > 0 for c in closes)
    assert all(d <= TODAY for d in stored["date"].to_list())


@SETTINGS
@given(frame=price_frames())
@example(frame=pl.DataFrame(schema={"date": pl.Date, "symbol": pl.String, "close": pl.Float64}))
@example(frame=pl.DataFrame({"date": [dt.date(2020, 1, 2)], "symbol": ["A"], "close": [1.0]}))
def test_ingest_frame_keeps_invariants_or_raises_qpipe_error(store, frame):
    with tempfile.TemporaryDirectory() as q:
        try:
            result = ingest_frame(frame, store, quarantine_dir=Path(q), today=TODAY)
        except SchemaValidationError as exc:
            assert "\n" not in str(exc)
            quarantined = list(Path(q).iterdir())
            if exc.failures and exc.failures[0].kind == "row":  # row-level failures
                assert len(quarantined) == 1
                assert pl.read_ipc(quarantined[0]).height >= 1
            return
        except QpipeError as exc:
            assert "\n" not in str(exc)
            return
    assert_price_invariants(store.open(result.ref), frame)


@SETTINGS
@given(frame=clean_frames())
def test_valid_frames_are_always_accepted_and_only_reordered(store, frame):
    result = ingest_frame(frame, store, today=TODAY)
    stored = store.open(result.ref)
    assert_price_invariants(stored, frame)
    assert stored.equals(frame.sort("symbol", "date"))
    assert result.symbols == frame["symbol"].n_unique()


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    frame=price_frames(), fmt=st.sampled_from(["csv", "parquet", "arrow"]), batched=st.booleans()
)
def test_ingest_files_keeps_invariants_or_raises_qpipe_error(store, frame, fmt, batched):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"prices.{fmt}"
        if fmt == "csv":
            frame.write_csv(path)
        elif fmt == "parquet":
            frame.write_parquet(path)
        else:
            frame.write_ipc(path)
        try:
            result = ingest_prices(
                path,
                store,
                quarantine_dir=Path(tmp) / "q",
                today=TODAY,
                batch_rows=4 if batched else 1_000_000,
            )
        except QpipeError as exc:
            assert "\n" not in str(exc)
            return
    assert_price_invariants(store.open(result.ref), frame)
