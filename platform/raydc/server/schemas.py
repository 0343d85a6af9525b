"""Wire schemas: what the API returns. None of them carries a secret or a hash."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from raydc.security.rbac import Action, Principal
from raydc.specs.tenants import Quota
from raydc.store.models import JobEventRow, JobRow, ModelRow, ModelVersionRow, TenantRow


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class TenantOut(Out):
    name: str
    quota: Quota
    weight: float
    borrowing_limit: Quota
    created_at: datetime

    @classmethod
    def of(cls, row: TenantRow) -> TenantOut:
        # Not revalidated: a row from before quotas were strict may hold Infinity, which
        # JSON shows as null (= unlimited, what it meant). storage_gb shows once set.
        quota = Quota.model_construct(
            cpu=row.quota_cpu, gpu=row.quota_gpu, memory_gb=row.quota_memory_gb,
            storage_gb=row.quota_storage_gb,
        )  # fmt: skip
        limit = Quota.model_construct(
            cpu=row.borrow_cpu, gpu=row.borrow_gpu, memory_gb=row.borrow_memory_gb
        )
        return cls(
            name=row.name,
            quota=quota,
            weight=row.weight,
            borrowing_limit=limit,
            created_at=row.created_at,
        )


class TokenCreated(Out):
    id: str
    tenant: str
    role: str
    name: str
    expires_at: datetime | None
    token: str  # shown once; only its hash is stored


class TokenOut(Out):
    """A token as GET /v1/tokens lists it: never the token or its hash."""

    id: str
    tenant: str
    role: str
    name: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    job_id: str | None  # set for a job's own token


class WhoAmI(Out):
    tenant: str
    role: str
    name: str


class CodeRef(Out):
    ref: str


class JobOut(Out):
    id: str
    name: str
    kind: str
    tenant: str
    status: str
    priority: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any] | None
    error: str | None
    attempt: int
    cancel_requested: bool
    termination_reason: str | None
    spec: dict[str, Any]

    @classmethod
    def of(cls, row: JobRow) -> JobOut:
        """The job in full: for code that acts for a member or an admin (see for_principal)."""
        return cls.model_validate(row)

    @classmethod
    def for_principal(cls, row: JobRow, principal: Principal) -> JobOut:
        """The job as ``principal`` may see it: ``spec.env`` values only for whoever may
        submit in the tenant (members, admins). They could run a job that prints its
        environment anyway; a viewer (a read-only token, a job's own token) could not, so
        a viewer sees the keys with each value replaced by ``HIDDEN``."""
        out = cls.of(row)
        if principal.may(Action.SUBMIT):
            return out
        return out.model_copy(update={"spec": without_env_values(out.spec)})


HIDDEN = "<hidden>"


def without_env_values(spec: dict[str, Any]) -> dict[str, Any]:
    """A copy of a job spec with each ``env`` value replaced by ``HIDDEN`` (the row's own
    dict is never changed: it belongs to the session)."""
    env = spec.get("env")
    if not isinstance(env, dict) or not env:
        return spec
    return {**spec, "env": dict.fromkeys(env, HIDDEN)}


class JobPage(Out):
    items: list[JobOut]
    total: int
    limit: int
    offset: int


class JobEventOut(Out):
    created_at: datetime
    from_status: str | None
    to_status: str
    reason: str | None
    message: str | None

    @classmethod
    def of(cls, row: JobEventRow) -> JobEventOut:
        return cls.model_validate(row)


class ModelOut(Out):
    name: str
    tenant: str
    versions: int
    latest_version: int
    created_at: datetime


class ModelVersionOut(Out):
    tenant: str
    model: str  # the model's name
    version: int
    uri: str
    metrics: dict[str, Any]
    job_id: str
    lineage: dict[str, Any] | None = None
    status: str = "ready"  # or "rejected": a compression gate refused it
    status_reason: str | None = None
    report: dict[str, Any] | None = None  # a compress job's measurements
    created_at: datetime

    @classmethod
    def of(cls, model: ModelRow, row: ModelVersionRow) -> ModelVersionOut:
        return cls.model_validate(
            {**{f: getattr(row, f) for f in cls.model_fields if hasattr(row, f)},
             "tenant": model.tenant, "model": model.name}
        )  # fmt: skip


class QueueEntry(Out):
    id: str
    name: str
    tenant: str
    priority: str
    created_at: datetime
    reason: str | None
    # quota_exhausted, behind_higher_priority, reserved_for_job, no_node_fits,
    # waiting_for_scale_up, waiting_for_preemption, cluster_full, cluster_unknown
    reason_code: str | None = None


class NodeOut(Out):
    node_id: str
    ip: str
    is_head: bool
    alive: bool
    cpu: float
    gpu: float
    memory_gb: float
    custom: dict[str, float]


class ClusterOut(Out):
    connected: bool
    dashboard_url: str | None
    nodes: list[NodeOut]
    capacity: dict[str, float]
    in_use: dict[str, float]
    pending_demand: dict[str, float]
    last_error: str | None


class DeploymentOut(Out):
    name: str
    tenant: str
    status: str
    message: str | None
    model: str
    canary: dict[str, Any] | None
    replicas: int
    canary_replicas: int
    target_replicas: int | None
    url: str
    spec: dict[str, Any]
    generation: int
    applied_generation: int
    created_at: datetime
    updated_at: datetime
