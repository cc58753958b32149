"""The run graph: phases are typed functions whose parameters name the phases they read."""

from __future__ import annotations

from typing import Any

import pytest

from qpipe.runs import RUN_GRAPH
from qpipe.runs.graph import Phase, PhaseGraph


class Env:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        self.events.append((kind, data))


def first(env: Env) -> int:
    return 2


def second(env: Env, first: int) -> int:
    return first * 10


def third(env: Env, first: int, second: int) -> tuple[int, int]:
    return first, second


def test_the_run_is_five_phases_in_one_direction() -> None:
    assert RUN_GRAPH.names == ("ingest", "strategy", "audit", "backtest", "outputs")
    reads = {p.name: p.inputs for p in RUN_GRAPH.phases}
    assert reads == {
        "ingest": (),
        "strategy": ("ingest",),
        "audit": ("strategy",),
        "backtest": ("strategy", "audit"),
        "outputs": ("audit", "backtest"),
    }


def test_outputs_flow_by_parameter_name_and_each_phase_is_reported() -> None:
    env = Env()
    done = PhaseGraph((first, second, third)).execute(env)
    assert done == {"first": 2, "second": 20, "third": (2, 20)}
    assert [data["phase"] for kind, data in env.events if kind == "phase"] == [
        "first",
        "second",
        "third",
    ]


def test_a_phase_reading_a_later_or_unknown_phase_is_refused_when_built() -> None:
    with pytest.raises(TypeError, match="reads \\['second'\\]"):
        PhaseGraph((first, third, second))


def test_a_phase_needs_env_first_and_annotations() -> None:
    def no_env(first: int) -> int:
        return first

    def untyped(env, first):  # type: ignore[no-untyped-def]
        return first

    with pytest.raises(TypeError, match="`env`"):
        Phase.of(no_env)
    with pytest.raises(TypeError, match="annotations"):
        Phase.of(untyped)
