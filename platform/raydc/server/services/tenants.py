"""Tenants: their quotas and scheduling settings (fair-share weight, borrowing limit)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from raydc.server.errors import Conflict, NotFound
from raydc.specs.tenants import Quota, TenantCreate, TenantScheduling
from raydc.store.models import TenantRow

DEFAULT_TENANT = "default"


def quota_of(row: TenantRow) -> Quota:
    return Quota(cpu=row.quota_cpu, gpu=row.quota_gpu, memory_gb=row.quota_memory_gb)


def borrowable(row: TenantRow, tenants: list[TenantRow]) -> Quota:
    """The most the tenant could ever borrow: the other tenants' quota, up to its own
    borrowing limit. A dimension no other tenant has a quota in lends nothing."""
    others = [t for t in tenants if t.name != row.name]

    def lendable(lent: float, limit: float | None) -> float:
        return lent if limit is None else min(lent, limit)

    return Quota(
        cpu=lendable(sum(t.quota_cpu or 0.0 for t in others), row.borrow_cpu),
        gpu=lendable(sum(t.quota_gpu or 0.0 for t in others), row.borrow_gpu),
        memory_gb=lendable(sum(t.quota_memory_gb or 0.0 for t in others), row.borrow_memory_gb),
    )


def scheduling_of(row: TenantRow) -> TenantScheduling:
    borrowing_limit = Quota(cpu=row.borrow_cpu, gpu=row.borrow_gpu, memory_gb=row.borrow_memory_gb)
    return TenantScheduling(weight=row.weight, borrowing_limit=borrowing_limit)


def _apply_scheduling(row: TenantRow, scheduling: TenantScheduling) -> None:
    limit = scheduling.borrowing_limit
    row.weight = scheduling.weight
    row.borrow_cpu, row.borrow_gpu, row.borrow_memory_gb = limit.cpu, limit.gpu, limit.memory_gb


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
    _apply_scheduling(row, request.scheduling)
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


def set_scheduling(session: Session, name: str, scheduling: TenantScheduling) -> TenantRow:
    row = get_tenant(session, name)
    _apply_scheduling(row, scheduling)
    return row
