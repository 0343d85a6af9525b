"""The scheduler in the live control plane: snapshot from the database, decide, record.

One transaction reads what the policy needs (pending and active jobs, tenants), calls
``scheduler.policy.decide`` and writes its decisions: admitted jobs go STARTING with the
size and nodes the policy chose; jobs to preempt or resize are marked with a stop
request, which the reconciler carries out against Ray outside the transaction.

A pass reports how long it took and how long each admitted job waited to the
``SchedulingObserver`` it is given (the control plane's metrics).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from raydc.scheduler.model import (
    Decisions,
    Job,
    Node,
    NodeType,
    PolicyConfig,
    Shape,
    Snapshot,
    Strategy,
    Tenant,
)
from raydc.scheduler.policy import decide
from raydc.server.services.job_status import switch_job_status
from raydc.settings import Settings
from raydc.specs.capacity import ClusterCapacity
from raydc.specs.demand import worker_range
from raydc.specs.status import ACTIVE_STATUSES, JobStatus
from raydc.store.models import DeploymentRow, JobEventRow, JobRow, TenantRow

_QUEUED = [JobStatus.PENDING.value, *(s.value for s in ACTIVE_STATUSES)]
STOP_PREEMPT = "preempt"
STOP_RESIZE = "resize"


class SchedulingObserver(Protocol):
    def pass_finished(self, seconds: float) -> None: ...

    def job_admitted(self, priority: str, waited_s: float) -> None: ...


@dataclass
class QueueView:
    """The last pass's queue: scheduling order, why each job waits, whose job is whose."""

    decisions: Decisions = field(default_factory=Decisions)
    tenant_of: dict[str, str] = field(default_factory=dict)


def policy_config(settings: Settings) -> PolicyConfig:
    return PolicyConfig(
        aging_s=settings.sched_aging_s,
        service_levels_gpu_s=tuple(sorted(h * 3600.0 for h in settings.sched_service_levels_gpu_h)),
        min_run_s=settings.sched_min_run_s,
        reservations=settings.sched_reservations,
        preemption=settings.sched_preemption,
        resize_gap_s=settings.sched_resize_gap_s,
    )


def nodes_of(capacity: ClusterCapacity | None) -> list[Node] | None:
    if capacity is None:
        return None
    ids = capacity.node_ids or tuple(f"node-{i}" for i in range(len(capacity.nodes)))
    extras = capacity.node_custom or tuple({} for _ in capacity.nodes)
    return [
        Node(node_id, n.cpu, n.gpu, n.memory_gb, tuple(sorted(custom.items())))
        for node_id, n, custom in zip(ids, capacity.nodes, extras, strict=True)
    ]


def tenant_of_row(row: TenantRow) -> Tenant:
    return Tenant(
        row.name,
        nominal=(row.quota_cpu, row.quota_gpu, row.quota_memory_gb),
        borrowing_limit=(row.borrow_cpu, row.borrow_gpu, row.borrow_memory_gb),
        weight=row.weight,
    )


def _seconds(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


def job_of_row(row: JobRow) -> Job:
    """The policy's view of a job; reads the (already validated) spec without pydantic."""
    resources: dict[str, Any] = row.spec.get("resources") or {}
    low, high = worker_range(row.spec)
    shape = Shape(
        float(resources.get("cpus_per_worker", 1.0)),
        float(resources.get("gpus_per_worker", 0.0)),
        float(resources.get("memory_gb_per_worker", 0.0)),
        tuple(sorted((resources.get("custom") or {}).items())),
    )
    active = row.status != JobStatus.PENDING.value
    size = row.workers or low
    placement = row.placement if active else None
    stopping_for = None
    if active and row.stop_action is not None:
        stopping_for = row.stop_for or ""  # "" = stopping, for no job in particular
        if row.stop_action == STOP_RESIZE and (row.target_workers or 0) > size:
            size = row.target_workers or size  # growing: count the size it restarts at
    return Job(
        id=row.id, tenant=row.tenant, priority=row.priority_rank,
        submitted_at=row.created_at.timestamp(), shape=shape, min_workers=low,
        max_workers=high, strategy=Strategy(resources.get("placement", "PACK")),
        queued_at=_seconds(row.queued_at), attained_gpu_s=row.attained_gpu_s,
        workers=size if active else 0, placement=placement,
        started_at=_seconds(row.run_started_at) if active else None,
        last_checkpoint_at=_seconds(row.last_checkpoint_at), stopping_for=stopping_for,
        yields_to=None if active else row.stop_for,
        resized_at=_seconds(row.run_started_at) if active and row.attempt > 1 else None,
    )  # fmt: skip


def deployment_jobs(session: Session) -> list[Job]:
    """Model deployments as the policy sees them: running, never stopped, holding their
    tenant's quota for the replicas they run (at least their minimum)."""
    jobs = []
    for row in session.scalars(select(DeploymentRow)):
        scaling = row.spec.get("autoscaling") or {}
        replicas = max(int(scaling.get("min_replicas", 1)), row.replicas + row.canary_replicas)
        if replicas <= 0:
            continue
        per = row.spec.get("resources") or {}
        shape = Shape(float(per.get("cpus_per_replica", 1.0)),
                      float(per.get("gpus_per_replica", 0.0)),
                      float(per.get("memory_gb_per_replica", 0.0)), ())  # fmt: skip
        jobs.append(Job(
            id=f"deployment:{row.tenant}/{row.name}", tenant=row.tenant, priority=3,
            submitted_at=row.created_at.timestamp(), shape=shape, min_workers=replicas,
            max_workers=replicas, strategy=Strategy.SPREAD, workers=replicas,
            started_at=row.created_at.timestamp(), preemptible=False,
        ))  # fmt: skip
    return jobs


def schedule(
    session: Session,
    settings: Settings,
    capacity: ClusterCapacity | None,
    now: datetime,
    node_types: list[NodeType] | None = None,
    observer: SchedulingObserver | None = None,
) -> tuple[QueueView, list[str]]:
    """Run one pass and record its decisions; returns the queue view and admitted ids."""
    started = time.perf_counter()
    try:
        view, admitted = _decide_and_record(session, settings, capacity, now, node_types)
    finally:
        if observer is not None:
            observer.pass_finished(time.perf_counter() - started)
    if observer is not None and admitted:
        _report_waits_on_commit(session, observer, admitted, now)
    return view, [row.id for row in admitted]


def _report_waits_on_commit(
    session: Session, observer: SchedulingObserver, admitted: list[JobRow], now: datetime
) -> None:
    """Report each admitted job's wait once the admissions are committed: a pass rolled
    back admitted nobody. The wait runs from when the job last became PENDING: queued_at
    is set on a requeue, and is empty until the first one (then it is the submission)."""
    waits = [(row.priority, (now - (row.queued_at or row.created_at)).total_seconds())
             for row in admitted]  # fmt: skip

    def report(_: Session) -> None:
        for priority, waited_s in waits:
            observer.job_admitted(priority, waited_s)

    event.listen(session, "after_commit", report, once=True)


def _decide_and_record(
    session: Session,
    settings: Settings,
    capacity: ClusterCapacity | None,
    now: datetime,
    node_types: list[NodeType] | None,
) -> tuple[QueueView, list[JobRow]]:
    # In submission order: the policy sorts each tenant's jobs by it, and sorted input
    # makes that sort linear. Locked: a cancel (or an outcome) committed between this
    # read and the pass's writes would otherwise be overwritten, and a CANCELLED job
    # admitted. Postgres re-checks the WHERE after waiting, so such a job drops out.
    query = (
        select(JobRow)
        .where(JobRow.status.in_(_QUEUED))
        .order_by(JobRow.created_at, JobRow.id)
        .with_for_update()
    )
    rows = {r.id: r for r in session.scalars(query)}
    queued = [r for r in rows.values() if r.status == JobStatus.PENDING.value]
    pending = [job_of_row(r) for r in queued]
    running = [job_of_row(r) for r in rows.values() if r.status != JobStatus.PENDING.value]
    # With nothing pending a pass can still grow an elastic job onto idle capacity, or
    # shrink the autoscaler request so idle nodes can go.
    if not pending and not node_types and not any(j.workers < j.max_workers for j in running):
        return QueueView(), []
    running += deployment_jobs(session)
    tenants = {row.name: tenant_of_row(row) for row in session.scalars(select(TenantRow))}
    snapshot = Snapshot(
        now=now.timestamp(), nodes=nodes_of(capacity), running=running, pending=pending,
        tenants=tenants, config=policy_config(settings), node_types=node_types or [],
    )  # fmt: skip
    decisions = decide(snapshot)
    admitted: list[JobRow] = []
    for admit in decisions.admit:
        row = rows[admit.job_id]
        switch_job_status(session, row, JobStatus.STARTING, reason="admitted",
                          message=f"{admit.workers} workers")  # fmt: skip
        row.attempt += 1
        row.submitted_at = None
        row.workers, row.placement, row.run_started_at = admit.workers, admit.placement, now
        admitted.append(row)
    for preempt in decisions.preempt:
        _request_stop(session, rows[preempt.job_id], STOP_PREEMPT, preempt.for_job, preempt.reason)
    for resize in decisions.resize:
        row = rows[resize.job_id]
        _request_stop(session, row, STOP_RESIZE, resize.for_job, resize.reason)
        row.target_workers = resize.workers
        if resize.workers > (row.workers or 0):
            row.placement = resize.placement  # hold the room it grows into
    still_pending = {r.id for r in queued} - {r.id for r in admitted}
    for row in queued:  # a victim's preemptor has started (or gone): it queues normally
        if row.stop_for is not None and row.stop_for not in still_pending:
            row.stop_for = None
    view = QueueView(decisions, {r.id: r.tenant for r in rows.values()})
    return view, admitted


def _request_stop(session: Session, row: JobRow, action: str, for_job: str | None,
                  reason: str) -> None:  # fmt: skip
    row.stop_action, row.stop_for = action, for_job
    session.add(
        JobEventRow(job_id=row.id, from_status=row.status, to_status=row.status,
                    reason=f"{action}_requested", message=reason)
    )  # fmt: skip
