"""Per-step validation returns what it found, so a run can record it (``per_step`` records)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from qpipe.errors import SchemaValidationError
from qpipe.stages.base import stage
from qpipe.validation.steps import check_step_output


@stage(output="signals", shard="date")
def passthrough(features: pl.LazyFrame) -> pl.LazyFrame:
    return features


STEP = passthrough.bind()
D = dt.date(2024, 1, 2)


def test_a_passing_output_reports_passed_rows_and_time():
    frame = pl.DataFrame({"date": [D, D], "symbol": ["A", "B"], "signal": [0.1, None]})
    found = check_step_output(STEP, "signals", frame)
    assert found.passed and found.failures == () and found.message == ""
    assert found.rows == 2 and found.step == "passthrough" and found.output == "signals"
    assert found.seconds >= 0


def test_a_failing_output_is_returned_with_every_failure_or_raised():
    frame = pl.DataFrame(
        {"date": [D, D, D], "symbol": ["A", "A", "B"], "signal": [0.1, 0.2, float("inf")]}
    )
    found = check_step_output(STEP, "signals", frame, raise_on_failure=False)
    assert not found.passed
    checks = {f.check for f in found.failures}
    assert "(date, symbol) unique" in checks and "finite_or_null" in checks
    assert found.message.startswith("stage `passthrough` output `signals` failed its schema")
    with pytest.raises(SchemaValidationError) as info:
        check_step_output(STEP, "signals", frame)
    assert str(info.value) == found.message
    assert tuple(info.value.failures) == found.failures
    with pytest.raises(SchemaValidationError):
        found.raise_for_failures()
