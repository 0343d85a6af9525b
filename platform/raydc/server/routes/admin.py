"""Tenants, quotas and scheduling settings (admins only); tokens are in tokens.py."""

from __future__ import annotations

from fastapi import APIRouter

from raydc.server.deps import Admin, ControlPlaneDep
from raydc.server.schemas import TenantOut
from raydc.server.services import tenants
from raydc.specs.tenants import Quota, TenantCreate, TenantScheduling

router = APIRouter(prefix="/v1", tags=["admin"])


@router.post("/tenants", status_code=201)
def create_tenant(body: TenantCreate, cp: ControlPlaneDep, _: Admin) -> TenantOut:
    with cp.tx() as session:
        return TenantOut.of(tenants.create_tenant(session, body))


@router.get("/tenants")
def list_tenants(cp: ControlPlaneDep, _: Admin) -> list[TenantOut]:
    with cp.tx() as session:
        return [TenantOut.of(row) for row in tenants.list_tenants(session)]


@router.put("/tenants/{tenant}/quota")
def set_quota(tenant: str, body: Quota, cp: ControlPlaneDep, _: Admin) -> TenantOut:
    with cp.tx() as session:
        row = tenants.set_quota(session, tenant, body)
    cp.reconciler.wake()
    return TenantOut.of(row)


@router.put("/tenants/{tenant}/scheduling")
def set_scheduling(tenant: str, body: TenantScheduling, cp: ControlPlaneDep, _: Admin) -> TenantOut:
    """Fair-share weight and borrowing limit; fields left out take their defaults."""
    with cp.tx() as session:
        row = tenants.set_scheduling(session, tenant, body)
    cp.reconciler.wake()
    return TenantOut.of(row)
