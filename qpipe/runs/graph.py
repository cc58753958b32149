"""A run as a small graph of phases, executed in order.

A phase is a plain typed function. Its first parameter is the :class:`~qpipe.runs.env.RunEnv`
(the choices made at the edge: config, store, engine, recorder); every other parameter names an
earlier phase whose output it takes, as in Hamilton, so the signature *is* the wiring. The graph
checks the wiring when it is built, so a misspelt input fails at import, not mid-run.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Phase", "PhaseGraph"]


@dataclass(frozen=True)
class Phase:
    """One node: its name, the function, and the names of the phases it reads."""

    name: str
    fn: Callable[..., Any]
    inputs: tuple[str, ...]

    @classmethod
    def of(cls, fn: Callable[..., Any]) -> Phase:
        params = list(inspect.signature(fn).parameters.values())
        if not params or params[0].name != "env":
            msg = f"phase `{fn.__name__}` must take `env` as its first parameter"
            raise TypeError(msg)
        missing = [p.name for p in params if p.annotation is inspect.Parameter.empty]
        if missing or inspect.signature(fn).return_annotation is inspect.Signature.empty:
            msg = f"phase `{fn.__name__}` needs type annotations (missing: {missing or 'return'})"
            raise TypeError(msg)
        return cls(fn.__name__, fn, tuple(p.name for p in params[1:]))


class PhaseGraph:
    """Phases in execution order; each reads only phases before it."""

    def __init__(self, fns: Sequence[Callable[..., Any]]) -> None:
        phases = tuple(Phase.of(fn) for fn in fns)
        seen: set[str] = set()
        for phase in phases:
            unknown = [name for name in phase.inputs if name not in seen]
            if unknown:
                msg = f"phase `{phase.name}` reads {unknown}, which no earlier phase produces"
                raise TypeError(msg)
            seen.add(phase.name)
        self.phases = phases

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.phases)

    def execute(self, env: Any) -> dict[str, Any]:
        """Run every phase; return each phase's output by name (references and small values)."""
        done: dict[str, Any] = {}
        for phase in self.phases:
            start = time.perf_counter()
            done[phase.name] = phase.fn(env, **{name: done[name] for name in phase.inputs})
            env.emit("phase", {"phase": phase.name, "seconds": time.perf_counter() - start})
        return done
