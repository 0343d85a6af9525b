"""Submitting, reading and cancelling jobs. The reconciler, not this module, runs them."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from raydc.security.rbac import Principal
from raydc.server.errors import Conflict, DomainError, InvalidInput, NotFound
from raydc.server.services.code import tenant_has_bundle
from raydc.server.services.job_status import record_submitted, switch_job_status
from raydc.server.services.models import resolve_version
from raydc.server.services.tenants import (
    borrowable,
    check_storage,
    get_tenant,
    list_tenants,
    quota_of,
)
from raydc.server.validation import invalid_input
from raydc.specs.capacity import ClusterCapacity
from raydc.specs.demand import Demand, job_demand, worker_demand, worker_range
from raydc.specs.jobs import AnyJobSpec, CompressSpec, parse_job_spec
from raydc.specs.status import JobStatus, TerminationReason
from raydc.specs.tenants import Quota
from raydc.store.models import JobEventRow, JobRow, TenantRow, utcnow

MAX_PAGE = 500


@dataclass(frozen=True)
class SubmitContext:
    apps_dir: Path
    capacity: ClusterCapacity | None  # None while the cluster's size is unknown


def new_job_id(name: str) -> str:
    return f"{name[:40].rstrip('-')}-{secrets.token_hex(6)}"


def _check_code(session: Session, tenant: str, spec: AnyJobSpec, apps_dir: Path) -> None:
    if spec.code.app is not None:
        if not (apps_dir / spec.code.app / "__init__.py").is_file():
            raise InvalidInput.field(("code", "app"), f"unknown app '{spec.code.app}'")
    elif spec.code.ref is not None and not tenant_has_bundle(session, tenant, spec.code.ref):
        raise InvalidInput.field(("code", "ref"), f"no uploaded code '{spec.code.ref}'")


def _resolve_parent(session: Session, tenant: str, spec: CompressSpec) -> str:
    """The parent version a compress job names, as ``name:version`` (resolved once, at
    submit, so a retry compresses the same one); its app must be the job's."""
    parent = resolve_version(session, tenant, spec.model, ("model",))
    made_by = [step.get("type") for step in (parent.row.lineage or {}).get("steps") or []]
    if made_by and made_by[-1] == "quantize":
        raise InvalidInput.field(
            ("model",), f"'{parent.ref}' is int8 (its last step was quantize): torch cannot "
            "prune, distill or quantize it again; compress its float parent instead",
        )  # fmt: skip
    # The code that trained the parent knows how to load, evaluate and shrink it.
    if parent.app is not None and spec.code.app != parent.app:
        raise InvalidInput.field(
            ("code", "app"),
            f"'{parent.ref}' was trained by app '{parent.app}'; compress it with that app's "
            f"code (code: {{app: {parent.app}}})",
        )
    if parent.app is None and spec.code.ref != parent.code.get("ref"):
        raise InvalidInput.field(
            ("code", "ref"),
            f"'{parent.ref}' was trained from uploaded code '{parent.code.get('ref')}'; "
            "compress it with that same code (code: {ref: ...})",
        )
    return parent.ref


def _over_quota(quota: Quota, borrowable: Quota, demand: Demand) -> str | None:
    for dimension, limit, extra, need in (
        ("cpu", quota.cpu, borrowable.cpu, demand.cpu),
        ("gpu", quota.gpu, borrowable.gpu, demand.gpu),
        ("memory_gb", quota.memory_gb, borrowable.memory_gb, demand.memory_gb),
    ):
        if limit is not None and need > limit + (extra or 0.0) + 1e-9:
            more = f" plus {extra:g} it may borrow" if extra else ""
            return (
                f"{dimension}={need:g} at its minimum size, over the quota limit of {limit:g}{more}"
            )
    return None


def _check_can_ever_run(
    tenant: str, quota: Quota, borrowable: Quota, spec: AnyJobSpec, min_workers: int,
    capacity: ClusterCapacity | None,
) -> None:  # fmt: skip
    """Refuse at submit a job that could never be admitted, saying which limit."""
    minimum = job_demand(spec.resources, min_workers)
    over = _over_quota(quota, borrowable, minimum)
    if over is not None:
        raise InvalidInput.field(
            ("resources",), f"the job can never run in tenant '{tenant}': it needs {over}"
        )
    if capacity is None:
        return
    worker = worker_demand(spec.resources)
    if not capacity.worker_fits_a_node(worker, spec.resources.custom):
        custom = "".join(f", {name}={amount:g}" for name, amount in spec.resources.custom.items())
        raise InvalidInput.field(
            ("resources",),
            f"no node of the cluster can hold one worker (cpu={worker.cpu:g}, "
            f"gpu={worker.gpu:g}, memory_gb={worker.memory_gb:g}{custom})",
        )
    if not minimum.fits_in(capacity.total):
        total = capacity.total
        raise InvalidInput.field(
            ("resources",),
            f"the job needs cpu={minimum.cpu:g} gpu={minimum.gpu:g} "
            f"memory_gb={minimum.memory_gb:g} at its minimum size; the whole cluster has "
            f"cpu={total.cpu:g} gpu={total.gpu:g} memory_gb={total.memory_gb:g}",
        )


@dataclass(frozen=True)
class Submission:
    """A validated spec on its way into the queue."""

    principal: Principal
    spec: AnyJobSpec


def parse_submission(principal: Principal, data: Any) -> Submission:
    """Validate a decoded spec; needs no database, so it runs before the write is queued."""
    try:
        return Submission(principal, parse_job_spec(data))
    except ValidationError as error:
        raise invalid_input(error) from error


def insert_submissions(
    session: Session, submissions: list[Submission], context: SubmitContext
) -> list[JobRow | DomainError]:
    """Queue a batch of jobs in one transaction; each refused one gets its own error.

    Batching is what lets SQLite take hundreds of submissions a second: one commit and
    one multi-row insert per batch instead of per job.
    """
    outcomes: list[JobRow | DomainError] = []
    tenants: dict[str, TenantRow] = {}
    everyone: list[TenantRow] | None = None  # read once per batch, for what may be lent
    now = utcnow()
    for submission in submissions:
        spec = submission.spec
        stored = spec.model_dump(mode="json")
        min_workers, _ = worker_range(stored)  # a tune job: all its concurrent trials
        try:
            name = submission.principal.tenant
            if name not in tenants:
                tenant = get_tenant(session, name)
                # A tenant with no storage room left runs nothing that would store more
                # (its artifacts are only known when a job ends); once per batch.
                check_storage(session, tenant)
                tenants[name] = tenant
            tenant = tenants[name]
            _check_code(session, tenant.name, spec, context.apps_dir)
            if isinstance(spec, CompressSpec):
                stored["model"] = _resolve_parent(session, tenant.name, spec)
            everyone = list_tenants(session) if everyone is None else everyone
            _check_can_ever_run(tenant.name, quota_of(tenant), borrowable(tenant, everyone),
                                spec, min_workers, context.capacity)  # fmt: skip
        except DomainError as error:
            outcomes.append(error)
            continue
        demand = job_demand(spec.resources, min_workers)
        outcomes.append(
            JobRow(
                id=new_job_id(spec.name), tenant=tenant.name, name=spec.name, kind=spec.kind,
                status=JobStatus.PENDING.value, priority=spec.priority.value,
                priority_rank=spec.priority.rank, spec=stored,
                demand_cpu=demand.cpu, demand_gpu=demand.gpu, demand_memory_gb=demand.memory_gb,
                attempt=0, cancel_requested=False, created_at=now, updated_at=now,
            )
        )  # fmt: skip
    jobs = [outcome for outcome in outcomes if isinstance(outcome, JobRow)]
    session.add_all(jobs)
    session.flush()  # event rows reference the job rows
    for job in jobs:
        record_submitted(session, job)
    return outcomes


def get_job(
    session: Session, principal: Principal, job_id: str, *, for_update: bool = False
) -> JobRow:
    job = session.get(JobRow, job_id, with_for_update=for_update)
    # Another tenant's job is indistinguishable from a missing one.
    if job is None or not principal.sees_tenant(job.tenant):
        raise NotFound(f"job '{job_id}' not found")
    return job


def list_jobs(
    session: Session,
    principal: Principal,
    *,
    status: JobStatus | None = None,
    kind: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[JobRow], int]:
    query = select(JobRow)
    if not principal.is_admin:
        query = query.where(JobRow.tenant == principal.tenant)
    if status is not None:
        query = query.where(JobRow.status == status.value)
    if kind is not None:
        query = query.where(JobRow.kind == kind)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(JobRow.created_at.desc(), JobRow.id.desc())
        .limit(min(limit, MAX_PAGE))
        .offset(offset)
    )
    return list(rows), total


def cancel_job(session: Session, principal: Principal, job_id: str) -> JobRow:
    # Locked, so admission cannot move the job between this read and the write below.
    job = get_job(session, principal, job_id, for_update=True)
    status = JobStatus(job.status)
    if status.is_terminal:
        raise Conflict(f"job '{job_id}' already finished: {status.value}")
    if status in (JobStatus.PENDING, JobStatus.PREEMPTED):
        # Nothing runs on the cluster: cancel at once.
        switch_job_status(
            session, job, JobStatus.CANCELLED, reason=TerminationReason.CANCELLED_BY_USER
        )
    else:
        # The reconciler stops the Ray job and records CANCELLED when Ray confirms.
        job.cancel_requested = True
    return job


def job_events(session: Session, principal: Principal, job_id: str) -> list[JobEventRow]:
    get_job(session, principal, job_id)
    return list(
        session.scalars(
            select(JobEventRow).where(JobEventRow.job_id == job_id).order_by(JobEventRow.id)
        )
    )
