"""GET /metrics: queue depth and job gauges from the database, the scheduling pass and
admission-wait histograms, request durations by route template, deployment replicas."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from raydc.cluster.jobs import submission_id
from raydc.cluster.serve import AppStatus, DeploymentState
from raydc.server.control_plane import ControlPlane
from raydc.server.services.job_status import switch_job_status
from raydc.server.services.launch import logs_path
from raydc.server.services.models import register_version
from raydc.specs.capacity import ClusterCapacity
from raydc.specs.demand import Demand
from raydc.specs.status import JobStatus
from raydc.store.models import JobRow, utcnow
from tests.unit.factories import ADMIN, make_tenant, make_token, train_spec

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(api: TestClient) -> Samples:
    # Prometheus sends a monitor token; who may read /metrics is test_metrics_auth.py's.
    response = api.get("/metrics", headers=ADMIN)
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def label_values(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(labels)[label] for sample, labels in samples if sample == name}


def one_cpu_job(**overrides: Any) -> dict[str, Any]:
    return train_spec(resources={"workers": 1, "cpus_per_worker": 1}, **overrides)


def submit(api: TestClient, headers: dict[str, str], priority: str) -> str:
    response = api.post("/v1/jobs", json=one_cpu_job(priority=priority), headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def set_cluster(control_plane: ControlPlane, cpu: float) -> None:
    node = Demand(cpu=cpu, gpu=0, memory_gb=64)
    control_plane.link.capacity = ClusterCapacity(total=node, nodes=(node,))


def test_queue_depth_counts_pending_jobs_per_tenant_and_priority(api: TestClient) -> None:
    make_tenant(api, "alpha")
    make_tenant(api, "beta")
    alpha, beta = make_token(api, "alpha"), make_token(api, "beta")
    for priority in ("normal", "normal", "high"):
        submit(api, alpha, priority)
    submit(api, beta, "low")
    samples = scrape(api)
    assert value(samples, "raydc_queue_depth", tenant="alpha", priority="normal") == 2
    assert value(samples, "raydc_queue_depth", tenant="alpha", priority="high") == 1
    assert value(samples, "raydc_queue_depth", tenant="beta", priority="low") == 1
    assert value(samples, "raydc_queue_depth", tenant="beta", priority="normal") is None
    jobs = value(samples, "raydc_jobs", tenant="alpha", priority="normal", status="PENDING")
    assert jobs == 2
    assert value(samples, "raydc_cluster_connected") == 0


def test_a_scheduling_pass_records_its_duration_and_each_admitted_jobs_wait(
    api: TestClient, control_plane: ControlPlane
) -> None:
    set_cluster(control_plane, cpu=2)
    make_tenant(api, "alpha")
    make_tenant(api, "beta")
    alpha, beta = make_token(api, "alpha"), make_token(api, "beta")
    fresh = submit(api, alpha, "high")
    requeued = submit(api, alpha, "normal")
    submit(api, beta, "low")  # no room left for it: it stays queued
    now = utcnow()
    with control_plane.sessions() as session, session.begin():
        # Submitted an hour ago, preempted and requeued a minute ago: it has waited a minute.
        row = session.get(JobRow, requeued)
        assert row is not None
        row.created_at, row.queued_at = now - timedelta(hours=1), now - timedelta(seconds=60)
        # Never requeued: it has waited since its submission.
        row = session.get(JobRow, fresh)
        assert row is not None
        row.created_at = now - timedelta(seconds=300)
    before = scrape(api)
    assert value(before, "raydc_scheduling_pass_seconds_count") == 0
    assert label_values(before, "raydc_admission_wait_seconds_count", "priority") == set()

    assert sorted(control_plane.reconciler.schedule()) == sorted([fresh, requeued])
    samples = scrape(api)
    assert value(samples, "raydc_scheduling_pass_seconds_count") == 1
    wait = "raydc_admission_wait_seconds"
    assert value(samples, f"{wait}_count", priority="high") == 1
    assert value(samples, f"{wait}_count", priority="normal") == 1
    assert value(samples, f"{wait}_count", priority="low") is None
    high_wait = value(samples, f"{wait}_sum", priority="high")
    normal_wait = value(samples, f"{wait}_sum", priority="normal")
    assert high_wait is not None and 300 <= high_wait < 3600
    assert normal_wait is not None and 60 <= normal_wait < 300
    assert value(samples, f"{wait}_bucket", priority="normal", le="120.0") == 1
    assert value(samples, f"{wait}_bucket", priority="normal", le="60.0") == 0
    # Admitted jobs leave the queue; the pair stays, at 0.
    assert value(samples, "raydc_queue_depth", tenant="alpha", priority="high") == 0
    assert value(samples, "raydc_queue_depth", tenant="beta", priority="low") == 1

    # A pass that admits nobody is still a pass.
    assert control_plane.reconciler.schedule() == []
    samples = scrape(api)
    assert value(samples, "raydc_scheduling_pass_seconds_count") == 2
    assert value(samples, f"{wait}_count", priority="high") == 1


def test_request_durations_are_labelled_by_route_template_not_by_path(
    api: TestClient,
) -> None:
    job_id = submit(api, ADMIN, "normal")
    assert api.get(f"/v1/jobs/{job_id}", headers=ADMIN).status_code == 200
    assert api.get(f"/v1/jobs/{job_id}", headers=ADMIN).status_code == 200
    assert api.get("/v1/jobs/no-such-job", headers=ADMIN).status_code == 404
    assert api.get(f"/v1/jobs/{job_id}").status_code == 401
    assert api.get(f"/nowhere/{job_id}").status_code == 404
    assert api.request("BREW", "/v1/jobs", headers=ADMIN).status_code == 405
    samples = scrape(api)
    count = "raydc_http_request_duration_seconds_count"
    job = "/v1/jobs/{job_id}"
    assert value(samples, count, method="GET", route=job, status="200") == 2
    assert value(samples, count, method="GET", route=job, status="404") == 1
    assert value(samples, count, method="GET", route=job, status="401") == 1
    assert value(samples, count, method="POST", route="/v1/jobs", status="201") == 1
    assert value(samples, count, method="GET", route="<unmatched>", status="404") == 1
    assert value(samples, count, method="other", route="/v1/jobs", status="405") == 1
    routes = label_values(samples, count, "route")
    assert not any(job_id in route for route in routes), routes
    assert routes <= {job, "/v1/jobs", "<unmatched>", "/metrics"}


def test_a_followed_log_stream_is_counted_under_its_route_once_it_ends(
    api: TestClient, control_plane: ControlPlane
) -> None:
    set_cluster(control_plane, cpu=1)
    job_id = submit(api, ADMIN, "normal")
    assert control_plane.reconciler.schedule() == [job_id]
    with control_plane.sessions() as session, session.begin():
        row = session.get(JobRow, job_id)
        assert row is not None
        switch_job_status(session, row, JobStatus.FAILED, reason="test")
    saved = logs_path(control_plane.settings, job_id, submission_id(job_id, 1))
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text("epoch 1\nepoch 2\n")
    with api.stream("GET", f"/v1/jobs/{job_id}/logs?follow=true", headers=ADMIN) as response:
        assert response.status_code == 200
        assert response.read().decode() == "epoch 1\nepoch 2\n"
    samples = scrape(api)
    route = "/v1/jobs/{job_id}/logs"
    count = "raydc_http_request_duration_seconds_count"
    assert value(samples, count, method="GET", route=route, status="200") == 1


class FakeServe:
    """Serve running every application it is given with 2 of 3 stable replicas up."""

    def __init__(self) -> None:
        self.running: list[dict[str, Any]] = []

    def upload_modules(self, paths: list[Path]) -> list[str]:
        return ["gcs://_ray_pkg_test.zip"]

    def apply(self, applications: list[dict[str, Any]], host: str, port: int) -> None:
        self.running = applications

    def status(self) -> dict[str, AppStatus]:
        stable = DeploymentState("UPSCALING", running_replicas=2, target_replicas=3)
        return {app["name"]: AppStatus("RUNNING", "", {"Stable": stable}) for app in self.running}


def test_deployment_gauges_show_the_replicas_serve_reported(
    api: TestClient, control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = submit(api, ADMIN, "normal")
    with control_plane.sessions() as session, session.begin():
        register_version(session, "default", "sentiment", "/ckpt/sentiment/1", {}, job)
    body = {"name": "sent", "model": "sentiment:1"}
    assert api.post("/v1/deployments", json=body, headers=ADMIN).status_code == 201
    samples = scrape(api)
    labels = {"tenant": "default", "deployment": "sent"}
    assert value(samples, "raydc_deployment_replicas", **labels) == 0
    assert value(samples, "raydc_deployment_target_replicas", **labels) is None  # not read yet

    monkeypatch.setattr(control_plane.link, "_cluster", object())
    monkeypatch.setattr(control_plane.deployer, "_serve_for", lambda cluster: FakeServe())
    control_plane.deployer.run_once()
    samples = scrape(api)
    assert value(samples, "raydc_deployment_replicas", **labels) == 2
    assert value(samples, "raydc_deployment_target_replicas", **labels) == 3
    assert value(samples, "raydc_deployment_canary_replicas", **labels) == 0
