"""Bearer tokens, roles and tenant isolation, through the real app."""

from fastapi.testclient import TestClient
from sqlalchemy import select

from raydc.server.control_plane import ControlPlane
from raydc.store.models import ApiTokenRow
from tests.unit.factories import ADMIN, auth, make_tenant, make_token, train_spec


def test_health_needs_no_token(api: TestClient) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}


def test_v1_needs_a_bearer_token(api: TestClient) -> None:
    response = api.get("/v1/jobs")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "bearer" in response.json()["detail"]


def test_an_unknown_token_is_refused(api: TestClient) -> None:
    assert api.get("/v1/jobs", headers=auth("rdc_not-a-real-token")).status_code == 401
    assert api.get("/v1/jobs", headers={"Authorization": "Basic abc"}).status_code == 401


def test_tokens_are_shown_once_and_stored_hashed(
    api: TestClient, control_plane: ControlPlane
) -> None:
    make_tenant(api, "team-a")
    response = api.post(
        "/v1/tokens", json={"tenant": "team-a", "role": "viewer", "name": "ci"}, headers=ADMIN
    )
    body = response.json()
    token = body["token"]
    assert set(body) == {"id", "tenant", "role", "name", "expires_at", "token"}
    with control_plane.sessions() as session:
        hashes = list(session.scalars(select(ApiTokenRow.token_hash)))
    assert token not in hashes and all(len(h) == 64 for h in hashes)
    assert api.get("/v1/jobs", headers=auth(token)).status_code == 200


def test_a_token_for_a_missing_tenant_is_404(api: TestClient) -> None:
    response = api.post(
        "/v1/tokens", json={"tenant": "ghost", "role": "member", "name": "x"}, headers=ADMIN
    )
    assert response.status_code == 404


def test_members_cannot_administer(api: TestClient) -> None:
    make_tenant(api, "team-a")
    member = make_token(api, "team-a", "member")
    assert api.post("/v1/tenants", json={"name": "x"}, headers=member).status_code == 403
    assert api.get("/v1/tenants", headers=member).status_code == 403
    assert api.put("/v1/tenants/team-a/quota", json={"cpu": 99}, headers=member).status_code == 403
    forged = {"tenant": "team-a", "role": "admin", "name": "x"}
    assert api.post("/v1/tokens", json=forged, headers=member).status_code == 403


def test_viewers_read_but_cannot_submit_or_cancel(api: TestClient) -> None:
    make_tenant(api, "team-a")
    member, viewer = make_token(api, "team-a", "member"), make_token(api, "team-a", "viewer")
    job = api.post("/v1/jobs", json=train_spec(), headers=member).json()
    assert api.get(f"/v1/jobs/{job['id']}", headers=viewer).status_code == 200
    assert api.post("/v1/jobs", json=train_spec(), headers=viewer).status_code == 403
    assert api.post(f"/v1/jobs/{job['id']}/cancel", headers=viewer).status_code == 403


def test_another_tenants_job_is_not_found(api: TestClient) -> None:
    make_tenant(api, "team-a")
    make_tenant(api, "team-b")
    a, b = make_token(api, "team-a"), make_token(api, "team-b")
    job_id = api.post("/v1/jobs", json=train_spec(), headers=a).json()["id"]
    for path in ("", "/events", "/logs"):
        assert api.get(f"/v1/jobs/{job_id}{path}", headers=b).status_code == 404
    assert api.post(f"/v1/jobs/{job_id}/cancel", headers=b).status_code == 404
    assert api.get("/v1/jobs", headers=b).json()["total"] == 0
    assert api.get("/v1/queue", headers=b).json() == []
    assert api.get(f"/v1/jobs/{job_id}", headers=ADMIN).json()["tenant"] == "team-a"
    assert api.get("/v1/jobs", headers=ADMIN).json()["total"] == 1


def test_a_member_submits_into_its_own_tenant(api: TestClient) -> None:
    make_tenant(api, "team-a")
    job = api.post("/v1/jobs", json=train_spec(), headers=make_token(api, "team-a")).json()
    assert job["tenant"] == "team-a"


def test_quota_updates_are_validated_and_persisted(api: TestClient) -> None:
    make_tenant(api, "team-a", cpu=4)
    bad = api.put("/v1/tenants/team-a/quota", json={"cpu": -1}, headers=ADMIN)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "cpu"]
    tenants = {t["name"]: t for t in api.get("/v1/tenants", headers=ADMIN).json()}
    assert tenants["team-a"]["quota"]["cpu"] == 4
    ok = api.put("/v1/tenants/team-a/quota", json={"cpu": 8, "gpu": 2}, headers=ADMIN)
    assert ok.json()["quota"] == {"cpu": 8, "gpu": 2, "memory_gb": None}
    assert api.put("/v1/tenants/nope/quota", json={}, headers=ADMIN).status_code == 404
    assert api.post("/v1/tenants", json={"name": "team-a"}, headers=ADMIN).status_code == 409


def test_whoami_names_the_tokens_tenant_and_role(api: TestClient) -> None:
    make_tenant(api, "team-w")
    headers = make_token(api, "team-w", "viewer")
    assert api.get("/v1/auth/whoami", headers=headers).json() == {
        "tenant": "team-w",
        "role": "viewer",
        "name": "viewer-t",
    }
    assert api.get("/v1/auth/whoami").status_code == 401
    assert api.get("/v1/auth/whoami", headers=auth("rdc_nope")).status_code == 401
