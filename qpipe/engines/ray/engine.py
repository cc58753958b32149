"""The Ray engine: the cluster it starts or joins, and :meth:`RayEngine.map_chunks` for sweeps.

Running a pipeline's steps as shard tasks is :class:`~qpipe.engines.ray._steps.StepRunner`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from qpipe.engines.ray._cluster import bounded_init, loopback_only, probe_address, require_ray
from qpipe.engines.ray._steps import StepRunner
from qpipe.engines.ray._tasks import TaskStats, Transport, chunk_task, shard_task
from qpipe.errors import EngineError, QpipeError

__all__ = ["RayEngine"]

S = TypeVar("S")
C = TypeVar("C")
R = TypeVar("R")


class RayEngine(StepRunner):
    """Run pipelines on Ray: sharded steps as one task per shard; only refs cross processes.

    Parameters
    ----------
    address
        ``None`` starts a local cluster bound to 127.0.0.1 (no dashboard, quiet logs) on first
        use and shuts it down on :meth:`close`; an address (``"host:port"``, ``"auto"``) joins
        an existing cluster, which is left running. A Ray already initialised in this process
        is reused and left running.
    num_cpus, object_store_memory
        Resources of a local cluster (ignored when joining one).
    max_retries
        Ray retries a task this many times when its worker dies; the retries are recorded.
    shards
        Tasks per sharded step (default: the cluster's CPUs), capped by the distinct keys.
    transport
        ``"path"``: tasks read and write store files (every node must see the store path).
        ``"object"``: inputs travel as ObjectRefs to Arrow tables in the object store and tasks
        return tables; only the driver touches the store.
    connect_timeout
        Seconds to wait for a cluster at ``address`` (a TCP probe, then ``ray.init``) before
        raising :class:`EngineError` (``[engine] connect_timeout``).

    Examples
    --------
    >>> with RayEngine(num_cpus=2) as engine:  # doctest: +SKIP
    ...     done = engine.run(pipeline, RunContext({"prices": ref}), store)
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        *,
        object_store_memory: int | None = None,
        max_retries: int = 2,
        shards: int | None = None,
        transport: Transport = "path",
        connect_timeout: float = 30.0,
    ) -> None:
        if transport not in ("path", "object"):
            msg = f"ray `transport` must be path or object, got {transport!r}"
            raise EngineError(msg)
        self.address = address
        self.num_cpus = num_cpus
        self.object_store_memory = object_store_memory
        self.max_retries = max(0, int(max_retries))
        self.shards = shards
        self.transport: Transport = transport
        self.connect_timeout = float(connect_timeout)
        self.stats = TaskStats()
        self._ray = require_ray()
        self._started = False
        self._remote: Any = None
        self._chunk_remote: Any = None

    # cluster ---------------------------------------------------------------------------
    @property
    def ray(self) -> Any:
        """The ``ray`` module, initialised (a local cluster is started on first use)."""
        ray = self._ray
        if not ray.is_initialized():
            where = self.address or "a local cluster"
            if self.address is not None:
                probe_address(self.address, self.connect_timeout)
            try:
                if self.address is None:
                    with loopback_only(ray):
                        bounded_init(
                            ray,
                            None,
                            self.connect_timeout,
                            address="local",
                            num_cpus=self.num_cpus,
                            object_store_memory=self.object_store_memory,
                            include_dashboard=False,
                        )
                else:
                    bounded_init(ray, self.address, self.connect_timeout, address=self.address)
            except QpipeError:
                raise
            except Exception as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                msg = f"cannot start or reach ray at `{where}`: {first}"
                raise EngineError(msg) from None
            self._started = True
        return ray

    @property
    def started_cluster(self) -> bool:
        """True if this engine started the Ray it uses (and so shuts it down on close)."""
        return self._started

    def cluster_cpus(self) -> int:
        """CPUs of the cluster (at least 1)."""
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def _task(self) -> Any:
        if self._remote is None:
            self._remote = self.ray.remote(shard_task)
        return self._remote

    def close(self) -> None:
        """Shut down the cluster if this engine started it; a joined cluster keeps running."""
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False
        self._remote = None
        self._chunk_remote = None

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # chunks ----------------------------------------------------------------------------
    def map_chunks(
        self,
        fn: Callable[[S, C], R],
        shared: S,
        chunks: Iterable[C],
        on_result: Callable[[C, R], None],
    ) -> None:
        """``on_result(chunk, fn(shared, chunk))`` for every chunk, as tasks finish.

        ``shared`` is put in the object store once; a task receives ``fn`` (by reference),
        that ObjectRef and its chunk, so its arguments do not grow with what ``shared`` points
        at (:attr:`stats` records the pickled size of each task's arguments). At most two
        tasks per cluster CPU are in flight, and ``chunks`` is read lazily, so a planner that
        sizes the next chunk from ``on_result`` sees every measurement before cutting it. A
        task whose worker dies is retried (``max_retries``); an error ``fn`` raises is raised
        here (a :class:`QpipeError` as itself). On any exception, Ctrl-C included, the tasks
        in flight are cancelled before it propagates.
        """
        ray = self.ray
        self.stats = TaskStats()
        shared_ref = ray.put(shared)
        if self._chunk_remote is None:
            self._chunk_remote = ray.remote(chunk_task)
        task = self._chunk_remote.options(
            max_retries=self.max_retries, retry_exceptions=False, scheduling_strategy="SPREAD"
        )
        window = 2 * self.cluster_cpus()
        source = iter(chunks)
        pending: dict[Any, C] = {}

        def fill() -> None:
            while len(pending) < window:
                chunk = next(source, None)
                if chunk is None:
                    return
                args = (fn, shared_ref, chunk)
                self.stats.add(len(ray.cloudpickle.dumps(args)))
                pending[task.remote(*args)] = chunk

        try:
            fill()
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    chunk = pending.pop(ref)
                    value, node = self._chunk_value(ref)
                    self.stats.nodes.add(node)
                    on_result(chunk, value)
                fill()
        except BaseException:
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise

    def _chunk_value(self, ref: Any) -> Any:
        ray = self.ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, QpipeError):
                raise cause.with_traceback(None) from None
            first = (str(cause or exc).strip().splitlines() or [type(exc).__name__])[0]
            msg = f"sweep task failed: {type(cause or exc).__name__}: {first}"
            raise EngineError(msg) from None
        except ray.exceptions.RayError as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            msg = (
                f"sweep task could not finish after {self.max_retries} retries: "
                f"{type(exc).__name__}: {first}"
            )
            raise EngineError(msg) from None
