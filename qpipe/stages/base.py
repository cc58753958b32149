"""The stage contract.

A stage is a pure, typed function over lazy frames::

    @stage(output="features", shard="symbol")
    def returns(prices: pl.LazyFrame, *, horizon: int = 1) -> pl.LazyFrame:
        ...

Positional parameters are its inputs (each a ``pl.LazyFrame``; their names are the names the
stage reads from the run context); keyword-only parameters are its params (taken from config).
It returns a ``pl.LazyFrame`` (or a tuple of them, one per declared output). It does no I/O,
reads no globals and mutates nothing: the engine opens the inputs, calls the stage and stores
what it returns. ``shard`` says how an engine may split the work: ``"symbol"`` for
time-series stages (each symbol's rows are independent), ``"date"`` for cross-sectional stages
(each date is independent), ``None`` for stages that need everything at once.

A :class:`Pipeline` is an ordered tuple of :class:`Step` (a stage bound to params and to input
and output names). :meth:`Pipeline.apply_lazy` composes all steps into lazy frames with no I/O,
which is how the point-in-time audit re-runs a strategy on truncated data.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_type_hints

import polars as pl

from qpipe._frozen import FrozenTable
from qpipe.errors import StageError

__all__ = ["Pipeline", "ShardBy", "Stage", "Step", "stage"]

ShardBy = Literal["symbol", "date"] | None


@dataclass(frozen=True)
class Stage:
    """A pure function over lazy frames, with its declared inputs, outputs and sharding."""

    name: str
    fn: Callable[..., Any]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: tuple[str, ...]
    shard: ShardBy = None
    doc: str = ""

    def __call__(
        self, *frames: pl.LazyFrame, **params: Any
    ) -> pl.LazyFrame | tuple[pl.LazyFrame, ...]:
        return self.fn(*frames, **params)

    def bind(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        inputs: tuple[str, ...] | None = None,
        outputs: tuple[str, ...] | str | None = None,
        name: str | None = None,
    ) -> Step:
        """A :class:`Step` running this stage with ``params``, optionally renaming its I/O."""
        params = dict(params or {})
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            msg = f"stage `{self.name}` has no param(s) {', '.join(f'`{u}`' for u in unknown)}"
            raise StageError(msg)
        if isinstance(outputs, str):
            outputs = (outputs,)
        ins = inputs or self.inputs
        outs = outputs or self.outputs
        if len(ins) != len(self.inputs) or len(outs) != len(self.outputs):
            n_in, n_out = len(self.inputs), len(self.outputs)
            msg = f"stage `{self.name}` takes {n_in} input(s) and gives {n_out} output(s)"
            raise StageError(msg)
        return Step(self, FrozenTable(params), tuple(ins), tuple(outs), name or self.name)


def _is_lazy(annotation: Any) -> bool:
    return annotation is pl.LazyFrame


def stage(
    *, output: str | tuple[str, ...] | None = None, shard: ShardBy = None
) -> Callable[[Callable[..., Any]], Stage]:
    """Declare a pure stage. See the module docstring for the contract.

    A parameter without an annotation, a positional parameter that is not a ``pl.LazyFrame``,
    or a missing return annotation is rejected when the module is imported, with the fix.
    """

    def decorate(fn: Callable[..., Any]) -> Stage:
        sig = inspect.signature(fn)
        try:
            hints = get_type_hints(fn)
        except Exception as exc:
            msg = f"stage `{fn.__name__}`: cannot resolve its type hints ({exc})"
            raise StageError(msg) from None
        inputs: list[str] = []
        params: list[str] = []
        for p in sig.parameters.values():
            if p.name not in hints:
                msg = f"stage `{fn.__name__}`: parameter `{p.name}` needs a type annotation"
                raise StageError(msg)
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                if not _is_lazy(hints[p.name]):
                    msg = (
                        f"stage `{fn.__name__}`: positional parameter `{p.name}` "
                        "must be a pl.LazyFrame; "
                        f"make it keyword-only (after `*`) if it is a param"
                    )
                    raise StageError(msg)
                inputs.append(p.name)
            elif p.kind is p.KEYWORD_ONLY:
                params.append(p.name)
            else:
                msg = f"stage `{fn.__name__}`: *args/**kwargs are not allowed; declare each one"
                raise StageError(msg)
        if "return" not in hints:
            msg = f"stage `{fn.__name__}`: add a return annotation (`-> pl.LazyFrame`)"
            raise StageError(msg)
        outs = (output,) if isinstance(output, str) else tuple(output or (fn.__name__,))
        return Stage(
            name=fn.__name__,
            fn=fn,
            inputs=tuple(inputs),
            outputs=outs,
            params=tuple(params),
            shard=shard,
            doc=(fn.__doc__ or "").strip().split("\n")[0],
        )

    return decorate


@dataclass(frozen=True)
class Step:
    """A stage bound into a pipeline: its params and the context names it reads and writes."""

    stage: Stage
    params: FrozenTable
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    name: str

    def call(self, *frames: pl.LazyFrame) -> tuple[pl.LazyFrame, ...]:
        """Call the stage on lazy frames; check it kept its contract; name it in any error."""
        try:
            result = self.stage.fn(*frames, **dict(self.params))
        except Exception as exc:
            if isinstance(exc, StageError):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            msg = f"stage `{self.name}` failed: {type(exc).__name__}: {first}"
            raise StageError(msg) from exc
        results = result if isinstance(result, tuple) else (result,)
        if len(results) != len(self.outputs) or not all(
            isinstance(r, pl.LazyFrame) for r in results
        ):
            got = ", ".join(type(r).__name__ for r in results)
            msg = f"stage `{self.name}` must return {len(self.outputs)} LazyFrame(s), got {got}"
            raise StageError(msg)
        return results


@dataclass(frozen=True)
class Pipeline:
    """An ordered tuple of steps; each reads names that earlier steps (or the context) provide."""

    steps: tuple[Step, ...]
    name: str = "pipeline"
    meta: FrozenTable = field(default_factory=lambda: FrozenTable({}))

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for step in self.steps:
            dup = seen.intersection(step.outputs)
            if dup:
                msg = f"pipeline `{self.name}`: output `{sorted(dup)[0]}` is produced twice"
                raise StageError(msg)
            seen.update(step.outputs)

    @property
    def sources(self) -> tuple[str, ...]:
        """Names the pipeline needs from the context (not produced by any step)."""
        produced: set[str] = set()
        needed: list[str] = []
        for step in self.steps:
            for name in step.inputs:
                if name not in produced and name not in needed:
                    needed.append(name)
            produced.update(step.outputs)
        return tuple(needed)

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(o for s in self.steps for o in s.outputs)

    def levels(self, available: set[str] | frozenset[str] = frozenset()) -> list[list[Step]]:
        """Steps grouped into levels; steps in one level are independent of each other."""
        ready = set(available) | set(self.sources)
        remaining = list(self.steps)
        levels: list[list[Step]] = []
        while remaining:
            level = [s for s in remaining if all(i in ready for i in s.inputs)]
            if not level:
                missing = sorted({i for s in remaining for i in s.inputs} - ready)
                msg = f"pipeline `{self.name}` cannot resolve input(s) {missing}"
                raise StageError(msg)
            levels.append(level)
            for s in level:
                ready.update(s.outputs)
            remaining = [s for s in remaining if s not in level]
        return levels

    def apply_lazy(
        self, frames: Mapping[str, pl.LazyFrame], *, until: str | None = None
    ) -> dict[str, pl.LazyFrame]:
        """Compose every step lazily (no I/O, nothing collected); stop after output ``until``."""
        env = dict(frames)
        missing = [s for s in self.sources if s not in env]
        if missing:
            msg = f"pipeline `{self.name}` needs input(s) {missing}"
            raise StageError(msg)
        for step in self.steps:
            outs = step.call(*(env[i] for i in step.inputs))
            env.update(zip(step.outputs, outs, strict=True))
            if until is not None and until in step.outputs:
                break
        return env

    def until(self, output: str) -> Pipeline:
        """The prefix of steps needed up to and including the step producing ``output``."""
        for i, step in enumerate(self.steps):
            if output in step.outputs:
                return Pipeline(self.steps[: i + 1], self.name, self.meta)
        msg = f"pipeline `{self.name}` has no output `{output}`"
        raise StageError(msg)
