"""The Ray engine: the same pipeline on a local or remote Ray cluster; only refs travel.

The only package in qpipe that imports ``ray`` (lazily: ``import qpipe`` works without it).
For each level of independent steps (see :meth:`Pipeline.levels`):

1. resolve every input name to a :class:`~qpipe.store.DatasetRef` (a cached step is reused
   from the :class:`~qpipe.engines.base.StepCache` and never submitted);
2. plan the shards (:func:`._tasks.plan_shards`): a ``shard="symbol"`` stage is split into
   contiguous ranges of symbols (a symbol's whole history stays in one task), a
   ``shard="date"`` stage into contiguous ranges of dates (every date stays whole), an
   unsharded stage is one task.
   A shard is described by ``(column, low, high)``, so what a task receives does not grow with
   the universe;
3. submit one task per shard (:func:`._tasks.shard_task`) with refs only: the step (``ray.put``
   once per step), the input refs and the shard bounds. With ``transport="path"`` the inputs are
   store paths every worker can read (shared storage); the task memory-maps them and writes its
   output to the store's scratch folder. With ``transport="object"`` the driver ``ray.put``\\ s
   each input once, as the bytes of its Arrow IPC file (workers map it zero-copy from the
   object store), and tasks return their outputs the same way, as ObjectRefs;
4. gather the shard outputs in shard order, put them in the step's output order (shards
   report whether their output is sorted by (shard key, other key) or (other key, shard key));
   a stage whose output order sharding cannot reproduce is re-run as one task, so the result
   is always the frame ``LocalEngine`` would have written: same bytes, same digest;
5. optionally check each output (per-step validation), store it, record the step (shards,
   retries, seconds) and put the new refs into the context.

A task whose worker dies is retried by Ray (``max_retries``); each attempt leaves a marker in
the scratch folder, so the record counts the retries. A task that fails for a data reason
fails the run with the stage's :class:`~qpipe.errors.StageError` (or the ``QpipeError`` the
stage raised), not a Ray traceback. Ctrl-C cancels the submitted tasks and shuts down a
cluster the engine started.

Modules: :mod:`._cluster` (import, loopback-only start, address probe), :mod:`._tasks` (what a
task does, shard plans, IPC bytes), :mod:`._steps` (running a pipeline's steps),
:mod:`.engine` (:class:`RayEngine`, its cluster and ``map_chunks``).
"""

from qpipe.engines.ray._cluster import import_ray, loopback_only, probe_address
from qpipe.engines.ray._tasks import (
    ShardSpec,
    TaskStats,
    Transport,
    ipc_bytes,
    ipc_frame,
    plan_shards,
)
from qpipe.engines.ray.engine import RayEngine

__all__ = [
    "RayEngine",
    "ShardSpec",
    "TaskStats",
    "Transport",
    "import_ray",
    "ipc_bytes",
    "ipc_frame",
    "loopback_only",
    "plan_shards",
    "probe_address",
]
