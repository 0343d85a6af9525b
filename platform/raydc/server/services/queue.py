"""The queue and the cluster's usage as raydc accounts it (admitted jobs' demand).

These read only the few columns scheduling needs, never whole rows with their specs:
the admission pass runs every second over every pending job.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from raydc.scheduler.admission import AdmissionDecision, PendingJob, queue_order
from raydc.security.rbac import Principal
from raydc.specs.demand import Demand
from raydc.specs.status import ACTIVE_STATUSES, JobStatus
from raydc.store.models import JobRow

_ACTIVE = [s.value for s in ACTIVE_STATUSES]


@dataclass(frozen=True)
class QueuedJob:
    job: PendingJob
    name: str
    priority: str


def pending_jobs(session: Session, tenant: str | None = None) -> list[QueuedJob]:
    query = select(
        JobRow.id, JobRow.tenant, JobRow.priority_rank, JobRow.created_at, JobRow.demand_cpu,
        JobRow.demand_gpu, JobRow.demand_memory_gb, JobRow.name, JobRow.priority,
    ).where(JobRow.status == JobStatus.PENDING.value)  # fmt: skip
    if tenant is not None:
        query = query.where(JobRow.tenant == tenant)
    return [
        QueuedJob(PendingJob(r[0], r[1], r[2], r[3], Demand(r[4], r[5], r[6])), r[7], r[8])
        for r in session.execute(query)
    ]


def usage_by_tenant(session: Session) -> dict[str, Demand]:
    """Demand of each tenant's admitted (STARTING/RUNNING) jobs."""
    query = (
        select(JobRow.tenant, func.sum(JobRow.demand_cpu), func.sum(JobRow.demand_gpu),
               func.sum(JobRow.demand_memory_gb))
        .where(JobRow.status.in_(_ACTIVE))
        .group_by(JobRow.tenant)
    )  # fmt: skip
    return {tenant: Demand(cpu, gpu, mem) for tenant, cpu, gpu, mem in session.execute(query)}


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


def pending_in_order(session: Session, principal: Principal) -> list[QueuedJob]:
    queued = pending_jobs(session, None if principal.is_admin else principal.tenant)
    by_id = {q.job.id: q for q in queued}
    return [by_id[job.id] for job in queue_order([q.job for q in queued])]


def wait_reason(decision: AdmissionDecision, job_id: str, principal: Principal) -> str | None:
    """Why a job waits, without naming another tenant's job to a tenant's user."""
    blocker = decision.blocked_by.get(job_id)
    if blocker is not None and not principal.sees_tenant(blocker.tenant):
        return "behind a job of another tenant, which waits for capacity"
    return decision.waiting.get(job_id)
