"""The job reconciler: the only writer of a job's status once it has been submitted.

Each pass: schedule (one DB transaction, no Ray calls: admit, and mark jobs to preempt
or resize), send admitted jobs to Ray (Ray calls, no transaction open), then read Ray's
view of every active job — stopping those marked — and apply it in a guarded
transaction that drops a result gone stale meanwhile. On start, the same
pass re-attaches to every non-terminal job, since it only ever reads state from the DB.
"""

from __future__ import annotations

import logging
from collections import Counter

import requests
from sqlalchemy.orm import Session, sessionmaker

from raydc.cluster.autoscaler import ResourceRequests, node_types_from_cluster_config
from raydc.cluster.client import RayCluster
from raydc.cluster.jobs import RayJobNotFound, RaySubmissionRejected
from raydc.server.cluster_link import ClusterLink
from raydc.server.job_outcomes import ActiveJob, JobOutcomes, read_active
from raydc.server.loop import ReconcileLoop
from raydc.server.services.launch import RAYDC_PACKAGE_DIR, build_launch
from raydc.server.services.models import version_uri
from raydc.server.services.scheduling import QueueView, SchedulingObserver, schedule
from raydc.settings import Settings
from raydc.specs.status import JobStatus, TerminationReason
from raydc.store.db import transaction
from raydc.store.models import utcnow

log = logging.getLogger(__name__)
NODE_REFRESH_S = 5.0
MIN_PASS_GAP_S = 0.1
STARTING_POLL_S = 0.1
# Launch errors that are not the cluster being unreachable; then the job is FAILED.
MAX_LAUNCH_ERRORS = 5
_UNREACHABLE = (requests.ConnectionError, requests.Timeout)


class JobReconciler(ReconcileLoop):
    thread_name = "raydc-reconciler"
    min_gap_s = MIN_PASS_GAP_S

    def __init__(
        self, settings: Settings, session_factory: sessionmaker[Session], link: ClusterLink
    ) -> None:
        super().__init__()
        self.settings = settings
        self.sessions = session_factory
        self.link = link
        self.admission_paused = settings.admission_paused
        self.outcomes = JobOutcomes(settings, session_factory)
        self.last_queue = QueueView()
        self._starting = False
        self._launch_errors: Counter[str] = Counter()
        # Node types the cluster may grow to (its `ray up` config); none = fixed size.
        self.node_types = (
            node_types_from_cluster_config(settings.cluster_config)
            if settings.cluster_config is not None
            else []
        )
        self.requests: ResourceRequests | None = None
        self.observer: SchedulingObserver | None = None

    def interval_s(self) -> float:
        # A job between admission and RUNNING is what a user watches: look often.
        return STARTING_POLL_S if self._starting else self.settings.reconcile_interval_s

    def run_once(self) -> None:
        cluster = self._ensure_cluster()
        if cluster is None:
            return
        if not self.admission_paused:
            self.schedule()
            self.request_resources(cluster)
        self.launch_admitted(cluster)
        self.sync_active(cluster)

    def _ensure_cluster(self) -> RayCluster | None:
        if self.link.cluster is None:
            try:
                self.link.connect()
            except Exception as error:
                log.warning("cannot reach Ray: %s", error)
                self.link.disconnect(str(error))
                return None
        self.link.refresh_nodes_if_due(NODE_REFRESH_S)
        return self.link.cluster

    # -- scheduling -------------------------------------------------------------------
    def schedule(self) -> list[str]:
        """One scheduling pass in one transaction; returns the jobs it admitted."""
        with transaction(self.sessions) as session:
            # First statement: locks the lease row until commit (see server/lease.py).
            if self.lease is not None and not self.lease.hold(session):
                return []
            view, admitted = schedule(
                session, self.settings, self.link.capacity, utcnow(), self.node_types,
                self.observer,
            )  # fmt: skip
        self.last_queue = view
        return admitted

    def request_resources(self, cluster: RayCluster) -> None:
        """Pass the pass's autoscaler request on to Ray (only when it changed)."""
        bundles = self.last_queue.decisions.scale_request
        if bundles is None:
            return
        if self.requests is None or self.requests.jobs is not cluster.jobs:
            self.requests = ResourceRequests(cluster.jobs, {"py_modules": [str(RAYDC_PACKAGE_DIR)]})
        try:
            self.requests.send(bundles)
        except Exception as error:  # the queue still works without autoscaling
            log.warning("could not send the autoscaler request: %s", error)

    # -- launching --------------------------------------------------------------------
    def launch_admitted(self, cluster: RayCluster) -> None:
        with self.sessions() as session:
            todo = [j for j in read_active(session) if not j.submitted]
        for job in todo:
            try:
                self._launch(cluster, job)
            except _UNREACHABLE as error:
                log.warning("Ray unreachable while launching %s: %s", job.id, error)
                return
            except Exception as error:
                self._launch_failed(job, error)
            else:
                self._launch_errors.pop(job.sid, None)

    def _launch(self, cluster: RayCluster, job: ActiveJob) -> None:
        if job.cancel_requested:
            # It may have reached Ray before a crash: stop it there if so.
            try:
                cluster.jobs.stop(job.sid)
            except RayJobNotFound:
                self.outcomes.finish(
                    job, JobStatus.CANCELLED, TerminationReason.CANCELLED_BY_USER, None
                )
                return
            self.outcomes.mark_submitted(job)  # the sync pass sees it STOPPED
            return
        if job.stop_action is not None:
            # Preempted or resized before it was recorded as sent: stop it if it got there.
            try:
                cluster.jobs.stop(job.sid)
            except RayJobNotFound:
                self.outcomes.stopped(job)
                return
            self.outcomes.mark_submitted(job)
            return
        parent_dir = None
        if job.spec.get("kind") == "compress":
            with self.sessions() as session:
                parent_dir = version_uri(session, job.tenant, job.spec["model"])
            if parent_dir is None:
                gone = f"model version {job.spec['model']} no longer exists"
                failed = TerminationReason.SUBMISSION_FAILED
                self.outcomes.finish(job, JobStatus.FAILED, failed, gone)
                return
        request = build_launch(
            self.settings, job.id, job.tenant, job.attempt, job.spec, job.workers, parent_dir
        )
        try:
            cluster.jobs.submit(
                request.submission_id, request.entrypoint, request.runtime_env, request.metadata
            )
        except RaySubmissionRejected as error:
            self.outcomes.finish(
                job, JobStatus.FAILED, TerminationReason.SUBMISSION_FAILED, str(error)
            )
            return
        if not self.outcomes.mark_submitted(job):
            cluster.jobs.stop(request.submission_id)  # the job moved on meanwhile
            return
        log.info("job %s submitted to Ray as %s", job.id, request.submission_id)

    def _launch_failed(self, job: ActiveJob, error: Exception) -> None:
        self._launch_errors[job.sid] += 1
        count = self._launch_errors[job.sid]
        log.warning("launching %s failed (%d/%d): %s", job.id, count, MAX_LAUNCH_ERRORS, error)
        if count >= MAX_LAUNCH_ERRORS:
            self._launch_errors.pop(job.sid, None)
            self.outcomes.finish(
                job, JobStatus.FAILED, TerminationReason.SUBMISSION_FAILED,
                f"could not submit to Ray: {type(error).__name__}: {error}",
            )  # fmt: skip

    # -- syncing ----------------------------------------------------------------------
    def sync_active(self, cluster: RayCluster) -> None:
        with self.sessions() as session:
            active = [j for j in read_active(session) if j.submitted]
        self._starting = any(job.status is JobStatus.STARTING for job in active)
        for job in active:
            try:
                self._sync(cluster, job)
            except _UNREACHABLE as error:
                log.warning("Ray unreachable while syncing: %s", error)
                return
            except Exception:
                log.exception("syncing job %s failed; retrying next pass", job.id)

    def _sync(self, cluster: RayCluster, job: ActiveJob) -> None:
        try:
            state = cluster.jobs.state(job.sid)
        except RayJobNotFound:
            self.outcomes.lost(job)
            return
        wants_stop = job.cancel_requested or job.stop_action is not None
        if wants_stop and state.status in ("PENDING", "RUNNING"):
            cluster.jobs.stop(job.sid)
            return
        self.outcomes.apply(cluster, job, state)
