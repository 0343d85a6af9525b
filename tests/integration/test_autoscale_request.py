"""The autoscaler request reaches a real Ray: the request job calls request_resources."""

from __future__ import annotations

import time

import pytest

from raydc.cluster.autoscaler import ResourceRequests
from raydc.cluster.client import RayCluster
from raydc.server.services.launch import RAYDC_PACKAGE_DIR

pytestmark = pytest.mark.workload


def wait_for_end(cluster: RayCluster, sid: str, timeout_s: float = 120) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = cluster.jobs.state(sid).status
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            return status
        time.sleep(0.5)
    raise AssertionError(f"request job {sid} did not end")


def send(requests: ResourceRequests, bundles: list[dict[str, float]]) -> str | None:
    """Send, retrying while a fresh head's job agent is not up yet (the reconciler
    retries the same way: a failed send is sent again at the next pass)."""
    deadline = time.monotonic() + 90
    while True:
        try:
            return requests.send(bundles)
        except RuntimeError as error:
            if "No available agent" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(1)


def test_the_request_job_passes_the_bundles_to_ray(ray_head: RayCluster) -> None:
    requests = ResourceRequests(
        ray_head.jobs, {"py_modules": [str(RAYDC_PACKAGE_DIR)]}, min_gap_s=0
    )
    sid = send(requests, [{"cpu": 1.0}, {"cpu": 1.0, "memory_gb": 0.5}])
    assert sid is not None
    assert wait_for_end(ray_head, sid) == "SUCCEEDED", ray_head.jobs.logs(sid)
    assert "requested 2 bundles" in ray_head.jobs.logs(sid)
    cleared = send(requests, [])  # the queue drained: the request is withdrawn
    assert cleared is not None and wait_for_end(ray_head, cleared) == "SUCCEEDED"
