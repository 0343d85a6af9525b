"""The queue and the cluster's usage as raydc accounts it (admitted jobs' demand)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from raydc.scheduler.admission import PendingJob, queue_order
from raydc.security.rbac import Principal
from raydc.specs.demand import Demand
from raydc.specs.status import ACTIVE_STATUSES, JobStatus
from raydc.store.models import JobRow


def job_demand_of(job: JobRow) -> Demand:
    return Demand(job.demand_cpu, job.demand_gpu, job.demand_memory_gb)


def pending_job(job: JobRow) -> PendingJob:
    return PendingJob(job.id, job.tenant, job.priority_rank, job.created_at, job_demand_of(job))


def usage_and_pending(session: Session) -> tuple[Demand, Demand]:
    """Demand of admitted (STARTING/RUNNING) jobs, and of PENDING jobs."""
    statuses = [s.value for s in (*ACTIVE_STATUSES, JobStatus.PENDING)]
    in_use, pending = Demand(), Demand()
    for job in session.scalars(select(JobRow).where(JobRow.status.in_(statuses))):
        if job.status == JobStatus.PENDING.value:
            pending = pending + job_demand_of(job)
        else:
            in_use = in_use + job_demand_of(job)
    return in_use, pending


def pending_in_order(session: Session, principal: Principal) -> list[JobRow]:
    query = select(JobRow).where(JobRow.status == JobStatus.PENDING.value)
    if not principal.is_admin:
        query = query.where(JobRow.tenant == principal.tenant)
    rows = {job.id: job for job in session.scalars(query)}
    return [rows[p.id] for p in queue_order([pending_job(j) for j in rows.values()])]
