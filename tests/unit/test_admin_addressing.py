"""An admin addresses same-named objects of two tenants with ``?tenant=``; a name that
matches several tenants' objects is a 409 naming them, never the first one silently. Every
object the API returns says which tenant it belongs to."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from raydc import cli, deploy_cli
from raydc.client import ApiError, Client
from raydc.server.control_plane import ControlPlane
from raydc.server.services.models import register_version
from raydc.store.models import JobRow
from tests.unit.factories import ADMIN, make_tenant, make_token, train_spec


def trained(api: TestClient, control_plane: ControlPlane, headers: dict[str, str],
            versions: int = 1, name: str = "sentiment") -> None:  # fmt: skip
    for n in range(versions):
        job = api.post("/v1/jobs", json=train_spec(name=name), headers=headers).json()
        with control_plane.sessions() as session, session.begin():
            row = session.get(JobRow, job["id"])
            assert row is not None
            register_version(session, row.tenant, name, f"/ckpt/{row.tenant}/{n + 1}", {}, row.id)


def deployment(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "sent",
        "model": "sentiment",
        "resources": {"cpus_per_replica": 0.5},
    }
    body.update(overrides)
    return body


@pytest.fixture
def two_tenants(api: TestClient, control_plane: ControlPlane) -> dict[str, dict[str, str]]:
    """team-a and team-b each with a model 'sentiment' (a: 1 version, b: 2) deployed as 'sent'."""
    tokens = {}
    for tenant, versions in (("team-a", 1), ("team-b", 2)):
        make_tenant(api, tenant)
        tokens[tenant] = make_token(api, tenant)
        trained(api, control_plane, tokens[tenant], versions=versions)
        response = api.post("/v1/deployments", json=deployment(), headers=tokens[tenant])
        assert response.status_code == 201, response.text
    return tokens


def assert_ambiguous(response: Any) -> None:
    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    assert "team-a" in detail and "team-b" in detail and "?tenant=" in detail, detail


def test_an_admin_name_matching_two_tenants_is_a_409_naming_them(
    api: TestClient, two_tenants: dict[str, dict[str, str]]
) -> None:
    assert_ambiguous(api.get("/v1/deployments/sent", headers=ADMIN))
    assert_ambiguous(api.delete("/v1/deployments/sent", headers=ADMIN))
    assert_ambiguous(api.patch("/v1/deployments/sent", json={}, headers=ADMIN))
    assert_ambiguous(api.get("/v1/models/sentiment/versions", headers=ADMIN))
    assert_ambiguous(api.get("/v1/models/sentiment/versions/1", headers=ADMIN))
    # Nothing was deleted or changed by the refused calls.
    for d in api.get("/v1/deployments", headers=ADMIN).json():
        assert (d["status"], d["generation"]) == ("DEPLOYING", 1), d


def test_an_admin_picks_the_tenant_with_a_query_parameter(
    api: TestClient, two_tenants: dict[str, dict[str, str]]
) -> None:
    got = api.get("/v1/deployments/sent", params={"tenant": "team-b"}, headers=ADMIN)
    assert got.status_code == 200 and got.json()["tenant"] == "team-b"
    assert got.json()["model"] == "sentiment:2"
    patched = api.patch(
        "/v1/deployments/sent", params={"tenant": "team-b"}, json={"model": "sentiment:1"},
        headers=ADMIN,
    )  # fmt: skip
    assert patched.status_code == 200, patched.text
    assert (patched.json()["tenant"], patched.json()["model"]) == ("team-b", "sentiment:1")
    deleted = api.delete("/v1/deployments/sent", params={"tenant": "team-a"}, headers=ADMIN)
    assert deleted.status_code == 202 and deleted.json()["tenant"] == "team-a"
    by_tenant = {d["tenant"]: d for d in api.get("/v1/deployments", headers=ADMIN).json()}
    assert by_tenant["team-a"]["status"] == "DELETING"
    assert by_tenant["team-b"]["status"] == "DEPLOYING"  # the other tenant's is untouched

    versions = api.get(
        "/v1/models/sentiment/versions", params={"tenant": "team-b"}, headers=ADMIN
    ).json()
    assert [(v["tenant"], v["model"], v["version"]) for v in versions] == [
        ("team-b", "sentiment", 1), ("team-b", "sentiment", 2),
    ]  # fmt: skip
    one = api.get("/v1/models/sentiment/versions/1", params={"tenant": "team-a"}, headers=ADMIN)
    assert one.status_code == 200 and one.json()["tenant"] == "team-a"
    assert one.json()["uri"] == "/ckpt/team-a/1"
    missing = api.get("/v1/deployments/sent", params={"tenant": "nope"}, headers=ADMIN)
    assert missing.status_code == 404


def test_lists_carry_the_tenant_and_take_it_as_a_filter(
    api: TestClient, two_tenants: dict[str, dict[str, str]]
) -> None:
    models = api.get("/v1/models", headers=ADMIN).json()
    assert [(m["tenant"], m["name"]) for m in models] == [
        ("team-a", "sentiment"), ("team-b", "sentiment"),
    ]  # fmt: skip
    only_a = api.get("/v1/models", params={"tenant": "team-a"}, headers=ADMIN).json()
    assert [m["tenant"] for m in only_a] == ["team-a"]
    deployments = api.get("/v1/deployments", params={"tenant": "team-b"}, headers=ADMIN).json()
    assert [(d["tenant"], d["name"]) for d in deployments] == [("team-b", "sent")]
    queue = api.get("/v1/queue", headers=ADMIN).json()
    assert {entry["tenant"] for entry in queue} == {"team-a", "team-b"}


def test_a_name_in_one_tenant_only_needs_no_tenant_for_an_admin(
    api: TestClient, control_plane: ControlPlane
) -> None:
    make_tenant(api, "team-a")
    a = make_token(api, "team-a")
    trained(api, control_plane, a)
    assert api.post("/v1/deployments", json=deployment(), headers=a).status_code == 201
    assert api.get("/v1/deployments/sent", headers=ADMIN).json()["tenant"] == "team-a"
    [version] = api.get("/v1/models/sentiment/versions", headers=ADMIN).json()
    assert version["tenant"] == "team-a"


def test_a_tenants_user_naming_another_tenant_gets_a_404(
    api: TestClient, two_tenants: dict[str, dict[str, str]]
) -> None:
    a = two_tenants["team-a"]
    viewer = make_token(api, "team-a", "viewer")
    for headers in (a, viewer):
        other = {"tenant": "team-b"}
        assert api.get("/v1/deployments/sent", params=other, headers=headers).status_code == 404
        assert (
            api.get("/v1/models/sentiment/versions", params=other, headers=headers).status_code
            == 404
        )
        assert (
            api.get("/v1/models/sentiment/versions/2", params=other, headers=headers).status_code
            == 404
        )
        assert api.get("/v1/deployments", params=other, headers=headers).json() == []
        assert api.get("/v1/models", params=other, headers=headers).json() == []
        own = {"tenant": "team-a"}
        got = api.get("/v1/deployments/sent", params=own, headers=headers)
        assert got.status_code == 200 and got.json()["tenant"] == "team-a"
        # Without ?tenant= a tenant's user sees only their own: never ambiguous.
        assert api.get("/v1/models/sentiment/versions", headers=headers).status_code == 200
    assert (
        api.delete("/v1/deployments/sent", params={"tenant": "team-b"}, headers=a).status_code
        == 404
    )
    assert (
        api.get("/v1/deployments/sent", params={"tenant": "team-b"}, headers=ADMIN).json()["status"]
        == "DEPLOYING"
    )


def sdk(api: TestClient, headers: dict[str, str]) -> Client:
    """The SDK speaking to the in-process app with ``headers``' token."""
    client = Client(url="http://testserver", token=headers["Authorization"].split()[1])
    client._http = api  # type: ignore[assignment]  # a TestClient is an httpx.Client
    api.headers.update(headers)
    client.close = lambda: None  # type: ignore[method-assign]  # the fixture closes the app
    return client


def test_the_sdk_and_cli_pass_the_tenant(
    api: TestClient, two_tenants: dict[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = sdk(api, ADMIN)
    with pytest.raises(ApiError) as ambiguous:
        client.get_deployment("sent")
    assert ambiguous.value.status_code == 409
    assert client.get_deployment("sent", tenant="team-b")["tenant"] == "team-b"
    assert [v["tenant"] for v in client.model_versions("sentiment", tenant="team-a")] == ["team-a"]
    assert client.model_version("sentiment", 2, tenant="team-b")["version"] == 2
    assert [m["tenant"] for m in client.list_models(tenant="team-b")] == ["team-b"]

    monkeypatch.setattr(deploy_cli, "Client", lambda: client)
    runner = CliRunner()
    deleted = runner.invoke(cli.app, ["deployments", "delete", "sent", "--tenant", "team-b"])
    assert deleted.exit_code == 0, deleted.output
    by_tenant = {d["tenant"]: d["status"] for d in client.list_deployments()}
    assert by_tenant == {"team-a": "DEPLOYING", "team-b": "DELETING"}
    refused = runner.invoke(cli.app, ["deployments", "delete", "sent"])
    assert refused.exit_code == 1 and "?tenant=" in refused.output


def test_apply_changes_the_callers_own_deployment(
    api: TestClient, control_plane: ControlPlane, two_tenants: dict[str, dict[str, str]]
) -> None:
    trained(api, control_plane, ADMIN)  # the admin's own tenant, 'default'
    client = sdk(api, ADMIN)
    assert client.apply_deployment(deployment())["tenant"] == "default"
    changed = client.apply_deployment(deployment(autoscaling={"max_replicas": 2}))
    assert (changed["tenant"], changed["generation"]) == ("default", 2)
