"""The deployment reconciler's passes against a stand-in for Serve (no Ray): a change that
leaves the Serve config as it is still reaches HEALTHY, and a refused config stays refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from raydc.cluster.serve import AppStatus, DeploymentState, ServeConfigRejected
from raydc.server.control_plane import ControlPlane
from raydc.server.services.models import register_version
from raydc.store.models import JobRow
from tests.unit.factories import ADMIN, train_spec


class FakeServe:
    """Runs whatever config it was last given; refuses one whose batch size is 7."""

    def __init__(self) -> None:
        self.applied: list[list[dict[str, Any]]] = []
        self.running: list[dict[str, Any]] = []

    def upload_modules(self, paths: list[Path]) -> list[str]:
        return ["gcs://_ray_pkg_test.zip"]

    def apply(self, applications: list[dict[str, Any]], host: str, port: int) -> None:
        for app in applications:
            for deployment in app["deployments"]:
                if deployment.get("user_config", {}).get("max_batch_size") == 7:
                    raise ServeConfigRejected("max_batch_size 7 is refused by this fake")
        self.applied.append(applications)
        self.running = applications

    def status(self) -> dict[str, AppStatus]:
        healthy = DeploymentState("HEALTHY", running_replicas=1, target_replicas=1)
        return {app["name"]: AppStatus("RUNNING", "", {"Stable": healthy}) for app in self.running}


@pytest.fixture
def serve(control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> FakeServe:
    fake = FakeServe()
    monkeypatch.setattr(control_plane.link, "_cluster", object())
    monkeypatch.setattr(control_plane.deployer, "_serve_for", lambda cluster: fake)
    return fake


def deploy(api: TestClient, control_plane: ControlPlane) -> None:
    job = api.post("/v1/jobs", json=train_spec(name="sentiment"), headers=ADMIN).json()
    with control_plane.sessions() as session, session.begin():
        row = session.get(JobRow, job["id"])
        assert row is not None
        register_version(session, row.tenant, "sentiment", "/ckpt/sentiment/1", {}, row.id)
    body = {"name": "sent", "model": "sentiment:1",
            "batching": {"max_batch_size": 16, "batch_wait_timeout_s": 0.005}}  # fmt: skip
    assert api.post("/v1/deployments", json=body, headers=ADMIN).status_code == 201


def state(api: TestClient) -> tuple[str, int, int]:
    out = api.get("/v1/deployments/sent", headers=ADMIN).json()
    return out["status"], out["generation"], out["applied_generation"]


def batching(api: TestClient, size: int) -> None:
    body = {"batching": {"max_batch_size": size, "batch_wait_timeout_s": 0.005}}
    assert api.patch("/v1/deployments/sent", json=body, headers=ADMIN).status_code == 200


def test_a_change_that_leaves_the_serve_config_as_it_is_still_becomes_healthy(
    api: TestClient, control_plane: ControlPlane, serve: FakeServe
) -> None:
    deploy(api, control_plane)
    control_plane.deployer.run_once()
    assert state(api) == ("HEALTHY", 1, 1) and len(serve.applied) == 1

    batching(api, 16)  # the same values again
    assert state(api) == ("DEPLOYING", 2, 1)
    control_plane.deployer.run_once()
    assert state(api) == ("HEALTHY", 2, 2)

    batching(api, 32)  # changed and changed back before the reconciler looked
    batching(api, 16)
    control_plane.deployer.run_once()
    assert state(api) == ("HEALTHY", 4, 4)
    assert len(serve.applied) == 1  # Serve was never asked again


def test_a_refused_config_stays_refused_until_it_changes(
    api: TestClient, control_plane: ControlPlane, serve: FakeServe
) -> None:
    deploy(api, control_plane)
    control_plane.deployer.run_once()
    batching(api, 7)
    for _ in range(2):  # the second pass sees the same (refused) config
        control_plane.deployer.run_once()
        status, generation, applied = state(api)
        assert (status, generation, applied) == ("UNHEALTHY", 2, 1)
    batching(api, 8)
    control_plane.deployer.run_once()
    assert state(api) == ("HEALTHY", 3, 3) and len(serve.applied) == 2
