"""Deployments over REST against a real database (no Ray): validation, versions, tenancy,
quota, and how the scheduler counts a deployment's replicas."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from raydc.server.control_plane import ControlPlane
from raydc.server.deployer import application, read_wanted
from raydc.server.services.models import register_version
from raydc.specs.capacity import ClusterCapacity
from raydc.specs.demand import Demand
from raydc.store.models import DeploymentRow, JobRow
from tests.unit.factories import ADMIN, make_tenant, make_token, train_spec


def trained(api: TestClient, control_plane: ControlPlane, headers: dict[str, str],
            versions: int = 1, name: str = "sentiment") -> None:  # fmt: skip
    """``versions`` model versions of ``name``, each from its own (submitted) train job."""
    for n in range(versions):
        job = api.post("/v1/jobs", json=train_spec(name=name), headers=headers).json()
        with control_plane.sessions() as session, session.begin():
            row = session.get(JobRow, job["id"])
            assert row is not None
            register_version(session, row.tenant, name, f"/ckpt/{name}/{n + 1}", {}, row.id)


def spec(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "sent",
        "model": "sentiment",
        "resources": {"cpus_per_replica": 0.5},
        "autoscaling": {"min_replicas": 1, "max_replicas": 3},
        "batching": {"max_batch_size": 16, "batch_wait_timeout_s": 0.005},
    }
    body.update(overrides)
    return body


def test_a_deployment_resolves_the_latest_version_and_its_apps_predictor(
    api: TestClient, control_plane: ControlPlane
) -> None:
    trained(api, control_plane, ADMIN, versions=2)
    response = api.post("/v1/deployments", json=spec(), headers=ADMIN)
    assert response.status_code == 201, response.text
    out = response.json()
    assert out["model"] == "sentiment:2" and out["status"] == "DEPLOYING"
    assert out["spec"]["predictor"] == "sentiment.serve:Predictor"
    assert out["url"] == "http://127.0.0.1:8000/serve/default/sent/predict"
    assert api.get("/v1/deployments/sent", headers=ADMIN).json()["model"] == "sentiment:2"
    assert [d["name"] for d in api.get("/v1/deployments", headers=ADMIN).json()] == ["sent"]
    assert api.post("/v1/deployments", json=spec(), headers=ADMIN).status_code == 409


def test_bad_specs_name_the_field(api: TestClient, control_plane: ControlPlane) -> None:
    trained(api, control_plane, ADMIN)
    cases = [
        (spec(model="Sentiment"), ["body", "model"]),
        (spec(model="nope"), ["body", "model"]),
        (spec(model="sentiment:7"), ["body", "model"]),
        (spec(autoscaling={"min_replicas": 3, "max_replicas": 2}), ["body", "autoscaling"]),
        (spec(batching={"max_batch_size": 0}), ["body", "batching", "max_batch_size"]),
        (spec(canary={"model": "sentiment", "percent": 120}), ["body", "canary", "percent"]),
        (spec(predictor="not a path"), ["body", "predictor"]),
        (spec(replicas=2), ["body", "replicas"]),
    ]
    for body, loc in cases:
        response = api.post("/v1/deployments", json=body, headers=ADMIN)
        assert response.status_code == 422, (body, response.text)
        assert [d["loc"] for d in response.json()["detail"]] == [loc], response.text
    assert api.get("/v1/deployments", headers=ADMIN).json() == []


def test_patch_changes_version_canary_and_scaling_and_bumps_the_generation(
    api: TestClient, control_plane: ControlPlane
) -> None:
    trained(api, control_plane, ADMIN, versions=3)
    api.post("/v1/deployments", json=spec(model="sentiment:1"), headers=ADMIN)
    patched = api.patch(
        "/v1/deployments/sent",
        json={"model": "sentiment:2", "canary": {"model": "sentiment", "percent": 20},
              "autoscaling": {"min_replicas": 0, "max_replicas": 4}},
        headers=ADMIN,
    ).json()  # fmt: skip
    assert patched["model"] == "sentiment:2"
    assert patched["canary"] == {"model": "sentiment:3", "percent": 20.0}
    assert patched["spec"]["autoscaling"]["min_replicas"] == 0 and patched["generation"] == 2
    assert patched["spec"]["batching"]["max_batch_size"] == 16  # untouched
    removed = api.patch("/v1/deployments/sent", json={"canary": None}, headers=ADMIN).json()
    assert removed["canary"] is None and removed["generation"] == 3
    other = api.patch("/v1/deployments/sent", json={"model": "other:1"}, headers=ADMIN)
    assert other.status_code == 422 and other.json()["detail"][0]["loc"] == ["body", "model"]
    assert api.patch("/v1/deployments/nope", json={}, headers=ADMIN).status_code == 404


def test_another_tenant_neither_sees_nor_changes_a_deployment(
    api: TestClient, control_plane: ControlPlane
) -> None:
    make_tenant(api, "team-a")
    make_tenant(api, "team-b")
    a, b = make_token(api, "team-a"), make_token(api, "team-b")
    viewer = make_token(api, "team-a", "viewer")
    trained(api, control_plane, a)
    assert api.post("/v1/deployments", json=spec(), headers=a).status_code == 201
    # team-b has no model of that name: it cannot deploy team-a's model either.
    assert api.post("/v1/deployments", json=spec(), headers=b).status_code == 422
    assert api.get("/v1/deployments/sent", headers=b).status_code == 404
    assert api.delete("/v1/deployments/sent", headers=b).status_code == 404
    assert api.get("/v1/deployments", headers=b).json() == []
    assert api.delete("/v1/deployments/sent", headers=viewer).status_code == 403
    deleted = api.delete("/v1/deployments/sent", headers=a)
    assert deleted.status_code == 202 and deleted.json()["status"] == "DELETING"
    assert api.patch("/v1/deployments/sent", json={}, headers=a).status_code == 409


def test_replicas_that_could_never_fit_the_tenants_quota_are_refused(
    api: TestClient, control_plane: ControlPlane
) -> None:
    make_tenant(api, "small", cpu=1)
    response = api.put(
        "/v1/tenants/small/scheduling", json={"borrowing_limit": {"cpu": 0.5}}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    small = make_token(api, "small")
    trained(api, control_plane, small)
    refused = api.post("/v1/deployments", json=spec(), headers=small)  # 3 x 0.5 = 1.5 fits
    assert refused.status_code == 201, refused.text
    too_big = api.patch(
        "/v1/deployments/sent", json={"autoscaling": {"max_replicas": 4}}, headers=small
    )
    assert too_big.status_code == 422
    assert too_big.json()["detail"][0]["loc"] == ["body", "autoscaling", "max_replicas"]


def test_the_scheduler_counts_a_deployments_replicas_against_its_tenant(
    api: TestClient, control_plane: ControlPlane
) -> None:
    node = Demand(cpu=4, gpu=0, memory_gb=64)
    control_plane.link.capacity = ClusterCapacity(total=node, nodes=(node,))
    make_tenant(api, "svc", cpu=2)
    headers = make_token(api, "svc")
    trained(api, control_plane, headers)
    api.post("/v1/deployments", json=spec(resources={"cpus_per_replica": 1}), headers=headers)
    with control_plane.sessions() as session, session.begin():
        row = session.scalar(select(DeploymentRow))
        assert row is not None
        row.replicas = 2  # what the deployment reconciler read from Serve
        for job in session.scalars(select(JobRow)):
            job.status = "SUCCEEDED"
    job = api.post(
        "/v1/jobs", json=train_spec(resources={"workers": 1, "cpus_per_worker": 1}),
        headers=headers,
    ).json()  # fmt: skip
    assert control_plane.reconciler.schedule() == []
    wait = control_plane.reconciler.last_queue.decisions.waiting[job["id"]]
    assert wait.message.startswith("tenant quota exhausted: cpu would be 3 of nominal 2")


def test_the_serve_application_carries_versions_batching_and_autoscaling(
    api: TestClient, control_plane: ControlPlane
) -> None:
    trained(api, control_plane, ADMIN, versions=2)
    api.post(
        "/v1/deployments",
        json=spec(model="sentiment:1", canary={"model": "sentiment:2", "percent": 25}),
        headers=ADMIN,
    )
    with control_plane.sessions() as session:
        (want,) = read_wanted(session)
    app = application(want, "http://cp:8080", {"py_modules": ["gcs://x.zip"]})
    assert app["name"] == "default.sent" and app["route_prefix"] == "/serve/default/sent"
    assert app["args"] == {"tenant": "default", "name": "sent", "auth_url": "http://cp:8080",
                           "predictor": "sentiment.serve:Predictor", "canary": True}  # fmt: skip
    by_name = {d["name"]: d for d in app["deployments"]}
    assert sorted(by_name) == ["Canary", "Stable"]
    assert by_name["Stable"]["user_config"]["canary_percent"] == 25.0
    stable, canary = by_name["Stable"], by_name["Canary"]
    assert stable["user_config"]["model_version"] == "sentiment:1"
    assert stable["user_config"]["checkpoint_dir"] == "/ckpt/sentiment/1"
    assert canary["user_config"]["model_version"] == "sentiment:2"
    assert stable["user_config"]["max_batch_size"] == 16
    assert stable["autoscaling_config"]["max_replicas"] == 3
    assert stable["ray_actor_options"] == {"num_cpus": 0.5}
