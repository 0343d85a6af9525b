"""Tenants: their quotas and scheduling settings (fair-share weight, borrowing limit)."""

from __future__ import annotations

import math

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from raydc.server.errors import Conflict, NotFound
from raydc.specs.tenants import Quota, TenantCreate, TenantScheduling
from raydc.store.models import CodeBundleRow, JobRow, TenantRow

DEFAULT_TENANT = "default"
BYTES_PER_GB = 1024**3  # storage_gb is GiB, like memory_gb


def _stored(value: float | None) -> float | None:
    """A limit as read back: a row written before quotas were strict may hold Infinity,
    which meant what None means now."""
    return value if value is not None and math.isfinite(value) else None


def quota_of(row: TenantRow) -> Quota:
    # Built without validation: the row was validated on its way in, and reading a tenant
    # must not fail on a value an older, laxer spec let through.
    return Quota.model_construct(
        cpu=_stored(row.quota_cpu), gpu=_stored(row.quota_gpu),
        memory_gb=_stored(row.quota_memory_gb), storage_gb=_stored(row.quota_storage_gb),
    )  # fmt: skip


def borrowing_limit_of(row: TenantRow) -> Quota:
    return Quota.model_construct(
        cpu=_stored(row.borrow_cpu), gpu=_stored(row.borrow_gpu),
        memory_gb=_stored(row.borrow_memory_gb),
    )  # fmt: skip


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
    return TenantScheduling.model_construct(
        weight=row.weight, borrowing_limit=borrowing_limit_of(row)
    )


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
        quota_memory_gb=request.quota.memory_gb, quota_storage_gb=request.quota.storage_gb,
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
    row.quota_storage_gb = quota.storage_gb
    return row


def set_scheduling(session: Session, name: str, scheduling: TenantScheduling) -> TenantRow:
    row = get_tenant(session, name)
    _apply_scheduling(row, scheduling)
    return row


def storage_used(session: Session, tenant: str) -> int:
    """Bytes the tenant stores: its code bundles (unpacked) and its jobs' artifacts."""
    bundles = session.scalar(
        select(func.coalesce(func.sum(CodeBundleRow.unpacked_bytes), 0)).where(
            CodeBundleRow.tenant == tenant
        )
    )
    artifacts = session.scalar(
        select(func.coalesce(func.sum(JobRow.artifact_bytes), 0)).where(JobRow.tenant == tenant)
    )
    return int(bundles or 0) + int(artifacts or 0)


def _gb(size: float) -> str:
    return f"{size / BYTES_PER_GB:.4g} GB"


def check_storage(session: Session, tenant_row: TenantRow, adding: int = 0) -> None:
    """Refuse (409, naming quota.storage_gb) what would take the tenant past its storage
    quota. ``adding`` is what an upload will store; with none (a job, whose artifacts are
    not known until it ends) a tenant is refused once it has no room left at all."""
    limit_gb = _stored(tenant_row.quota_storage_gb)
    if limit_gb is None:
        return
    limit = int(limit_gb * BYTES_PER_GB)
    used = storage_used(session, tenant_row.name)
    if (used + adding > limit) if adding else (used >= limit):
        adds = f"; this upload unpacks to {_gb(adding)}" if adding else ""
        raise Conflict(
            f"quota.storage_gb: tenant '{tenant_row.name}' stores {_gb(used)} of its "
            f"{_gb(limit)} limit{adds}"
        )
