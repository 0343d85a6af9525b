"""Tenants and their quotas."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from raydc.server.errors import Conflict, NotFound
from raydc.specs.tenants import Quota, TenantCreate
from raydc.store.models import TenantRow

DEFAULT_TENANT = "default"


def quota_of(row: TenantRow) -> Quota:
    return Quota(cpu=row.quota_cpu, gpu=row.quota_gpu, memory_gb=row.quota_memory_gb)


def ensure_tenant(session: Session, name: str) -> TenantRow:
    row = session.get(TenantRow, name)
    if row is None:
        row = TenantRow(name=name)
        session.add(row)
        session.flush()
    return row


def create_tenant(session: Session, request: TenantCreate) -> TenantRow:
    if session.get(TenantRow, request.name) is not None:
        raise Conflict(f"tenant '{request.name}' already exists")
    row = TenantRow(
        name=request.name, quota_cpu=request.quota.cpu, quota_gpu=request.quota.gpu,
        quota_memory_gb=request.quota.memory_gb,
    )  # fmt: skip
    session.add(row)
    try:
        session.flush()
    except IntegrityError as error:
        raise Conflict(f"tenant '{request.name}' already exists") from error
    return row


def get_tenant(session: Session, name: str) -> TenantRow:
    row = session.get(TenantRow, name)
    if row is None:
        raise NotFound(f"tenant '{name}' not found")
    return row


def list_tenants(session: Session) -> list[TenantRow]:
    return list(session.scalars(select(TenantRow).order_by(TenantRow.name)))


def set_quota(session: Session, name: str, quota: Quota) -> TenantRow:
    row = get_tenant(session, name)
    row.quota_cpu, row.quota_gpu, row.quota_memory_gb = quota.cpu, quota.gpu, quota.memory_gb
    return row
