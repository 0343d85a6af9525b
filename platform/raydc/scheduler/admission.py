"""Admission: which pending jobs start now.

Priority first, then submission order. A job over its tenant's quota waits without
blocking other tenants; a job the cluster cannot hold right now blocks every job after
it, so a large job is not starved by a stream of small ones — unless it is larger than
the whole cluster, when it waits for the cluster to grow without blocking anyone. (The
full scheduler adds backfill, fair share, borrowing and preemption behind this same
function.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from raydc.specs.demand import Demand
from raydc.specs.tenants import Quota


@dataclass(frozen=True)
class PendingJob:
    id: str
    tenant: str
    priority_rank: int
    created_at: datetime
    demand: Demand


@dataclass(frozen=True)
class AdmissionSnapshot:
    pending: list[PendingJob]
    tenant_usage: dict[str, Demand]
    tenant_quota: dict[str, Quota]
    # What the cluster can still hold; None while the cluster's size is unknown.
    free_capacity: Demand | None
    # All the cluster can ever hold (its current size); None while unknown.
    total_capacity: Demand | None = None


@dataclass
class AdmissionDecision:
    admitted: list[str] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)  # job id -> why it waits
    blocked_by: dict[str, PendingJob] = field(default_factory=dict)  # job id -> the job ahead


def queue_order(jobs: list[PendingJob]) -> list[PendingJob]:
    return sorted(jobs, key=lambda job: (-job.priority_rank, job.created_at, job.id))


def quota_shortfall(quota: Quota | None, usage: Demand, demand: Demand) -> str | None:
    """Which quota dimension the job would exceed, as a sentence, or None if it fits."""
    if quota is None:
        return None
    after = usage + demand
    for dimension, limit, used in (
        ("cpu", quota.cpu, after.cpu),
        ("gpu", quota.gpu, after.gpu),
        ("memory_gb", quota.memory_gb, after.memory_gb),
    ):
        if limit is not None and used > limit + 1e-9:
            return f"tenant quota: {dimension} would be {used:g} of {limit:g}"
    return None


def admit_pending_jobs(snapshot: AdmissionSnapshot) -> AdmissionDecision:
    decision = AdmissionDecision()
    if snapshot.free_capacity is None:
        for job in snapshot.pending:
            decision.waiting[job.id] = "waiting for the cluster to connect"
        return decision
    free = snapshot.free_capacity
    usage = dict(snapshot.tenant_usage)
    blocker: PendingJob | None = None
    total = snapshot.total_capacity
    for job in queue_order(snapshot.pending):
        if total is not None and not job.demand.fits_in(total):
            # It cannot start until the cluster grows; it must not hold up the rest.
            decision.waiting[job.id] = (
                f"larger than the whole cluster: needs cpu={job.demand.cpu:g} "
                f"gpu={job.demand.gpu:g} memory_gb={job.demand.memory_gb:g}, the cluster has "
                f"cpu={total.cpu:g} gpu={total.gpu:g} memory_gb={total.memory_gb:g}"
            )
            continue
        if blocker is not None:
            decision.waiting[job.id] = f"behind job {blocker.id}, which waits for capacity"
            decision.blocked_by[job.id] = blocker
            continue
        used = usage.get(job.tenant, Demand())
        shortfall = quota_shortfall(snapshot.tenant_quota.get(job.tenant), used, job.demand)
        if shortfall is not None:
            decision.waiting[job.id] = shortfall
            continue
        if not job.demand.fits_in(free):
            decision.waiting[job.id] = (
                f"cluster capacity: needs cpu={job.demand.cpu:g} gpu={job.demand.gpu:g} "
                f"memory_gb={job.demand.memory_gb:g}, free cpu={free.cpu:g} gpu={free.gpu:g} "
                f"memory_gb={free.memory_gb:g}"
            )
            blocker = job
            continue
        decision.admitted.append(job.id)
        free = free - job.demand
        usage[job.tenant] = used + job.demand
    return decision
