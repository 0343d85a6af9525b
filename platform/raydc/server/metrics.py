"""Prometheus metrics, read from the database at scrape time (nothing to keep in sync)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from raydc.server.control_plane import ControlPlane
from raydc.store.models import JobRow


class JobsCollector(Collector):
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily(
            "raydc_jobs",
            "Jobs by tenant, priority and status",
            labels=["tenant", "priority", "status"],
        )
        with self.cp.sessions() as session:
            rows = session.execute(
                select(JobRow.tenant, JobRow.priority, JobRow.status, func.count()).group_by(
                    JobRow.tenant, JobRow.priority, JobRow.status
                )
            )
            for tenant, priority, status, count in rows:
                jobs.add_metric([tenant, priority, status], count)
        yield jobs
        capacity = self.cp.link.capacity
        cluster = GaugeMetricFamily(
            "raydc_cluster_capacity", "Cluster capacity", labels=["resource"]
        )
        if capacity is not None:
            for resource, amount in capacity.total.as_dict().items():
                cluster.add_metric([resource], amount)
        yield cluster
        yield GaugeMetricFamily(
            "raydc_cluster_connected", "1 when the control plane reaches Ray",
            value=1.0 if self.cp.link.cluster is not None else 0.0,
        )  # fmt: skip


def render_metrics(cp: ControlPlane) -> bytes:
    registry = CollectorRegistry()
    registry.register(JobsCollector(cp))
    return generate_latest(registry)
