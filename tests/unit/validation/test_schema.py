"""Tier 1 schema: the one-boolean-per-check pandera pass finds exactly what the row checks find,
and every bad input is refused with a one-line error naming the file and the column."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import hypothesis.strategies as st
import pandera.errors
import polars as pl
import pytest
from hypothesis import given, settings

from qpipe.errors import SchemaValidationError
from qpipe.ingest import ingest_prices
from qpipe.store import ArrowStore
from qpipe.validation.schema import (
    duplicate_mask,
    has_duplicates,
    price_checks,
    price_schema,
    validate_prices,
    weight_checks,
)

TODAY = dt.date(2030, 1, 1)
SYMBOLS = ["AAA", "BBB", "", " ", "\t", " C ", None]
VALUES = [1.0, 2.5, 0.0, -1.0, math.nan, math.inf, -math.inf, None]


@st.composite
def price_frames(draw) -> pl.DataFrame:
    n = draw(st.integers(0, 25))
    days = [dt.date(2020, 1, 1) + dt.timedelta(days=draw(st.integers(0, 6))) for _ in range(n)]
    nulls = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    data = {
        "date": [
            None if z and i % 3 == 0 else d
            for i, (d, z) in enumerate(zip(days, nulls, strict=True))
        ],
        "symbol": draw(st.lists(st.sampled_from(SYMBOLS), min_size=n, max_size=n)),
    }
    for col in ("open", "high", "low", "close", "volume"):
        data[col] = draw(st.lists(st.sampled_from(VALUES), min_size=n, max_size=n))
    schema = {"date": pl.Date, "symbol": pl.String} | {
        c: pl.Float64 for c in ("open", "high", "low", "close", "volume")
    }
    return pl.DataFrame(data, schema=schema)


@settings(deadline=None, max_examples=300)
@given(frame=price_frames(), sort=st.booleans())
def test_each_checks_one_boolean_equals_its_row_mask(frame, sort):
    """``passes()`` (what pandera evaluates) == every row passes ``ok()``, in any row order; the
    per-value shortcut for `symbol` checks only the first row of each run of equal values."""
    if sort:
        frame = frame.sort("symbol", "date", nulls_last=False)
    for check in (*price_checks(frame.columns, today=TODAY), *weight_checks(frame.columns)):
        if check.column and check.column not in frame.columns:
            continue
        expected = bool(frame.select(check.ok().all()).item())
        assert bool(frame.select(check.passes()).item()) is expected, check.name


@settings(deadline=None, max_examples=300)
@given(frame=price_frames())
def test_has_duplicates_agrees_with_the_mask_on_sorted_keys(frame):
    ordered = frame.sort("symbol", "date")
    assert has_duplicates(ordered) is bool(duplicate_mask(ordered).any())


@settings(deadline=None, max_examples=150)
@given(frame=price_frames())
def test_validate_prices_fails_exactly_when_some_row_fails(frame):
    """The pandera pass (booleans only) and the masks (failing rows) agree row for row."""
    if frame.height == 0:
        return
    ordered = frame.sort("symbol", "date")
    masks = validate_prices(ordered, today=TODAY)
    checks = price_checks(ordered.columns, today=TODAY)
    bad = ordered.select([(~c.ok()).alias(c.name) for c in checks])
    failing = [c for c in bad.columns if bad[c].any()]
    if has_duplicates(ordered):
        failing.append("(date, symbol) unique")
    if not failing:
        assert masks is None
        price_schema(today=TODAY, columns=ordered.columns).validate(ordered, lazy=True)
        return
    assert masks is not None and masks.columns == failing
    for name in failing[: len(failing) - has_duplicates(ordered)]:
        assert masks[name].to_list() == bad[name].to_list()
    if len(failing) > has_duplicates(ordered):  # pandera itself refuses the frame
        with pytest.raises(pandera.errors.SchemaErrors):
            price_schema(today=TODAY, columns=ordered.columns).validate(ordered, lazy=True)


def test_the_schema_is_a_pandera_schema_with_one_named_check_per_rule():
    schema = price_schema(today=TODAY)
    assert type(schema).__module__.startswith("pandera.")
    names = [c.name for col in schema.columns.values() for c in col.checks]
    names += [c.name for c in schema.checks]
    assert sorted(names) == sorted(c.name for c in price_checks(schema.columns, today=TODAY))
    frame = pl.DataFrame(
        {"date": [dt.date(2020, 1, 2)] * 2, "symbol": ["A", "A "], "close": [1.0, -2.0]}
    )
    with pytest.raises(pandera.errors.SchemaErrors, match="`close` finite and > 0"):
        schema.validate(frame, lazy=True)


# ------------------------------------------------------------------- every bad input, one line

GOOD = [
    ("2020-01-02", "AAA", "10.0"),
    ("2020-01-03", "AAA", "10.5"),
    ("2020-01-06", "AAA", "10.7"),
    ("2020-01-02", "BBB", "20.0"),
    ("2020-01-03", "BBB", "20.5"),
]

# (name, rows to add, the check named in the error, the column it names)
BAD = [
    ("null-date", [("", "AAA", "11")], "`date` not null", "date"),
    ("future-date", [("2031-01-02", "AAA", "11")], "`date` not after 2030-01-01", "date"),
    ("null-symbol", [("2020-01-07", "", "11")], "`symbol` not null", "symbol"),
    (
        "blank-symbol",
        [("2020-01-07", "  ", "11"), ("2020-01-08", "  ", "12")],
        "`symbol` not empty",
        "symbol",
    ),
    ("null-close", [("2020-01-07", "AAA", "")], "`close` finite and > 0", "close"),
    ("zero-close", [("2020-01-07", "AAA", "0")], "`close` finite and > 0", "close"),
    ("negative-close", [("2020-01-07", "BBB", "-3")], "`close` finite and > 0", "close"),
    ("nan-close", [("2020-01-07", "AAA", "nan")], "`close` finite and > 0", "close"),
    ("inf-close", [("2020-01-07", "AAA", "inf")], "`close` finite and > 0", "close"),
    ("minus-inf-close", [("2020-01-07", "AAA", "-inf")], "`close` finite and > 0", "close"),
    ("duplicate", [("2020-01-03", "AAA", "10.5")], "(date, symbol) unique", None),
    ("text-close", [("2020-01-07", "AAA", "ten")], "close", "close"),
    ("bad-date", [("2020-13-45", "AAA", "11")], "date", "date"),
]


def _csv(rows: list[tuple[str, str, str]], shuffle: bool) -> str:
    body = list(reversed(rows)) if shuffle else rows
    return "date,symbol,close\n" + "".join(f"{d},{s},{c}\n" for d, s, c in body)


@pytest.mark.parametrize("batch_rows", [1_000_000, 2], ids=["in-memory", "batched"])
@pytest.mark.parametrize("shuffle", [False, True], ids=["sorted", "unsorted"])
@pytest.mark.parametrize(("case", "extra", "check", "column"), BAD, ids=[b[0] for b in BAD])
def test_every_bad_input_is_refused_in_one_line_naming_file_and_column(
    tmp_path: Path, case, extra, check, column, shuffle, batch_rows
):
    path = tmp_path / f"{case}.csv"
    # the bad rows in the middle of the good ones: a blank symbol is not the first row
    path.write_text(_csv(GOOD[:3] + extra + GOOD[3:], shuffle), encoding="utf-8")
    with pytest.raises(SchemaValidationError) as exc:
        ingest_prices(path, ArrowStore(tmp_path / "store"), today=TODAY, batch_rows=batch_rows)
    text = str(exc.value)
    assert "\n" not in text and text == text[0].lower() + text[1:]
    assert f"{case}.csv" in text and check in text
    if column is not None:
        assert f"`{column}`" in text
    if case == "blank-symbol" and batch_rows > 2:
        assert "`symbol` not empty (2 rows" in text  # every row counted, not one per symbol


@pytest.mark.parametrize("shuffle", [False, True], ids=["sorted", "unsorted"])
def test_good_input_in_any_order_passes_and_is_stored_sorted(tmp_path: Path, shuffle):
    path = tmp_path / "good.csv"
    path.write_text(_csv(GOOD, shuffle), encoding="utf-8")
    res = ingest_prices(path, ArrowStore(tmp_path / "store"), today=TODAY)
    frame = ArrowStore(tmp_path / "store").open(res.ref)
    assert frame.select("symbol", "date").equals(
        frame.select("symbol", "date").sort("symbol", "date")
    )
    assert res.validated and res.rows == len(GOOD)


def test_a_given_source_digest_is_used_instead_of_hashing_again(tmp_path: Path):
    from qpipe.ingest import file_digest

    path = tmp_path / "good.csv"
    path.write_text(_csv(GOOD, False), encoding="utf-8")
    digest = file_digest(path)
    res = ingest_prices(path, ArrowStore(tmp_path / "store"), today=TODAY, source_digest=digest)
    assert res.source_digest == digest
    again = ingest_prices(path, ArrowStore(tmp_path / "store"), today=TODAY)
    assert again.source_digest == digest
