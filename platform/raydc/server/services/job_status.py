"""The one place a job's status changes; every change also writes a job event."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from raydc.specs.status import JobStatus, TerminationReason, check_transition
from raydc.store.models import JobEventRow, JobRow, utcnow


def record_submitted(session: Session, job: JobRow) -> None:
    session.add(
        JobEventRow(
            job_id=job.id, from_status=None, to_status=job.status, reason="submitted", message=None
        )
    )


def switch_job_status(
    session: Session,
    job: JobRow,
    target: JobStatus,
    *,
    reason: TerminationReason | str | None = None,
    message: str | None = None,
) -> None:
    """Move ``job`` to ``target``; raises IllegalTransition for a move the table forbids."""
    current = JobStatus(job.status)
    check_transition(current, target)
    now = utcnow()
    job.status = target.value
    job.updated_at = now
    if target is JobStatus.RUNNING and job.started_at is None:
        job.started_at = now
    if target.is_terminal:
        job.finished_at = now
        job.termination_reason = str(reason) if reason is not None else None
        if message and target is JobStatus.FAILED:
            job.error = message
    session.add(
        JobEventRow(
            job_id=job.id, from_status=current.value, to_status=target.value,
            reason=str(reason) if reason is not None else None, message=message,
        )
    )  # fmt: skip


def record_run_event(session: Session, job: JobRow, *, reason: str, message: str) -> None:
    """Something that happened to a running job without changing its status (a worker
    failed and Ray Train restarted the group, the group changed size)."""
    job.updated_at = utcnow()
    session.add(
        JobEventRow(job_id=job.id, from_status=job.status, to_status=job.status,
                    reason=reason, message=message[:1000])
    )  # fmt: skip


def count_events(session: Session, job_id: str, reasons: tuple[str, ...]) -> int:
    query = (
        select(func.count())
        .select_from(JobEventRow)
        .where(JobEventRow.job_id == job_id, JobEventRow.reason.in_(reasons))
    )
    return int(session.scalar(query) or 0)
