"""The job reconciler: the only writer of a job's status once it has been submitted.

Each pass: admit pending jobs (one DB transaction, no Ray calls), send admitted jobs to
Ray (Ray calls, no transaction open), then read Ray's view of every active job and apply
it in a guarded transaction that drops a result gone stale meanwhile. On start, the same
pass re-attaches to every non-terminal job, since it only ever reads state from the DB.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from raydc.cluster.jobs import RayJobNotFound, RayJobState, RaySubmissionRejected, submission_id
from raydc.scheduler.admission import AdmissionSnapshot, admit_pending_jobs
from raydc.server.cluster_link import ClusterLink
from raydc.server.services.job_status import switch_job_status
from raydc.server.services.launch import build_launch, logs_path, result_path
from raydc.server.services.models import register_version
from raydc.server.services.queue import pending_jobs, usage_by_tenant
from raydc.server.services.tenants import quota_of
from raydc.settings import Settings
from raydc.specs.demand import Demand
from raydc.specs.status import ACTIVE_STATUSES, JobStatus, TerminationReason
from raydc.store.db import transaction
from raydc.store.models import JobRow, TenantRow, utcnow
from raydc.workloads.protocol import read_result

log = logging.getLogger(__name__)
NODE_REFRESH_S = 5.0
MIN_PASS_GAP_S = 0.1
STARTING_POLL_S = 0.1


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

    @property
    def sid(self) -> str:
        return submission_id(self.id, self.attempt)


class JobReconciler:
    def __init__(
        self, settings: Settings, session_factory: sessionmaker[Session], link: ClusterLink
    ) -> None:
        self.settings = settings
        self.sessions = session_factory
        self.link = link
        self.admission_paused = settings.admission_paused
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_waiting: dict[str, str] = {}
        self._starting = False

    # -- loop -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="raydc-reconciler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def wake(self) -> None:
        """Run a pass now instead of at the next tick (after a submit or a cancel)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.run_once()
            except Exception:
                log.exception("reconcile pass failed")
            # A job between admission and RUNNING is what a user watches: look often.
            interval = STARTING_POLL_S if self._starting else self.settings.reconcile_interval_s
            self._wake.wait(max(0.0, interval - (time.monotonic() - started)))
            # Wakes that arrive together (a burst of submits) share one pass.
            self._stop.wait(max(0.0, MIN_PASS_GAP_S - (time.monotonic() - started)))
            self._wake.clear()

    def run_once(self) -> None:
        try:
            cluster_ready = self._ensure_cluster()
        except Exception as error:
            log.warning("cannot reach Ray: %s", error)
            self.link.disconnect(str(error))
            cluster_ready = False
        self.cancel_unsubmitted()
        if not cluster_ready:
            return
        if not self.admission_paused:
            self.admit()
        self.launch_admitted()
        self.sync_active()

    def _ensure_cluster(self) -> bool:
        if self.link.cluster is None:
            self.link.connect()
            self.link.refresh_nodes()
        elif (self.link.nodes_updated_at or 0) < time.time() - NODE_REFRESH_S:
            self.link.refresh_nodes()
        return True

    # -- admission --------------------------------------------------------------------
    def admit(self) -> list[str]:
        capacity = self.link.capacity
        with transaction(self.sessions) as session:
            pending = [queued.job for queued in pending_jobs(session)]
            if not pending:
                self.last_waiting = {}
                return []
            usage = usage_by_tenant(session)
            in_use = sum(usage.values(), Demand())
            quotas = {row.name: quota_of(row) for row in session.scalars(select(TenantRow))}
            decision = admit_pending_jobs(
                AdmissionSnapshot(
                    pending=pending,
                    tenant_usage=usage,
                    tenant_quota=quotas,
                    free_capacity=capacity.total - in_use if capacity is not None else None,
                )
            )
            admitted = session.scalars(
                select(JobRow)
                .where(JobRow.id.in_(decision.admitted), JobRow.status == JobStatus.PENDING.value)
                .with_for_update()
            )
            for job in admitted:
                switch_job_status(session, job, JobStatus.STARTING, reason="admitted")
                job.attempt += 1
                job.submitted_at = None
            self.last_waiting = decision.waiting
            return decision.admitted

    # -- launching --------------------------------------------------------------------
    def _read_active(self, session: Session) -> list[ActiveJob]:
        rows = session.scalars(
            select(JobRow).where(JobRow.status.in_([s.value for s in ACTIVE_STATUSES]))
        )
        return [
            ActiveJob(j.id, j.tenant, j.name, JobStatus(j.status), j.attempt,
                      j.submitted_at is not None, j.cancel_requested, j.spec)
            for j in rows
        ]  # fmt: skip

    def cancel_unsubmitted(self) -> None:
        """A cancelled job that never reached Ray needs no Ray call: end it now."""
        with transaction(self.sessions) as session:
            rows = session.scalars(
                select(JobRow).where(
                    JobRow.status == JobStatus.STARTING.value,
                    JobRow.submitted_at.is_(None),
                    JobRow.cancel_requested.is_(True),
                )
            )
            for job in rows:
                switch_job_status(
                    session, job, JobStatus.CANCELLED, reason=TerminationReason.CANCELLED_BY_USER
                )

    def launch_admitted(self) -> None:
        cluster = self.link.cluster
        if cluster is None:
            return
        with self.sessions() as session:
            todo = [j for j in self._read_active(session) if not j.submitted]
        for job in todo:
            if job.cancel_requested:
                continue
            request = build_launch(self.settings, job.id, job.tenant, job.attempt, job.spec)
            request.result_path.unlink(missing_ok=True)
            try:
                cluster.jobs.submit(
                    request.submission_id, request.entrypoint, request.runtime_env,
                    request.metadata,
                )  # fmt: skip
            except RaySubmissionRejected as error:
                self._finish(
                    job, JobStatus.FAILED, TerminationReason.SUBMISSION_FAILED, str(error), None
                )
                continue
            with transaction(self.sessions) as session:
                row = self._guarded(session, job)
                if row is not None:
                    row.submitted_at = row.updated_at = utcnow()
            log.info("job %s submitted to Ray as %s", job.id, request.submission_id)

    # -- syncing ----------------------------------------------------------------------
    def sync_active(self) -> None:
        cluster = self.link.cluster
        if cluster is None:
            return
        with self.sessions() as session:
            active = [j for j in self._read_active(session) if j.submitted]
        self._starting = any(job.status is JobStatus.STARTING for job in active)
        for job in active:
            try:
                state = cluster.jobs.state(job.sid)
            except RayJobNotFound:
                self._requeue_lost(job)
                continue
            if job.cancel_requested and state.status in ("PENDING", "RUNNING"):
                cluster.jobs.stop(job.sid)
                continue
            self._apply(job, state)

    def _apply(self, job: ActiveJob, state: RayJobState) -> None:
        if state.status == "RUNNING" and job.status is JobStatus.STARTING:
            with transaction(self.sessions) as session:
                row = self._guarded(session, job)
                if row is not None:
                    switch_job_status(session, row, JobStatus.RUNNING, reason="ray_running")
        elif state.status == "SUCCEEDED":
            self._finish(
                job,
                JobStatus.SUCCEEDED,
                TerminationReason.COMPLETED,
                None,
                read_result(result_path(self.settings, job.id, job.sid)),
            )
        elif state.status == "FAILED":
            outcome = read_result(result_path(self.settings, job.id, job.sid)) or {}
            reason = (
                TerminationReason.USER_CODE_ERROR
                if outcome
                else TerminationReason.SUBMISSION_FAILED
            )
            error = outcome.get("error") or state.message or "the Ray job failed"
            self._finish(job, JobStatus.FAILED, reason, error, None)
        elif state.status == "STOPPED":
            message = None if job.cancel_requested else "stopped outside raydc"
            self._finish(
                job, JobStatus.CANCELLED, TerminationReason.CANCELLED_BY_USER, message, None
            )

    def _requeue_lost(self, job: ActiveJob) -> None:
        with transaction(self.sessions) as session:
            row = self._guarded(session, job)
            if row is None:
                return
            if job.cancel_requested:
                switch_job_status(
                    session, row, JobStatus.CANCELLED, reason=TerminationReason.CANCELLED_BY_USER
                )
                return
            switch_job_status(
                session,
                row,
                JobStatus.PREEMPTED,
                reason=TerminationReason.CLUSTER_LOST_JOB,
                message="Ray no longer knows this job (cluster restarted)",
            )
            switch_job_status(session, row, JobStatus.PENDING, reason="requeued")
        log.warning("job %s was lost by the cluster; requeued", job.id)

    def _finish(
        self,
        job: ActiveJob,
        target: JobStatus,
        reason: TerminationReason,
        message: str | None,
        outcome: dict[str, Any] | None,
    ) -> None:
        self._save_logs(job)
        with transaction(self.sessions) as session:
            row = self._guarded(session, job)
            if row is None:
                return
            if outcome is not None:
                result = {k: v for k, v in outcome.items() if k != "status"}
                checkpoint = outcome.get("checkpoint_path")
                if checkpoint:
                    version = register_version(
                        session, job.tenant, job.name, str(checkpoint),
                        dict(outcome.get("metrics") or {}), job.id,
                    )  # fmt: skip
                    result["model"] = f"{job.name}:{version.version}"
                row.result = result
            switch_job_status(session, row, target, reason=reason, message=message)
        log.info("job %s %s", job.id, target.value)

    def _save_logs(self, job: ActiveJob) -> None:
        """Keep a finished attempt's logs: Ray forgets them when its cluster goes."""
        cluster = self.link.cluster
        if cluster is None or not job.submitted:
            return
        try:
            text = cluster.jobs.logs(job.sid)
        except Exception as error:
            log.warning("could not fetch logs of %s: %s", job.sid, error)
            return
        path = logs_path(self.settings, job.id, job.sid)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    @staticmethod
    def _guarded(session: Session, job: ActiveJob) -> JobRow | None:
        """The job's row, only if nothing changed it since the reconciler read it."""
        row = session.get(JobRow, job.id, with_for_update=True)
        if row is None or row.status != job.status.value or row.attempt != job.attempt:
            return None
        return row
