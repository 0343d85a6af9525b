"""Applying what Ray reports about a job attempt to the job's row.

Every write here is guarded: the row is re-read under a lock and the change is dropped
if the job moved on (another status, another attempt) since the reconciler read it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from raydc.cluster.client import RayCluster
from raydc.cluster.jobs import RayJobState, submission_id
from raydc.server.job_reports import (
    UntrustedReport,
    directory_size,
    finite_metrics,
    own_checkpoint,
    read_progress_file,
    read_result_file,
)
from raydc.server.services.job_status import count_events, record_run_event, switch_job_status
from raydc.server.services.launch import logs_path, progress_path, result_path
from raydc.server.services.models import register_version
from raydc.settings import Settings
from raydc.specs.deployments import split_model_ref
from raydc.specs.status import ACTIVE_STATUSES, JobStatus, TerminationReason
from raydc.store.db import transaction
from raydc.store.models import JobRow, utcnow
from raydc.workloads.protocol import RUN_EVENT_REASONS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActiveJob:
    """What the reconciler read of a job before talking to Ray."""

    id: str
    tenant: str
    name: str
    status: JobStatus
    attempt: int
    submitted: bool
    cancel_requested: bool
    spec: dict[str, Any]
    workers: int | None = None
    stop_action: str | None = None  # the scheduler wants it stopped: preempt | resize

    @property
    def sid(self) -> str:
        return submission_id(self.id, self.attempt)


def read_active(session: Session) -> list[ActiveJob]:
    rows = session.scalars(
        select(JobRow).where(JobRow.status.in_([s.value for s in ACTIVE_STATUSES]))
    )
    return [
        ActiveJob(j.id, j.tenant, j.name, JobStatus(j.status), j.attempt,
                  j.submitted_at is not None, j.cancel_requested, j.spec, j.workers,
                  j.stop_action)
        for j in rows
    ]  # fmt: skip


def latest_checkpoint_at(run_dir: Path) -> datetime | None:
    """When the newest checkpoint of a Train run was written (Ray Train stores them as
    ``<run>/checkpoint_<time>/``), or None if it has none yet."""
    try:
        stamps = [p.stat().st_mtime for p in run_dir.glob("checkpoint_*") if p.is_dir()]
    except OSError:
        return None
    return datetime.fromtimestamp(max(stamps), UTC) if stamps else None


def guarded(session: Session, job: ActiveJob) -> JobRow | None:
    """The job's row, only if nothing changed it since the reconciler read it."""
    row = session.get(JobRow, job.id, with_for_update=True)
    if row is None or row.status != job.status.value or row.attempt != job.attempt:
        return None
    return row


def lineage_of(job: ActiveJob, outcome: dict[str, Any]) -> dict[str, Any]:
    """What produced a job's model: the job, and the config it trained with (a tune job:
    its best trial's)."""
    kind = job.spec.get("kind", "train")
    best = outcome.get("best_trial")
    if kind == "tune" and isinstance(best, dict):
        return {"job": job.id, "kind": kind, "trial": best.get("id"),
                "config": best.get("config"), "metrics": best.get("metrics")}  # fmt: skip
    return {"job": job.id, "kind": kind, "config": job.spec.get("config") or {}}


@dataclass(frozen=True)
class NewVersion:
    """How a finished job's model is registered."""

    name: str
    lineage: dict[str, Any]
    report: dict[str, Any] | None = None
    rejected_reason: str | None = None


def new_version(job: ActiveJob, outcome: dict[str, Any]) -> NewVersion:
    """A train or tune job's model is a version of the job's name; a compress job's is
    the next version of its parent's model, with the report and the gate's verdict."""
    if job.spec.get("kind") != "compress":
        return NewVersion(job.name, lineage_of(job, outcome))
    parent = str(job.spec["model"])
    report = outcome.get("report") if isinstance(outcome.get("report"), dict) else None
    rejected = None
    if report is None or not report.get("accepted"):
        rejected = str((report or {}).get("rejected_reason") or "the job reported no verdict")
    lineage = {"job": job.id, "kind": "compress", "parent": parent,
               "steps": job.spec.get("steps") or [], "gate": job.spec.get("gate")}  # fmt: skip
    return NewVersion(split_model_ref(parent)[0], lineage, report, rejected)


class JobOutcomes:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self.sessions = sessions

    def mark_submitted(self, job: ActiveJob) -> bool:
        with transaction(self.sessions) as session:
            row = guarded(session, job)
            if row is None:
                return False
            row.submitted_at = row.updated_at = utcnow()
            return True

    def apply(self, cluster: RayCluster, job: ActiveJob, state: RayJobState) -> None:
        if state.status == "RUNNING" and job.status is JobStatus.STARTING:
            with transaction(self.sessions) as session:
                row = guarded(session, job)
                if row is not None:
                    switch_job_status(session, row, JobStatus.RUNNING, reason="ray_running")
        elif state.status == "RUNNING":
            self.note_checkpoint(job)
            if job.spec.get("kind") == "tune":
                self.note_progress(job)
            else:
                self.note_run_events(job)
        elif state.status in ("SUCCEEDED", "FAILED"):
            if job.spec.get("kind") != "tune":
                self.note_run_events(job)
            self._save_logs(cluster, job)
            self.finish_from_result(job, ray_status=state.status, ray_message=state.message)
        elif state.status == "STOPPED":
            self._save_logs(cluster, job)
            if job.stop_action is not None and not job.cancel_requested:
                self.stopped(job)
                return
            message = None if job.cancel_requested else "stopped outside raydc"
            self.finish(job, JobStatus.CANCELLED, TerminationReason.CANCELLED_BY_USER, message)

    def note_checkpoint(self, job: ActiveJob) -> None:
        """Record when the run last checkpointed: preemption prefers the job that loses
        the least work. Reads the run's directory in the (shared) artifact store."""
        latest = latest_checkpoint_at(self.settings.runs_dir / job.id)
        if latest is None:
            return
        with transaction(self.sessions) as session:
            row = guarded(session, job)
            if row is not None and row.last_checkpoint_at != latest:
                row.last_checkpoint_at = latest

    def note_progress(self, job: ActiveJob) -> None:
        """Show a running tune job's trials as its result (the driver's progress file),
        and when any of them last checkpointed."""
        progress = read_progress_file(progress_path(self.settings, job.id))
        if progress is None:
            return
        result = {"trials": progress.trials or []}
        stamp = progress.checkpointed_at
        checkpointed = None
        if stamp is not None and 0 <= stamp < 2**33:  # a job's clock is not trusted either
            checkpointed = datetime.fromtimestamp(stamp, UTC)
        with transaction(self.sessions) as session:
            row = guarded(session, job)
            if row is None:
                return
            if row.result != result:
                row.result = result
            if checkpointed is not None and row.last_checkpoint_at != checkpointed:
                row.last_checkpoint_at = checkpointed

    def note_run_events(self, job: ActiveJob) -> None:
        """Copy what Ray Train did on its own (the driver's progress file) into the job's
        events, each once: a worker failed and the group restarted, the group resized."""
        progress = read_progress_file(progress_path(self.settings, job.id))
        if progress is None or not progress.events:
            return
        with transaction(self.sessions) as session:
            row = guarded(session, job)
            if row is None:
                return
            for event in progress.events[count_events(session, job.id, RUN_EVENT_REASONS) :]:
                record_run_event(session, row, reason=event.reason, message=event.message)

    def stopped(self, job: ActiveJob) -> None:
        """The scheduler's stop took effect: requeue a preempted job, restart a resized one.

        Either way the next attempt resumes from the run's latest checkpoint.
        """
        with transaction(self.sessions) as session:
            row = guarded(session, job)
            if row is None:
                return
            now = utcnow()
            if row.run_started_at is not None:
                gpus = float((row.spec.get("resources") or {}).get("gpus_per_worker", 0.0))
                ran = max(0.0, (now - row.run_started_at).total_seconds())
                row.attained_gpu_s += ran * gpus * (row.workers or 1)
            action, for_job, target = row.stop_action, row.stop_for, row.target_workers
            row.stop_action = row.stop_for = row.target_workers = None
            because = f" for job {for_job}" if for_job else ""
            if action == "resize" and target:
                switch_job_status(
                    session,
                    row,
                    JobStatus.PREEMPTED,
                    reason="resized",
                    message=f"stopped to resize to {target} workers{because}",
                )
                switch_job_status(session, row, JobStatus.PENDING, reason="requeued")
                switch_job_status(session, row, JobStatus.STARTING, reason="resized",
                                  message=f"{target} workers")  # fmt: skip
                if target < (row.workers or 0):
                    row.placement = None  # where the smaller group lands: Ray decides
                row.workers, row.run_started_at = target, now
                row.attempt += 1
                row.submitted_at = None
            else:
                row.preemptions += 1
                switch_job_status(session, row, JobStatus.PREEMPTED, reason="preempted",
                                  message=f"preempted{because}")  # fmt: skip
                switch_job_status(session, row, JobStatus.PENDING, reason="requeued")
                # Requeued, it keeps stop_for: it queues behind the job it made room for
                # until that one is admitted (services.scheduling._yielding).
                row.stop_for = for_job
                row.queued_at = now
                row.workers = row.placement = row.run_started_at = None
        log.info("job %s stopped by the scheduler (%s)", job.id, action)

    def finish_from_result(
        self, job: ActiveJob, ray_status: str | None = None, ray_message: str | None = None
    ) -> bool:
        """End the attempt as its result file says, else as Ray says it ended.

        Returns False only when neither knows (Ray lost the job before it wrote a result).
        """
        try:
            outcome = self._trusted_result(job)
        except UntrustedReport as error:
            log.warning("job %s: %s", job.id, error)
            self.finish(job, JobStatus.FAILED, TerminationReason.INVALID_RESULT, str(error))
            return True
        if outcome is not None and outcome.get("status") == "succeeded":
            self.finish(job, JobStatus.SUCCEEDED, TerminationReason.COMPLETED, None, outcome)
        elif outcome is not None:
            self.finish(job, JobStatus.FAILED, TerminationReason.USER_CODE_ERROR,
                        str(outcome.get("error") or "the job failed"))  # fmt: skip
        elif ray_status == "FAILED":
            # Ray failed the job before raydc's entrypoint ran (runtime env setup, ...).
            self.finish(job, JobStatus.FAILED, TerminationReason.SUBMISSION_FAILED,
                        ray_message or "Ray reports the job FAILED")  # fmt: skip
        elif ray_status == "SUCCEEDED":
            # The entrypoint exited cleanly but its result is not where the control plane
            # looks: the artifact dir is not shared with the node that ran it.
            log.warning("job %s succeeded without a result file in %s", job.id,
                        self.settings.jobs_dir)  # fmt: skip
            self.finish(job, JobStatus.SUCCEEDED, TerminationReason.COMPLETED,
                        "no result file: is RAYDC_ARTIFACT_DIR shared with every node?",
                        {"status": "succeeded"})  # fmt: skip
        else:
            return False
        return True

    def _trusted_result(self, job: ActiveJob) -> dict[str, Any] | None:
        """The attempt's result file, checked: its schema, its size, and a checkpoint
        that lies inside the job's own run directory (then given as its resolved path)."""
        result = read_result_file(result_path(self.settings, job.id, job.sid))
        if result is None:
            return None
        outcome = result.model_dump(exclude_none=True)
        outcome["metrics"] = finite_metrics(result.metrics)
        if result.status == "succeeded" and result.checkpoint_path:
            outcome["checkpoint_path"] = own_checkpoint(
                result.checkpoint_path, self.settings.runs_dir, job.id
            )
        return outcome

    def lost(self, job: ActiveJob) -> None:
        """Ray does not know the attempt: finish it from its result, or requeue it."""
        if self.finish_from_result(job):
            return
        with transaction(self.sessions) as session:
            row = guarded(session, job)
            if row is None:
                return
            if row.cancel_requested:
                switch_job_status(session, row, JobStatus.CANCELLED,
                                  reason=TerminationReason.CANCELLED_BY_USER)  # fmt: skip
                return
            switch_job_status(
                session, row, JobStatus.PREEMPTED, reason=TerminationReason.CLUSTER_LOST_JOB,
                message="Ray no longer knows this job (its cluster restarted)",
            )  # fmt: skip
            switch_job_status(session, row, JobStatus.PENDING, reason="requeued")
        log.warning("job %s was lost by the cluster; requeued", job.id)

    def finish(
        self,
        job: ActiveJob,
        target: JobStatus,
        reason: TerminationReason,
        message: str | None,
        outcome: dict[str, Any] | None = None,
    ) -> None:
        # What the run left behind counts against the tenant's storage quota (measured
        # before the transaction: a large run directory takes a while to walk).
        stored = (
            directory_size(self.settings.runs_dir / job.id).bytes if target.is_terminal else None
        )
        with transaction(self.sessions) as session:
            row = guarded(session, job)
            if row is None:
                return
            if outcome is not None:
                result = {k: v for k, v in outcome.items() if k != "status"}
                checkpoint = outcome.get("checkpoint_path")
                if checkpoint:
                    new = new_version(job, outcome)
                    version = register_version(
                        session, job.tenant, new.name, str(checkpoint),
                        dict(outcome.get("metrics") or {}), job.id, new.lineage, new.report,
                        new.rejected_reason,
                    )  # fmt: skip
                    result["model"] = f"{new.name}:{version.version}"
                    if new.report is not None:
                        result["accepted"] = new.rejected_reason is None
                row.result = result
            if stored is not None:
                row.artifact_bytes = stored
            switch_job_status(session, row, target, reason=reason, message=message)
        log.info("job %s %s", job.id, target.value)

    def _save_logs(self, cluster: RayCluster, job: ActiveJob) -> None:
        """Keep a finished attempt's logs: Ray forgets them when its cluster goes."""
        try:
            text = cluster.jobs.logs(job.sid)
            path = logs_path(self.settings, job.id, job.sid)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        except Exception as error:  # logs are a convenience; never block the outcome
            log.warning("could not keep the logs of %s: %s", job.sid, error)
