"""Tenant settings: quota, fair-share weight and borrowing limit over REST, SDK and CLI."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from raydc import cli, cli_base
from raydc.client import ApiError, Client
from raydc.server.control_plane import ControlPlane
from raydc.server.services import tenants as tenant_service
from raydc.specs.tenants import Quota, TenantScheduling
from tests.unit.factories import ADMIN, ADMIN_TOKEN, make_tenant, make_token

UNLIMITED = {"cpu": None, "gpu": None, "memory_gb": None}


def tenant(api: TestClient, name: str) -> dict[str, Any]:
    listed = {t["name"]: t for t in api.get("/v1/tenants", headers=ADMIN).json()}
    return listed[name]


def test_a_new_tenant_has_weight_one_and_no_borrowing_limit(api: TestClient) -> None:
    created = api.post("/v1/tenants", json={"name": "team-a"}, headers=ADMIN).json()
    assert (created["weight"], created["borrowing_limit"]) == (1.0, UNLIMITED)
    assert tenant(api, "team-a")["borrowing_limit"] == UNLIMITED


def test_a_tenant_is_created_with_its_scheduling_settings(api: TestClient) -> None:
    body = {"name": "team-a", "quota": {"gpu": 4}, "weight": 2, "borrowing_limit": {"gpu": 0}}
    assert api.post("/v1/tenants", json=body, headers=ADMIN).status_code == 201
    listed = tenant(api, "team-a")
    assert listed["quota"] == {"cpu": None, "gpu": 4, "memory_gb": None}
    assert listed["weight"] == 2
    assert listed["borrowing_limit"] == {"cpu": None, "gpu": 0, "memory_gb": None}


def test_scheduling_settings_are_persisted_and_leave_the_quota_alone(
    api: TestClient, control_plane: ControlPlane
) -> None:
    make_tenant(api, "team-a", cpu=4, gpu=2)
    body = {"weight": 3.5, "borrowing_limit": {"cpu": 8, "gpu": 0}}
    response = api.put("/v1/tenants/team-a/scheduling", json=body, headers=ADMIN)
    assert response.status_code == 200, response.text
    expected_limit = {"cpu": 8, "gpu": 0, "memory_gb": None}
    assert response.json()["borrowing_limit"] == expected_limit
    listed = tenant(api, "team-a")
    assert (listed["weight"], listed["borrowing_limit"]) == (3.5, expected_limit)
    assert listed["quota"] == {"cpu": 4, "gpu": 2, "memory_gb": None}
    with control_plane.tx() as session:
        row = tenant_service.get_tenant(session, "team-a")
        assert tenant_service.scheduling_of(row) == TenantScheduling(
            weight=3.5, borrowing_limit=Quota(cpu=8, gpu=0)
        )
    # A quota update keeps the scheduling settings.
    api.put("/v1/tenants/team-a/quota", json={"cpu": 16}, headers=ADMIN)
    assert tenant(api, "team-a")["weight"] == 3.5
    # PUT replaces: what is left out takes its default.
    api.put("/v1/tenants/team-a/scheduling", json={"weight": 2}, headers=ADMIN)
    assert tenant(api, "team-a")["borrowing_limit"] == UNLIMITED


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"weight": 0}, ["body", "weight"]),
        ({"weight": -1}, ["body", "weight"]),
        ({"weight": 1001}, ["body", "weight"]),
        ({"weight": "heavy"}, ["body", "weight"]),
        ({"borrowing_limit": {"gpu": -1}}, ["body", "borrowing_limit", "gpu"]),
        ({"borrowing_limit": {"gpus": 1}}, ["body", "borrowing_limit", "gpus"]),
        ({"weight": 2, "priority": "high"}, ["body", "priority"]),
    ],
)
def test_bad_scheduling_settings_are_422_and_change_nothing(
    api: TestClient, body: dict[str, Any], loc: list[str]
) -> None:
    make_tenant(api, "team-a")
    good = {"weight": 2, "borrowing_limit": {"gpu": 1}}
    assert api.put("/v1/tenants/team-a/scheduling", json=good, headers=ADMIN).status_code == 200
    before = tenant(api, "team-a")
    bad = api.put("/v1/tenants/team-a/scheduling", json=body, headers=ADMIN)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == loc
    assert tenant(api, "team-a") == before


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"cpu": -1}, ["body", "cpu"]),
        ({"gpu": "many"}, ["body", "gpu"]),
        ({"cpus": 8}, ["body", "cpus"]),
        ({"weight": 2}, ["body", "weight"]),  # scheduling settings have their own route
    ],
)
def test_bad_quotas_are_422_and_change_nothing(
    api: TestClient, body: dict[str, Any], loc: list[str]
) -> None:
    make_tenant(api, "team-a", cpu=4, gpu=1)
    before = tenant(api, "team-a")
    bad = api.put("/v1/tenants/team-a/quota", json=body, headers=ADMIN)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == loc
    assert tenant(api, "team-a") == before


def test_a_bad_weight_at_create_is_422(api: TestClient) -> None:
    bad = api.post("/v1/tenants", json={"name": "team-a", "weight": 0}, headers=ADMIN)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "weight"]
    assert "team-a" not in {t["name"] for t in api.get("/v1/tenants", headers=ADMIN).json()}


def test_scheduling_of_a_missing_tenant_is_404(api: TestClient) -> None:
    response = api.put("/v1/tenants/nope/scheduling", json={"weight": 2}, headers=ADMIN)
    assert response.status_code == 404


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_only_admins_change_tenant_settings(api: TestClient, role: str) -> None:
    make_tenant(api, "team-a", cpu=4)
    token = make_token(api, "team-a", role)
    before = tenant(api, "team-a")
    scheduling = {"weight": 100, "borrowing_limit": {"cpu": 1000}}
    assert (
        api.put("/v1/tenants/team-a/scheduling", json=scheduling, headers=token).status_code == 403
    )
    assert api.put("/v1/tenants/team-a/quota", json={"cpu": 99}, headers=token).status_code == 403
    assert api.get("/v1/tenants", headers=token).status_code == 403
    assert tenant(api, "team-a") == before


def sdk_for(api: TestClient) -> Client:
    """The SDK with its HTTP client pointed at the in-process app."""
    client = Client(url="http://testserver", token=ADMIN_TOKEN)
    client._http.close()
    client._http = TestClient(api.app, headers=ADMIN)
    return client


@pytest.fixture
def sdk(api: TestClient) -> Client:
    return sdk_for(api)


def test_the_sdk_sets_what_it_is_given(api: TestClient, sdk: Client) -> None:
    sdk.create_tenant("team-a", {"gpu": 4}, weight=2)
    assert sdk.set_tenant_scheduling("team-a", weight=3)["borrowing_limit"] == UNLIMITED
    updated = sdk.set_tenant_scheduling("team-a", weight=3, borrowing_limit={"gpu": 2})
    assert (updated["weight"], updated["borrowing_limit"]["gpu"]) == (3, 2)
    assert updated["quota"]["gpu"] == 4
    with pytest.raises(ApiError) as refused:
        sdk.set_tenant_scheduling("team-a", weight=0)
    assert refused.value.status_code == 422
    assert "weight" in str(refused.value)
    assert tenant(api, "team-a")["weight"] == 3


def test_the_cli_sets_and_lists_scheduling_settings(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_base, "client", lambda: sdk_for(api))
    monkeypatch.setattr(cli_base.console, "width", 200)
    make_tenant(api, "team-a", gpu=4)
    runner = CliRunner()
    args = ["tenants", "scheduling", "team-a", "--weight", "2.5", "--borrow-gpu", "0"]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    listed = tenant(api, "team-a")
    assert (listed["weight"], listed["borrowing_limit"]["gpu"]) == (2.5, 0)
    assert listed["borrowing_limit"]["cpu"] is None
    table = runner.invoke(cli.app, ["tenants", "list"])
    assert table.exit_code == 0, table.output
    assert "WEIGHT" in table.output and "BORROW GPU" in table.output
    row = next(line for line in table.output.splitlines() if "team-a" in line)
    assert [cell.strip() for cell in row.split("│")[1:-1]] == [
        "team-a", "∞", "4", "∞", "2.5", "∞", "0", "∞",
    ]  # fmt: skip
    refused = runner.invoke(cli.app, ["tenants", "scheduling", "team-a", "--weight", "0"])
    assert refused.exit_code == 1
    assert tenant(api, "team-a")["weight"] == 2.5
