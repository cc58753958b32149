"""Ray clusters for the integration tests, started once per session.

Starting Ray costs ~15-25 s on the 2-core CI machine, so one :class:`RayHub` owns whatever is
running: a single-node local cluster (``hub.local()``, 2 CPUs, 100 MB object store) or a
two-node ``ray.cluster_utils.Cluster`` (``hub.multinode()``). Switching stops the other first;
the session's end stops everything. Test modules put their single-node tests first and their
multi-node tests last, so each kind starts once.
"""

from __future__ import annotations

import signal

import pytest

MB = 1024 * 1024


class RayHub:
    """The one Ray this test session runs."""

    def __init__(self) -> None:
        self.mode: str | None = None
        self.engine = None
        self.cluster = None

    def local(self):
        """A RayEngine on a single-node local cluster it started itself (loopback)."""
        from qpipe.engines.ray import RayEngine

        if self.mode != "local":
            self.stop()
            self.engine = RayEngine(num_cpus=2, object_store_memory=100 * MB)
            self.engine.ray  # noqa: B018 - start it now, not inside the first test's timing
            self.mode = "local"
        return self.engine

    def multinode(self) -> str:
        """The address of a two-node cluster (each node with its own raylet and object store)."""
        if self.mode != "multi":
            self.stop()
            from qpipe.engines.ray import import_ray

            ray = import_ray(loopback=True)
            from ray.cluster_utils import Cluster

            cluster = Cluster(
                initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 80 * MB}
            )
            cluster.add_node(num_cpus=1, object_store_memory=80 * MB)
            cluster.wait_for_nodes()
            ray.init(address=cluster.address, log_to_driver=False, logging_level="error")
            self.cluster = cluster
            self.mode = "multi"
        assert self.cluster is not None
        return self.cluster.address

    def stop(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None
        if self.cluster is not None:
            import ray

            ray.shutdown()
            self.cluster.shutdown()
            self.cluster = None
        self.mode = None


@pytest.fixture(scope="package")
def ray_hub():
    """One Ray cluster for the integration tests, stopped when they end: the reliability and unit
    tests that follow run with no Ray processes left (Ray's driver installs a SIGTERM handler
    that exits the process, and a cluster left running under load can fire it mid-test), and the
    process's own signal handlers are put back."""
    pytest.importorskip("ray")
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    hub = RayHub()
    yield hub
    hub.stop()
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


@pytest.fixture
def ray_engine(ray_hub):
    """The session's single-node RayEngine (shared; do not close it)."""
    return ray_hub.local()


@pytest.fixture(scope="module")
def ray_cluster_address(ray_hub):
    """Address of the session's two-node cluster (started once, on first use)."""
    return ray_hub.multinode()
