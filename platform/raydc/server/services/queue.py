"""The queue and the cluster's usage as raydc accounts it (admitted jobs' demand).

These read only the few columns they need, never whole rows with their specs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from raydc.scheduler.model import WaitCode
from raydc.security.rbac import Principal
from raydc.server.services.scheduling import QueueView
from raydc.specs.demand import Demand
from raydc.specs.status import ACTIVE_STATUSES, JobStatus
from raydc.store.models import JobRow

_ACTIVE = [s.value for s in ACTIVE_STATUSES]


@dataclass(frozen=True)
class QueuedJob:
    id: str
    tenant: str
    name: str
    priority: str
    priority_rank: int
    created_at: datetime


def pending_jobs(session: Session, tenant: str | None = None) -> list[QueuedJob]:
    query = select(
        JobRow.id, JobRow.tenant, JobRow.name, JobRow.priority, JobRow.priority_rank,
        JobRow.created_at,
    ).where(JobRow.status == JobStatus.PENDING.value)  # fmt: skip
    if tenant is not None:
        query = query.where(JobRow.tenant == tenant)
    return [QueuedJob(*row) for row in session.execute(query)]


def usage_and_pending(session: Session) -> tuple[Demand, Demand]:
    """Total demand of admitted jobs, and of PENDING jobs."""
    query = (
        select(JobRow.status, func.sum(JobRow.demand_cpu), func.sum(JobRow.demand_gpu),
               func.sum(JobRow.demand_memory_gb))
        .where(JobRow.status.in_([*_ACTIVE, JobStatus.PENDING.value]))
        .group_by(JobRow.status)
    )  # fmt: skip
    in_use, pending = Demand(), Demand()
    for status, cpu, gpu, mem in session.execute(query):
        if status == JobStatus.PENDING.value:
            pending = pending + Demand(cpu, gpu, mem)
        else:
            in_use = in_use + Demand(cpu, gpu, mem)
    return in_use, pending


def pending_in_order(session: Session, principal: Principal, view: QueueView) -> list[QueuedJob]:
    """Pending jobs in the order the last scheduling pass considered them (jobs it has
    not seen yet last, by priority and age)."""
    queued = pending_jobs(session, None if principal.is_admin else principal.tenant)
    position = {job_id: i for i, job_id in enumerate(view.decisions.order)}
    unseen = len(position)
    return sorted(
        queued, key=lambda q: (position.get(q.id, unseen), -q.priority_rank, q.created_at, q.id)
    )


_OTHER_TENANT = {
    WaitCode.HIGHER_PRIORITY: "behind a higher-priority job of another tenant",
    WaitCode.RESERVED: "capacity reserved for a job of another tenant",
    WaitCode.PREEMPTING: "waiting for preempted jobs to stop",
}


def wait_reason(
    view: QueueView, job_id: str, principal: Principal
) -> tuple[str | None, str | None]:
    """Why a job waits (code, sentence), without naming another tenant's job to a tenant's
    user."""
    wait = view.decisions.waiting.get(job_id)
    if wait is None:
        return None, None
    if wait.blocker is not None and not principal.sees_tenant(view.tenant_of.get(wait.blocker, "")):
        return wait.code.value, _OTHER_TENANT.get(wait.code, "waiting on a job of another tenant")
    return wait.code.value, wait.message
