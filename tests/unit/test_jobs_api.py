"""Submitting, listing and cancelling jobs through the API, without Ray."""

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from raydc.server.control_plane import ControlPlane
from raydc.specs.capacity import ClusterCapacity
from raydc.specs.demand import Demand
from raydc.store.models import JobEventRow, JobRow
from tests.unit.factories import ADMIN, make_tenant, make_token, train_spec

YAML_SPEC = """
kind: train
name: yaml-job
code: {app: sentiment}
entrypoint: sentiment.train:train_loop
resources: {workers: 2, cpus_per_worker: 0.5}
priority: high
"""


def row_counts(control_plane: ControlPlane) -> tuple[int, int]:
    with control_plane.sessions() as session:
        jobs = session.scalar(select(func.count()).select_from(JobRow))
        events = session.scalar(select(func.count()).select_from(JobEventRow))
    return jobs or 0, events or 0


def test_submit_json_returns_a_pending_job(api: TestClient) -> None:
    response = api.post("/v1/jobs", json=train_spec(), headers=ADMIN)
    assert response.status_code == 201
    job = response.json()
    assert job["status"] == "PENDING" and job["kind"] == "train" and job["name"] == "sentiment"
    assert job["id"].startswith("sentiment-")
    assert job["started_at"] is None and job["result"] is None
    events = api.get(f"/v1/jobs/{job['id']}/events", headers=ADMIN).json()
    assert [(e["from_status"], e["to_status"]) for e in events] == [(None, "PENDING")]


def test_submit_yaml(api: TestClient) -> None:
    headers = {**ADMIN, "content-type": "application/yaml"}
    response = api.post("/v1/jobs", content=YAML_SPEC, headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["priority"] == "high"
    assert response.json()["spec"]["resources"]["workers"] == 2


def test_a_bad_spec_names_the_field_and_writes_nothing(
    api: TestClient, control_plane: ControlPlane
) -> None:
    response = api.post("/v1/jobs", json=train_spec(epochs=3), headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "epochs"]
    assert row_counts(control_plane) == (0, 0)


def test_broken_yaml_is_a_clear_422(api: TestClient) -> None:
    headers = {**ADMIN, "content-type": "application/yaml"}
    response = api.post("/v1/jobs", content="kind: [train", headers=headers)
    assert response.status_code == 422
    assert "not valid YAML" in response.json()["detail"][0]["msg"]


def test_an_unknown_app_is_refused(api: TestClient, control_plane: ControlPlane) -> None:
    response = api.post("/v1/jobs", json=train_spec(code={"app": "nope"}), headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "code", "app"]
    assert row_counts(control_plane) == (0, 0)


def test_a_job_larger_than_the_tenant_quota_is_refused(
    api: TestClient, control_plane: ControlPlane
) -> None:
    make_tenant(api, "small", cpu=2)
    spec = train_spec(resources={"workers": {"min": 3, "max": 4}, "cpus_per_worker": 1})
    response = api.post("/v1/jobs", json=spec, headers=make_token(api, "small"))
    assert response.status_code == 422
    message = response.json()["detail"][0]["msg"]
    assert "cpu=3 at its minimum size, over the quota limit of 2" in message
    assert row_counts(control_plane) == (0, 0)


def test_a_job_larger_than_the_cluster_is_refused(
    api: TestClient, control_plane: ControlPlane
) -> None:
    node = Demand(cpu=4, gpu=0, memory_gb=16)
    control_plane.link.capacity = ClusterCapacity(total=node + node, nodes=(node, node))
    too_wide = train_spec(resources={"workers": {"min": 9, "max": 9}, "cpus_per_worker": 1})
    response = api.post("/v1/jobs", json=too_wide, headers=ADMIN)
    assert response.status_code == 422
    assert "the whole cluster has cpu=8" in response.json()["detail"][0]["msg"]
    too_tall = train_spec(resources={"workers": 1, "cpus_per_worker": 1, "gpus_per_worker": 1})
    response = api.post("/v1/jobs", json=too_tall, headers=ADMIN)
    assert "no node of the cluster can hold one worker" in response.json()["detail"][0]["msg"]
    exotic = train_spec(resources={"workers": 1, "custom": {"TPU": 1}})
    response = api.post("/v1/jobs", json=exotic, headers=ADMIN)
    assert response.status_code == 422
    assert "TPU=1" in response.json()["detail"][0]["msg"]
    fits = train_spec(resources={"workers": {"min": 8, "max": 16}, "cpus_per_worker": 1})
    assert api.post("/v1/jobs", json=fits, headers=ADMIN).status_code == 201


def test_list_filters_and_pages(api: TestClient) -> None:
    ids = [api.post("/v1/jobs", json=train_spec(), headers=ADMIN).json()["id"] for _ in range(5)]
    api.post(f"/v1/jobs/{ids[0]}/cancel", headers=ADMIN)
    page = api.get("/v1/jobs", params={"limit": 2, "offset": 0}, headers=ADMIN).json()
    assert page["total"] == 5 and len(page["items"]) == 2
    assert page["items"][0]["id"] == ids[-1]  # newest first
    rest = api.get("/v1/jobs", params={"limit": 10, "offset": 2}, headers=ADMIN).json()
    assert {j["id"] for j in page["items"] + rest["items"]} == set(ids)
    cancelled = api.get("/v1/jobs", params={"status": "CANCELLED"}, headers=ADMIN).json()
    assert [j["id"] for j in cancelled["items"]] == [ids[0]]
    assert api.get("/v1/jobs", params={"status": "BOGUS"}, headers=ADMIN).status_code == 422
    assert api.get("/v1/jobs", params={"kind": "train"}, headers=ADMIN).json()["total"] == 5


def test_cancel_a_pending_job(api: TestClient) -> None:
    job_id = api.post("/v1/jobs", json=train_spec(), headers=ADMIN).json()["id"]
    response = api.post(f"/v1/jobs/{job_id}/cancel", headers=ADMIN)
    assert response.status_code == 202
    job = api.get(f"/v1/jobs/{job_id}", headers=ADMIN).json()
    assert job["status"] == "CANCELLED" and job["finished_at"] is not None
    assert job["termination_reason"] == "cancelled_by_user"
    again = api.post(f"/v1/jobs/{job_id}/cancel", headers=ADMIN)
    assert again.status_code == 409
    assert "already finished" in again.json()["detail"]


def test_logs_of_a_job_that_never_ran_are_empty(api: TestClient) -> None:
    job_id = api.post("/v1/jobs", json=train_spec(), headers=ADMIN).json()["id"]
    assert api.get(f"/v1/jobs/{job_id}/logs", headers=ADMIN).text == ""


def test_queue_lists_pending_jobs_in_scheduling_order(api: TestClient) -> None:
    low = api.post("/v1/jobs", json=train_spec(priority="low"), headers=ADMIN).json()["id"]
    high = api.post("/v1/jobs", json=train_spec(priority="high"), headers=ADMIN).json()["id"]
    normal = api.post("/v1/jobs", json=train_spec(), headers=ADMIN).json()["id"]
    queue = api.get("/v1/queue", headers=ADMIN).json()
    assert [entry["id"] for entry in queue] == [high, normal, low]


def test_metrics_count_jobs(api: TestClient) -> None:
    api.post("/v1/jobs", json=train_spec(), headers=ADMIN)
    text = api.get("/metrics", headers=ADMIN).text
    assert 'raydc_jobs{priority="normal",status="PENDING",tenant="default"} 1.0' in text
