"""The control plane's connection to its Ray cluster, and the last-known cluster size.

With no ``RAYDC_RAY_ADDRESS`` the link starts (and on exit stops) a local Ray head;
with one it joins that cluster's dashboard. Connecting happens in the reconciler's
thread, so the API answers while Ray is still starting.
"""

from __future__ import annotations

import logging
import threading
import time

from raydc.cluster.client import RayCluster, default_ray_token
from raydc.cluster.jobs_user import JobsUser
from raydc.cluster.local_head import LocalRayHead
from raydc.cluster.state import NodeInfo
from raydc.settings import Settings
from raydc.specs.capacity import ClusterCapacity, capacity_of

log = logging.getLogger(__name__)


class ClusterLink:
    """``jobs_user``: who the local head (and so every job) runs as, if not this process."""

    def __init__(self, settings: Settings, jobs_user: JobsUser | None = None) -> None:
        self.settings = settings
        self.jobs_user = jobs_user
        self._lock = threading.Lock()
        self._cluster: RayCluster | None = None
        self._head: LocalRayHead | None = None
        self.nodes: list[NodeInfo] = []
        self.capacity: ClusterCapacity | None = None
        self._next_refresh = 0.0  # monotonic time of the next node refresh
        self.last_error: str | None = None

    @property
    def cluster(self) -> RayCluster | None:
        return self._cluster

    def connect(self) -> RayCluster:
        with self._lock:
            if self._cluster is not None:
                return self._cluster
            if self.settings.ray_address:
                token = self.settings.ray_auth_token or default_ray_token()
                cluster = RayCluster(self.settings.ray_address, token)
            else:
                head = self._head or LocalRayHead(
                    self.settings.home / "ray", self.settings.local_ray_num_cpus,
                    jobs_user=self.jobs_user, env_allow=tuple(self.settings.job_env_allow),
                )  # fmt: skip
                info = head.start()
                self._head = head
                cluster = RayCluster(info.dashboard_url, head.token)
            self.last_error = None
            # Read the nodes before anyone sees the link connected, so that "connected"
            # comes with the cluster's size (a failed read is retried on refresh).
            self._read_nodes(cluster)
            self._next_refresh = 0.0
            self._cluster = cluster
            log.info("connected to Ray at %s", cluster.dashboard_url)
            return cluster

    def disconnect(self, reason: str) -> None:
        """Forget the connection after a failure; the next connect() tries again."""
        with self._lock:
            self._cluster = None
            self.last_error = reason

    def refresh_nodes_if_due(self, every_s: float) -> None:
        """Re-read the nodes at most every ``every_s``, failed attempts included; on
        failure keep the last view (a slow dashboard is not a lost cluster), unless the
        local head this link owns has died."""
        cluster = self._cluster
        if cluster is None or time.monotonic() < self._next_refresh:
            return
        self._next_refresh = time.monotonic() + every_s
        if not self._read_nodes(cluster) and self._head is not None and not self._head.running():
            self.disconnect("the local Ray head exited")

    def _read_nodes(self, cluster: RayCluster) -> bool:
        try:
            nodes = cluster.nodes()
        except Exception as error:
            log.warning("cannot list Ray nodes: %s", error)
            self.last_error = f"cannot list Ray nodes: {error}"
            return False
        self.nodes = nodes
        # A head that just started lists no node yet: its size is unknown, not zero.
        self.capacity = capacity_of(nodes) if any(n.alive for n in nodes) else None
        return True

    def close(self) -> None:
        with self._lock:
            self._cluster = None
            if self._head is not None:
                log.info("stopping the local Ray head")
                self._head.stop()
                self._head = None
