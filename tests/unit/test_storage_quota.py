"""quota.storage_gb: code bundles (unpacked) and job artifacts against a per-tenant limit;
and quota numbers that refuse booleans, strings and infinities."""

from __future__ import annotations

import io
import random
import zipfile
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from raydc import cli, cli_base
from raydc.server.control_plane import ControlPlane
from raydc.server.errors import Conflict
from raydc.server.services import tenants as tenant_service
from raydc.server.services.scheduling import tenant_of_row
from raydc.specs.tenants import Quota, TenantCreate, TenantScheduling
from raydc.store.models import JobRow, TenantRow
from tests.unit.factories import ADMIN, make_tenant, make_token, train_spec
from tests.unit.test_tenants import sdk_for, tenant

ZIP = {"content-type": "application/zip"}
GB = 1024**3
KB = 1024


def bundle(size: int, seed: int) -> bytes:
    """A zip unpacking to exactly `size` bytes (random, so it stays small and honest)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("blob.bin", random.Random(seed).randbytes(size))
    return buffer.getvalue()


def upload(api: TestClient, data: bytes, headers: dict[str, str]) -> Any:
    return api.post("/v1/code", content=data, headers={**headers, **ZIP})


def test_non_finite_numbers_are_refused_by_the_specs() -> None:
    for value in (float("inf"), float("nan"), True, "1"):
        for field in ("cpu", "gpu", "memory_gb", "storage_gb"):
            with pytest.raises(ValidationError):
                Quota.model_validate({field: value})
        with pytest.raises(ValidationError):
            TenantCreate.model_validate({"name": "t", "weight": value})
        with pytest.raises(ValidationError):
            TenantScheduling.model_validate({"weight": value})
    assert Quota.model_validate({"cpu": 2, "storage_gb": 0.5}).cpu == 2.0


def gb(size: int) -> float:
    return size / GB


def test_the_storage_quota_is_set_shown_and_replaced(api: TestClient) -> None:
    created = api.post(
        "/v1/tenants", json={"name": "team-a", "quota": {"storage_gb": 50}}, headers=ADMIN
    )
    assert created.status_code == 201, created.text
    assert created.json()["quota"]["storage_gb"] == 50
    assert tenant(api, "team-a")["quota"] == {
        "cpu": None, "gpu": None, "memory_gb": None, "storage_gb": 50,
    }  # fmt: skip
    updated = api.put("/v1/tenants/team-a/quota", json={"cpu": 4}, headers=ADMIN).json()
    assert "storage_gb" not in updated["quota"]  # unset = unlimited, shown only once set


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"cpu": true}', "cpu"),
        pytest.param('{"cpu": Infinity}', "cpu"),
        pytest.param('{"gpu": NaN}', "gpu"),
        ('{"memory_gb": "8"}', "memory_gb"),
        ('{"storage_gb": false}', "storage_gb"),
        ('{"storage_gb": -1}', "storage_gb"),
        ('{"storage_gb": 1e30}', "storage_gb"),
    ],
)
def test_quota_numbers_are_strict(api: TestClient, raw: str, field: str) -> None:
    make_tenant(api, "team-a", cpu=4)
    before = tenant(api, "team-a")
    headers = {**ADMIN, "content-type": "application/json"}
    bad = api.put("/v1/tenants/team-a/quota", content=raw, headers=headers)
    assert bad.status_code == 422, bad.text
    assert bad.json()["detail"][0]["loc"] == ["body", field]
    assert tenant(api, "team-a") == before


@pytest.mark.parametrize(
    "weight",
    [
        "true",
        '"2"',
        pytest.param("NaN"),
        pytest.param("Infinity"),
    ],
)
def test_weights_are_strict_finite_numbers(api: TestClient, weight: str) -> None:
    headers = {**ADMIN, "content-type": "application/json"}
    body = f'{{"name": "t", "weight": {weight}}}'
    created = api.post("/v1/tenants", content=body, headers=headers)
    assert created.status_code == 422, created.text
    assert created.json()["detail"][0]["loc"] == ["body", "weight"]
    make_tenant(api, "team-a")
    body = f'{{"weight": {weight}}}'
    refused = api.put("/v1/tenants/team-a/scheduling", content=body, headers=headers)
    assert refused.status_code == 422, refused.text
    assert tenant(api, "team-a")["weight"] == 1.0


def test_storage_cannot_be_borrowed(api: TestClient) -> None:
    make_tenant(api, "team-a")
    body = {"borrowing_limit": {"storage_gb": 1}}
    refused = api.put("/v1/tenants/team-a/scheduling", json=body, headers=ADMIN)
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "borrowing_limit"]
    assert "storage_gb" in refused.json()["detail"][0]["msg"]
    create = {"name": "team-b", "borrowing_limit": {"storage_gb": 1}}
    assert api.post("/v1/tenants", json=create, headers=ADMIN).status_code == 422


def test_an_upload_over_the_quota_is_409_and_writes_nothing(
    api: TestClient, control_plane: ControlPlane
) -> None:
    make_tenant(api, "team-a", storage_gb=gb(100 * KB))
    member = make_token(api, "team-a")
    first = bundle(30 * KB, seed=1)
    assert upload(api, first, member).status_code == 201
    assert upload(api, bundle(30 * KB, seed=2), member).status_code == 201
    before = sorted(control_plane.settings.code_dir.iterdir())
    refused = upload(api, bundle(50 * KB, seed=3), member)
    assert refused.status_code == 409
    detail = refused.json()["detail"]
    assert "quota.storage_gb" in detail and "GB" in detail
    assert sorted(control_plane.settings.code_dir.iterdir()) == before
    # A bundle the tenant already has costs nothing.
    assert upload(api, first, member).status_code == 201
    with control_plane.tx() as session:
        assert tenant_service.storage_used(session, "team-a") == 60 * KB


def test_the_same_bundle_costs_each_tenant_that_uploads_it(
    api: TestClient, control_plane: ControlPlane
) -> None:
    make_tenant(api, "team-a")
    make_tenant(api, "team-b", storage_gb=gb(30 * KB))
    data = bundle(40 * KB, seed=4)
    assert upload(api, data, make_token(api, "team-a")).status_code == 201
    assert upload(api, data, make_token(api, "team-b")).status_code == 409
    with control_plane.tx() as session:
        assert tenant_service.storage_used(session, "team-a") == 40 * KB
        assert tenant_service.storage_used(session, "team-b") == 0


def test_job_artifacts_count_against_the_quota(
    api: TestClient, control_plane: ControlPlane
) -> None:
    make_tenant(api, "team-a", storage_gb=gb(100 * KB))
    member = make_token(api, "team-a")
    job = api.post("/v1/jobs", json=train_spec(), headers=member).json()
    with control_plane.tx() as session:
        session.execute(update(JobRow).where(JobRow.id == job["id"]).values(artifact_bytes=70 * KB))
    assert upload(api, bundle(20 * KB, seed=5), member).status_code == 201
    with control_plane.tx() as session:
        assert tenant_service.storage_used(session, "team-a") == 90 * KB
    assert upload(api, bundle(20 * KB, seed=6), member).status_code == 409


def test_check_storage_refuses_a_tenant_with_no_room_left(
    api: TestClient, control_plane: ControlPlane
) -> None:
    make_tenant(api, "team-a", storage_gb=gb(40 * KB))
    make_tenant(api, "team-b")
    assert upload(api, bundle(40 * KB, seed=7), make_token(api, "team-a")).status_code == 201
    with control_plane.tx() as session:
        full = session.get(TenantRow, "team-a")
        assert full is not None
        with pytest.raises(Conflict, match=r"quota\.storage_gb"):
            tenant_service.check_storage(session, full)
        unlimited = session.get(TenantRow, "team-b")
        assert unlimited is not None
        tenant_service.check_storage(session, unlimited)  # no quota: never refused


def test_storage_is_not_a_scheduling_dimension(
    api: TestClient, control_plane: ControlPlane
) -> None:
    make_tenant(api, "team-a", cpu=4, storage_gb=1)
    job = api.post("/v1/jobs", json=train_spec(), headers=make_token(api, "team-a"))
    assert job.status_code == 201, job.text
    with control_plane.tx() as session:
        row = session.get(TenantRow, "team-a")
        assert row is not None
        scheduled = tenant_of_row(row)
        assert scheduled.nominal == (4.0, None, None)
        assert tenant_service.quota_of(row).storage_gb == 1


def test_a_quota_stored_as_infinity_reads_as_unlimited(
    api: TestClient, control_plane: ControlPlane
) -> None:
    # What the laxer spec let through before #18; reading it must not fail.
    make_tenant(api, "team-a")
    with control_plane.tx() as session:
        session.execute(
            update(TenantRow).where(TenantRow.name == "team-a").values(quota_cpu=float("inf"))
        )
    assert tenant(api, "team-a")["quota"]["cpu"] is None
    with control_plane.tx() as session:
        row = session.get(TenantRow, "team-a")
        assert row is not None
        assert tenant_service.quota_of(row).cpu is None


def test_the_cli_sets_and_lists_the_storage_quota(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_base, "client", lambda: sdk_for(api))
    monkeypatch.setattr(cli_base.console, "width", 200)
    make_tenant(api, "team-a")
    runner = CliRunner()
    args = ["tenants", "quota", "team-a", "--cpu", "4", "--storage-gb", "2.5"]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    assert tenant(api, "team-a")["quota"] == {
        "cpu": 4, "gpu": None, "memory_gb": None, "storage_gb": 2.5,
    }  # fmt: skip
    table = runner.invoke(cli.app, ["tenants", "list"])
    assert table.exit_code == 0, table.output
    assert "STORAGE GB" in table.output
    row = next(line for line in table.output.splitlines() if "team-a" in line)
    assert "2.5" in row


def test_a_tenant_with_no_storage_room_left_cannot_submit(
    api: TestClient, control_plane: ControlPlane
) -> None:
    make_tenant(api, "team-a", storage_gb=gb(40 * KB))
    make_tenant(api, "team-b", storage_gb=gb(40 * KB))
    full, roomy = make_token(api, "team-a"), make_token(api, "team-b")
    assert upload(api, bundle(40 * KB, seed=8), full).status_code == 201
    refused = api.post("/v1/jobs", json=train_spec(), headers=full)
    assert refused.status_code == 409 and "quota.storage_gb" in refused.json()["detail"]
    assert api.post("/v1/jobs", json=train_spec(), headers=roomy).status_code == 201
    with control_plane.tx() as session:
        assert session.scalar(select(func.count()).select_from(JobRow)) == 1
