"""Prefect as an optional wrapper: a pipeline as a flow whose tasks pass refs, never frames.

The only module in qpipe that imports ``prefect`` (lazily). :func:`as_flow` turns a
:class:`~qpipe.stages.base.Pipeline` into a Prefect flow; each task runs one step with
:func:`qpipe.engines.local.run_step` (open the input refs zero-copy, call the stage, store the
output) and returns its :class:`~qpipe.engines.base.StageRecord`, which holds refs only.
Result persistence and task caching are off, so Prefect never serializes data; the flow's
parameter is the run context (names to :class:`~qpipe.store.DatasetRef`).

With no ``PREFECT_API_URL`` Prefect runs in its ephemeral mode: it starts a temporary local
API server (a subprocess, SQLite under ``PREFECT_HOME``) for the life of the process. No
long-running Prefect server is needed; nothing else in qpipe needs Prefect.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from qpipe.context import RunContext
from qpipe.engines.base import EngineRun, StageRecord, StepCache
from qpipe.engines.local import run_step
from qpipe.errors import OptionalDependencyError
from qpipe.stages.base import Pipeline
from qpipe.store import ArrowStore, DatasetRef

__all__ = ["as_flow"]


def _prefect() -> Any:
    try:
        import prefect
    except ImportError:
        msg = "the prefect wrapper needs prefect: pip install 'qpipe[prefect]'"
        raise OptionalDependencyError(msg) from None
    return prefect


def _name(text: str) -> str:
    # Prefect rejects some characters in names; keep them readable and safe
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "pipeline"


def as_flow(
    pipeline: Pipeline,
    *,
    store: ArrowStore,
    name: str | None = None,
    cache: StepCache | None = None,
) -> Any:
    """A Prefect flow running ``pipeline`` one step per task; only refs pass between tasks.

    Parameters
    ----------
    pipeline
        The steps; independent steps of one level are submitted together.
    store
        Where inputs are read and outputs written (every task worker must see it).
    name
        The flow's name (default ``qpipe-<pipeline name>``).
    cache
        An optional shared :class:`StepCache` (as in a sweep).

    Returns
    -------
    prefect.Flow
        Call it with a :class:`RunContext` (or a mapping of names to ``DatasetRef``) holding the
        pipeline's sources; it returns an :class:`EngineRun` (the context with every output
        ref, and one record per step).

    Examples
    --------
    >>> flow = as_flow(build_strategy(cfg), store=store)  # doctest: +SKIP
    >>> done = flow(RunContext({"prices": prices_ref}))  # doctest: +SKIP
    >>> done.context["weights"].digest  # doctest: +SKIP
    """
    _prefect()
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    flow_name = _name(name or f"qpipe-{pipeline.name}")
    steps = {step.name: step for step in pipeline.steps}

    @task(name="qpipe-step", persist_result=False, cache_policy=NO_CACHE)
    def run_one(step_name: str, context: RunContext) -> StageRecord:
        return run_step(steps[step_name], context, store, None, cache)

    @flow(name=flow_name, persist_result=False, validate_parameters=False, log_prints=False)
    def pipeline_flow(context: Mapping[str, DatasetRef]) -> EngineRun:
        ctx = context if isinstance(context, RunContext) else RunContext(context)
        records: list[StageRecord] = []
        for level in pipeline.levels(set(ctx)):
            futures = [
                run_one.with_options(task_run_name=_name(s.name)).submit(s.name, ctx)
                for s in level
            ]
            for future in futures:  # pipeline order, whatever finished first
                record = future.result()
                ctx = ctx.with_refs(**record.outputs)
                records.append(record)
        return EngineRun(ctx, tuple(records))

    return pipeline_flow
