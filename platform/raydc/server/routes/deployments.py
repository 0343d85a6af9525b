"""Model deployments on Ray Serve: create, read, change, delete (the reconciler applies)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from raydc.server.addressing import TenantQuery
from raydc.server.bodies import read_limited
from raydc.server.control_plane import ControlPlane
from raydc.server.deps import ControlPlaneDep, Reader, Submitter
from raydc.server.schemas import DeploymentOut
from raydc.server.services import deployments
from raydc.server.validation import decode_body
from raydc.store.models import DeploymentRow

router = APIRouter(prefix="/v1/deployments", tags=["deployments"])


def _out(cp: ControlPlane, row: DeploymentRow) -> DeploymentOut:
    spec = row.spec
    return DeploymentOut(
        name=row.name, tenant=row.tenant, status=row.status, message=row.message,
        model=spec["model"], canary=spec.get("canary"), replicas=row.replicas,
        canary_replicas=row.canary_replicas, target_replicas=row.target_replicas,
        url=deployments.predict_url(cp.settings.resolved_serve_url, row.tenant, row.name),
        spec=spec, generation=row.generation, applied_generation=row.applied_generation,
        created_at=row.created_at, updated_at=row.updated_at,
    )  # fmt: skip


async def _body(request: Request, cp: ControlPlane) -> object:
    raw = await read_limited(request, cp.settings.max_spec_bytes)
    return decode_body(raw, request.headers.get("content-type"))


@router.post("", status_code=201)
async def create_deployment(
    request: Request, cp: ControlPlaneDep, principal: Submitter
) -> DeploymentOut:
    spec = deployments.parse_spec(await _body(request, cp))

    def work() -> DeploymentOut:
        with cp.tx() as session:
            return _out(cp, deployments.create_deployment(session, principal, spec))

    out = await cp.run_db(work)
    cp.deployer.wake()
    return out


@router.get("")
def list_deployments(
    cp: ControlPlaneDep, principal: Reader, tenant: TenantQuery = None
) -> list[DeploymentOut]:
    with cp.tx() as session:
        rows = deployments.list_deployments(session, principal, tenant)
        return [_out(cp, row) for row in rows]


@router.get("/{name}")
def get_deployment(
    name: str, cp: ControlPlaneDep, principal: Reader, tenant: TenantQuery = None
) -> DeploymentOut:
    with cp.tx() as session:
        return _out(cp, deployments.get_deployment(session, principal, name, tenant))


@router.patch("/{name}")
async def patch_deployment(
    name: str, request: Request, cp: ControlPlaneDep, principal: Submitter,
    tenant: TenantQuery = None,
) -> DeploymentOut:  # fmt: skip
    patch = deployments.parse_patch(await _body(request, cp))

    def work() -> DeploymentOut:
        with cp.tx() as session:
            row = deployments.patch_deployment(session, principal, name, patch, tenant)
            return _out(cp, row)

    out = await cp.run_db(work)
    cp.deployer.wake()
    return out


@router.delete("/{name}", status_code=202)
def delete_deployment(
    name: str, cp: ControlPlaneDep, principal: Submitter, tenant: TenantQuery = None
) -> DeploymentOut:
    with cp.tx() as session:
        out = _out(cp, deployments.delete_deployment(session, principal, name, tenant))
    cp.deployer.wake()
    return out
