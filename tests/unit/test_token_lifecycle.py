"""Token lifecycle: expiry, listing, revocation, last use, and job-scoped tokens."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from raydc import admin_cli, cli, cli_base
from raydc.client import ApiError
from raydc.server.control_plane import ControlPlane
from raydc.server.errors import Unauthorized
from raydc.server.services.tokens import (
    BOOTSTRAP_TOKEN_NAME,
    TokenAuthenticator,
    issue_job_token,
    revoke_job_tokens,
)
from raydc.specs.tenants import Role
from raydc.store.models import ApiTokenRow, utcnow
from tests.unit.factories import ADMIN, auth, make_tenant
from tests.unit.test_tenants import sdk_for

PUBLIC_FIELDS = {
    "id", "tenant", "role", "name", "created_at", "expires_at", "last_used_at", "revoked_at",
    "job_id",
}  # fmt: skip


def create(api: TestClient, tenant: str, role: str = "member", **extra: Any) -> dict[str, Any]:
    body = {"tenant": tenant, "role": role, "name": f"{role}-{tenant}", **extra}
    response = api.post("/v1/tokens", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def row_of(control_plane: ControlPlane, token_id: str) -> ApiTokenRow:
    with control_plane.sessions() as session:
        row = session.get(ApiTokenRow, token_id)
        assert row is not None
        session.expunge(row)
        return row


def set_column(control_plane: ControlPlane, token_id: str, **values: Any) -> None:
    with control_plane.sessions() as session, session.begin():
        row = session.get(ApiTokenRow, token_id)
        assert row is not None
        for key, value in values.items():
            setattr(row, key, value)


# ---- expiry -------------------------------------------------------------------------------


def test_a_token_created_with_an_expiry_says_when_and_is_refused_after(
    api: TestClient, control_plane: ControlPlane
) -> None:
    make_tenant(api, "team-a")
    before = utcnow()
    created = create(api, "team-a", expires_in_s=3600)
    expires_at = datetime.fromisoformat(created["expires_at"])
    assert before + timedelta(seconds=3600) <= expires_at <= utcnow() + timedelta(seconds=3600)
    assert create(api, "team-a")["expires_at"] is None
    set_column(control_plane, created["id"], expires_at=utcnow() - timedelta(seconds=1))
    refused = api.get("/v1/jobs", headers=auth(created["token"]))
    assert refused.status_code == 401
    assert refused.json()["detail"] == "token expired"


@pytest.mark.parametrize("expires_in_s", [0, -5, 10 * 366 * 24 * 3600, True, 1.5, "60"])
def test_an_expiry_out_of_range_is_refused(api: TestClient, expires_in_s: Any) -> None:
    make_tenant(api, "team-a")
    body = {"tenant": "team-a", "role": "member", "name": "x", "expires_in_s": expires_in_s}
    response = api.post("/v1/tokens", json=body, headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "expires_in_s"]


def test_an_expired_token_is_not_served_from_the_cache(control_plane: ControlPlane) -> None:
    """The cache would keep a principal for 10 s; a token expiring sooner ends sooner."""
    wall = [utcnow().timestamp()]
    authenticator = TokenAuthenticator(control_plane.sessions, wall_clock=lambda: wall[0])
    with control_plane.sessions() as session, session.begin():
        token = issue_job_token(session, "default", "job-1", ttl_s=5)
    assert authenticator.authenticate(token).job_id == "job-1"
    assert authenticator.cached(token) is not None
    wall[0] += 6
    assert authenticator.cached(token) is None
    with pytest.raises(Unauthorized, match="token expired"):
        authenticator.authenticate(token)


# ---- listing ------------------------------------------------------------------------------


def test_admins_list_every_tenants_tokens_without_secrets(api: TestClient) -> None:
    make_tenant(api, "team-a")
    make_tenant(api, "team-b")
    a, b = create(api, "team-a"), create(api, "team-b", "viewer", expires_in_s=60)
    listed = api.get("/v1/tokens", headers=ADMIN)
    assert listed.status_code == 200
    by_id = {token["id"]: token for token in listed.json()}
    assert {a["id"], b["id"]} <= set(by_id)
    assert any(t["name"] == BOOTSTRAP_TOKEN_NAME for t in by_id.values())
    for token in by_id.values():
        assert set(token) == PUBLIC_FIELDS
    assert by_id[b["id"]]["expires_at"] is not None and by_id[b["id"]]["role"] == "viewer"
    assert a["token"] not in listed.text and b["token"] not in listed.text
    only_b = api.get("/v1/tokens", params={"tenant": "team-b"}, headers=ADMIN).json()
    assert [token["id"] for token in only_b] == [b["id"]]


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_list_only_their_own_tenants_tokens(api: TestClient, role: str) -> None:
    make_tenant(api, "team-a")
    make_tenant(api, "team-b")
    mine, other = create(api, "team-a", role), create(api, "team-b")
    listed = api.get("/v1/tokens", headers=auth(mine["token"]))
    assert listed.status_code == 200
    assert [token["id"] for token in listed.json()] == [mine["id"]]
    asked = api.get("/v1/tokens", params={"tenant": "team-b"}, headers=auth(mine["token"]))
    assert asked.status_code == 404
    assert other["id"] not in asked.text


def test_a_monitor_token_reads_metrics_only(api: TestClient) -> None:
    monitor = auth(create(api, "default", "monitor")["token"])
    assert api.get("/v1/tokens", headers=monitor).status_code == 403
    assert api.get("/v1/jobs", headers=monitor).status_code == 403


# ---- revocation ---------------------------------------------------------------------------


def test_a_revoke_takes_effect_at_once_on_this_replica(
    api: TestClient, control_plane: ControlPlane
) -> None:
    make_tenant(api, "team-a")
    created = create(api, "team-a")
    headers = auth(created["token"])
    assert api.get("/v1/jobs", headers=headers).status_code == 200  # now in the cache
    assert control_plane.authenticator.cached(created["token"]) is not None
    revoked = api.delete(f"/v1/tokens/{created['id']}", headers=ADMIN)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None and set(revoked.json()) == PUBLIC_FIELDS
    refused = api.get("/v1/jobs", headers=headers)
    assert refused.status_code == 401
    assert refused.json()["detail"] == "invalid or revoked token"
    # Revoking again changes nothing.
    again = api.delete(f"/v1/tokens/{created['id']}", headers=ADMIN)
    assert again.status_code == 200 and again.json()["revoked_at"] == revoked.json()["revoked_at"]
    assert api.delete("/v1/tokens/no-such-token", headers=ADMIN).status_code == 404


def test_another_replica_stops_accepting_a_revoked_token_within_its_cache_lifetime(
    api: TestClient, control_plane: ControlPlane
) -> None:
    make_tenant(api, "team-a")
    created = create(api, "team-a")
    clock = [1000.0]
    other = TokenAuthenticator(control_plane.sessions, ttl_s=10, monotonic=lambda: clock[0])
    other.authenticate(created["token"])
    assert api.delete(f"/v1/tokens/{created['id']}", headers=ADMIN).status_code == 200
    clock[0] += 9.9
    assert other.authenticate(created["token"]).token_id == created["id"]  # still cached there
    clock[0] += 0.2
    with pytest.raises(Unauthorized):
        other.authenticate(created["token"])


def test_who_may_revoke_which_token(api: TestClient) -> None:
    make_tenant(api, "team-a")
    make_tenant(api, "team-b")
    member = auth(create(api, "team-a", "member")["token"])
    viewer_token = create(api, "team-a", "viewer")
    viewer = auth(viewer_token["token"])
    colleague = create(api, "team-a", "member")
    a_viewer = create(api, "team-a", "viewer")
    a_monitor = create(api, "team-a", "monitor")
    a_admin = create(api, "team-a", "admin")
    b_member = create(api, "team-b", "member")

    def revoke(token_id: str, headers: dict[str, str]) -> int:
        return api.delete(f"/v1/tokens/{token_id}", headers=headers).status_code

    # A member revokes its tenant's member and viewer tokens, not the roles above it.
    assert revoke(colleague["id"], member) == 200
    assert revoke(a_viewer["id"], member) == 200
    assert revoke(a_monitor["id"], member) == 403
    assert revoke(a_admin["id"], member) == 403
    # Another tenant's token does not exist for it.
    assert revoke(b_member["id"], member) == 404
    # A viewer revokes only itself.
    assert revoke(b_member["id"], viewer) == 404
    other_viewer = create(api, "team-a", "viewer")
    assert revoke(other_viewer["id"], viewer) == 403
    assert revoke(viewer_token["id"], viewer) == 200
    assert api.get("/v1/jobs", headers=viewer).status_code == 401
    # Admins revoke anything but the bootstrap token.
    assert revoke(a_admin["id"], ADMIN) == 200
    assert revoke(b_member["id"], ADMIN) == 200


def test_the_bootstrap_admin_token_is_not_revoked_through_the_api(api: TestClient) -> None:
    listed = api.get("/v1/tokens", headers=ADMIN).json()
    bootstrap = next(t for t in listed if t["name"] == BOOTSTRAP_TOKEN_NAME)
    refused = api.delete(f"/v1/tokens/{bootstrap['id']}", headers=ADMIN)
    assert refused.status_code == 409
    assert "RAYDC_ADMIN_TOKEN" in refused.json()["detail"]
    assert api.get("/v1/tenants", headers=ADMIN).status_code == 200


# ---- last use -----------------------------------------------------------------------------


def test_last_use_is_written_on_a_cache_miss_not_on_every_request(
    api: TestClient, control_plane: ControlPlane
) -> None:
    make_tenant(api, "team-a")
    created = create(api, "team-a")
    headers = auth(created["token"])
    assert row_of(control_plane, created["id"]).last_used_at is None
    assert api.get("/v1/jobs", headers=headers).status_code == 200
    first = row_of(control_plane, created["id"]).last_used_at
    assert first is not None and utcnow() - first < timedelta(seconds=5)
    long_ago = utcnow() - timedelta(days=1)
    set_column(control_plane, created["id"], last_used_at=long_ago)
    for _ in range(5):  # served from the cache: no write
        assert api.get("/v1/jobs", headers=headers).status_code == 200
    assert row_of(control_plane, created["id"]).last_used_at == long_ago
    control_plane.authenticator.forget(created["id"])
    assert api.get("/v1/jobs", headers=headers).status_code == 200
    again = row_of(control_plane, created["id"]).last_used_at
    assert again is not None and again > long_ago


def test_a_cache_miss_soon_after_another_replicas_write_does_not_write_again(
    control_plane: ControlPlane,
) -> None:
    with control_plane.sessions() as session, session.begin():
        token = issue_job_token(session, "default", "job-7", ttl_s=600)
    TokenAuthenticator(control_plane.sessions).authenticate(token)
    with control_plane.sessions() as session:
        row = session.scalar(select(ApiTokenRow).where(ApiTokenRow.job_id == "job-7"))
        assert row is not None and row.last_used_at is not None
        written = row.last_used_at
    TokenAuthenticator(control_plane.sessions).authenticate(token)  # a second replica
    with control_plane.sessions() as session:
        row = session.scalar(select(ApiTokenRow).where(ApiTokenRow.job_id == "job-7"))
        assert row is not None and row.last_used_at == written


# ---- job-scoped tokens --------------------------------------------------------------------


def test_a_job_token_reads_its_tenant_and_is_listed_with_its_job(
    api: TestClient, control_plane: ControlPlane
) -> None:
    make_tenant(api, "team-a")
    with control_plane.sessions() as session, session.begin():
        token = issue_job_token(session, "team-a", "job-42", ttl_s=3600)
    principal = control_plane.authenticator.authenticate(token)
    assert (principal.tenant, principal.role, principal.job_id) == ("team-a", Role.VIEWER, "job-42")
    assert principal.name == "job:job-42"
    headers = auth(token)
    assert api.get("/v1/jobs", headers=headers).status_code == 200
    forged = {"tenant": "team-a", "role": "member", "name": "escalate"}
    assert api.post("/v1/tokens", json=forged, headers=headers).status_code == 403
    listed = api.get("/v1/tokens", params={"tenant": "team-a"}, headers=ADMIN).json()
    (job_token,) = [t for t in listed if t["job_id"] == "job-42"]
    assert job_token["name"] == "job:job-42" and job_token["role"] == "viewer"
    expires_at = datetime.fromisoformat(job_token["expires_at"])
    assert timedelta(seconds=3590) < expires_at - utcnow() <= timedelta(seconds=3600)


def test_revoking_a_jobs_tokens_refuses_them(api: TestClient, control_plane: ControlPlane) -> None:
    make_tenant(api, "team-a")
    with control_plane.sessions() as session, session.begin():
        first = issue_job_token(session, "team-a", "job-9", ttl_s=3600)
        second = issue_job_token(session, "team-a", "job-9", ttl_s=3600)
        other_job = issue_job_token(session, "team-a", "job-10", ttl_s=3600)
    with control_plane.sessions() as session, session.begin():
        assert revoke_job_tokens(session, "job-9") == 2
    with control_plane.sessions() as session, session.begin():
        assert revoke_job_tokens(session, "job-9") == 0
    for token in (first, second):
        refused = api.get("/v1/jobs", headers=auth(token))
        assert refused.status_code == 401
    assert api.get("/v1/jobs", headers=auth(other_job)).status_code == 200


def test_an_expired_job_token_is_refused(api: TestClient, control_plane: ControlPlane) -> None:
    with control_plane.sessions() as session, session.begin():
        token = issue_job_token(session, "default", "job-3", ttl_s=60)
    with control_plane.sessions() as session, session.begin():
        row = session.scalar(select(ApiTokenRow).where(ApiTokenRow.job_id == "job-3"))
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
    refused = api.get("/v1/jobs", headers=auth(token))
    assert refused.status_code == 401 and refused.json()["detail"] == "token expired"


# ---- SDK and CLI --------------------------------------------------------------------------


def test_the_sdk_creates_lists_and_revokes_tokens(api: TestClient) -> None:
    make_tenant(api, "team-a")
    sdk = sdk_for(api)
    created = sdk.create_token("team-a", "viewer", "ci", expires_in_s=120)
    assert created["expires_at"] is not None
    assert created["id"] in {t["id"] for t in sdk.list_tokens(tenant="team-a")}
    assert sdk.revoke_token(created["id"])["revoked_at"] is not None
    with pytest.raises(ApiError) as missing:
        sdk.revoke_token("nope")
    assert missing.value.status_code == 404


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("12h", 43200), ("30d", 2592000)]
)
def test_the_cli_reads_a_lifetime(text: str, seconds: int) -> None:
    assert admin_cli.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "d", "1.5d", "-3d", "3w", "0"])
def test_the_cli_refuses_a_lifetime_it_cannot_read(text: str) -> None:
    with pytest.raises(ValueError):
        admin_cli.parse_duration(text)


def test_the_cli_creates_lists_and_revokes_tokens(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_base, "client", lambda: sdk_for(api))
    monkeypatch.setattr(cli_base.console, "width", 200)
    make_tenant(api, "team-a")
    runner = CliRunner()
    args = ["tokens", "create", "--tenant", "team-a", "--role", "viewer", "--name", "ci",
            "--expires-in", "30d"]  # fmt: skip
    made = runner.invoke(cli.app, args)
    assert made.exit_code == 0, made.output
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("rdc_")
    listed = api.get("/v1/tokens", params={"tenant": "team-a"}, headers=ADMIN).json()
    (row,) = listed
    expires_at = datetime.fromisoformat(row["expires_at"])
    assert timedelta(days=29, hours=23) < expires_at - utcnow() <= timedelta(days=30)

    table = runner.invoke(cli.app, ["tokens", "list", "--tenant", "team-a"])
    assert table.exit_code == 0, table.output
    assert "EXPIRES" in table.output and "LAST USED" in table.output
    line = next(line for line in table.output.splitlines() if row["id"] in line)
    assert "viewer" in line and "ci" in line and token not in table.output

    revoked = runner.invoke(cli.app, ["tokens", "revoke", row["id"]])
    assert revoked.exit_code == 0, revoked.output
    assert api.get("/v1/jobs", headers=auth(token)).status_code == 401
    missing = runner.invoke(cli.app, ["tokens", "revoke", "no-such-token"])
    assert missing.exit_code == 1
    bad = runner.invoke(cli.app, [*args[:-1], "soon"])
    assert bad.exit_code != 0


def test_an_offset_past_any_page_is_a_422_not_a_500(api: TestClient) -> None:
    # Found by the fuzzer: SQLite cannot bind an int past 2**63-1.
    response = api.get("/v1/tokens?offset=2263901308610887792197632", headers=ADMIN)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"][-1] == "offset"
