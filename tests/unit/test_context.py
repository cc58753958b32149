"""RunContext is a proper immutable Mapping of names to refs."""

from __future__ import annotations

import pickle

import pytest

from qpipe.context import MissingDatasetError, RunContext
from qpipe.errors import StageError
from qpipe.store import DatasetRef


def _ref(name: str = "a") -> DatasetRef:
    return DatasetRef(path=f"/tmp/{name}.arrow", digest="0" * 64, rows=1, schema=(("x", "Int64"),))


def test_in_and_get_answer_instead_of_raising() -> None:
    ctx = RunContext({"prices": _ref()})
    assert "prices" in ctx
    assert "x" not in ctx
    assert "x" not in RunContext()
    assert RunContext().get("x", 1) == 1
    assert ctx.get("prices") == _ref()


def test_missing_name_is_a_key_error_and_a_clear_stage_error() -> None:
    ctx = RunContext({"prices": _ref()})
    with pytest.raises(KeyError):
        ctx["weights"]
    with pytest.raises(StageError) as info:
        ctx["weights"]
    assert str(info.value) == "run context has no dataset `weights` (has: prices)"
    assert isinstance(info.value, MissingDatasetError)


def test_it_cannot_be_changed_or_fed_data() -> None:
    ctx = RunContext({"prices": _ref()})
    with pytest.raises(StageError):
        ctx.extra = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        ctx._refs["frame"] = object()  # type: ignore[index]
    with pytest.raises(TypeError):
        ctx["x"] = _ref()  # type: ignore[index]
    assert dict(ctx) == {"prices": _ref()}


def test_with_refs_makes_a_new_context_and_pickles_small() -> None:
    ctx = RunContext({"prices": _ref()})
    ctx2 = ctx.with_refs(weights=_ref("w"))
    assert set(ctx) == {"prices"} and set(ctx2) == {"prices", "weights"}
    again = pickle.loads(pickle.dumps(ctx2))
    assert dict(again) == dict(ctx2)
    assert len(pickle.dumps(ctx2)) < 2048
