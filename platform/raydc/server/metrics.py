"""GET /metrics: gauges read from the database at scrape time (nothing to keep in sync),
plus this process's histograms (server/process_metrics.py)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from raydc.server.control_plane import ControlPlane
from raydc.specs.status import JobStatus
from raydc.store.models import DeploymentRow, JobRow


class DatabaseCollector:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._jobs()
        yield from self._deployments()
        yield from self._cluster()

    def _jobs(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily(
            "raydc_jobs",
            "Jobs by tenant, priority and status",
            labels=["tenant", "priority", "status"],
        )
        queue = GaugeMetricFamily(
            "raydc_queue_depth",
            "PENDING jobs by tenant and priority (0 for a pair with jobs, none pending)",
            labels=["tenant", "priority"],
        )
        pending: dict[tuple[str, str], int] = {}
        with self.cp.sessions() as session:
            rows = session.execute(
                select(JobRow.tenant, JobRow.priority, JobRow.status, func.count()).group_by(
                    JobRow.tenant, JobRow.priority, JobRow.status
                )
            )
            for tenant, priority, status, count in rows:
                jobs.add_metric([tenant, priority, status], count)
                waiting = count if status == JobStatus.PENDING.value else 0
                pending[tenant, priority] = pending.get((tenant, priority), 0) + waiting
        for (tenant, priority), count in sorted(pending.items()):
            queue.add_metric([tenant, priority], count)
        yield jobs
        yield queue

    def _deployments(self) -> Iterator[GaugeMetricFamily]:
        labels = ["tenant", "deployment"]
        running = GaugeMetricFamily(
            "raydc_deployment_replicas",
            "Running replicas of a deployment's stable version, as the deployment "
            "reconciler last read them from Serve",
            labels=labels,
        )
        canary = GaugeMetricFamily(
            "raydc_deployment_canary_replicas",
            "Running replicas of a deployment's canary version (0 without a canary)",
            labels=labels,
        )
        target = GaugeMetricFamily(
            "raydc_deployment_target_replicas",
            "Replicas Serve's autoscaler wants for a deployment's stable version (absent "
            "until the reconciler has read it; Serve's canary target is not recorded)",
            labels=labels,
        )
        query = select(
            DeploymentRow.tenant,
            DeploymentRow.name,
            DeploymentRow.replicas,
            DeploymentRow.canary_replicas,
            DeploymentRow.target_replicas,
        ).order_by(DeploymentRow.tenant, DeploymentRow.name)
        with self.cp.sessions() as session:
            for tenant, name, replicas, canary_replicas, target_replicas in session.execute(query):
                running.add_metric([tenant, name], replicas)
                canary.add_metric([tenant, name], canary_replicas)
                if target_replicas is not None:
                    target.add_metric([tenant, name], target_replicas)
        yield running
        yield canary
        yield target

    def _cluster(self) -> Iterator[GaugeMetricFamily]:
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
    registry.register(DatabaseCollector(cp))
    registry.register(cp.metrics.registry)
    return generate_latest(registry)
