"""ORM rows. Wire schemas live in server/schemas.py, domain specs in specs/."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

VERSION_READY = "ready"
VERSION_REJECTED = "rejected"


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


class TenantRow(Base):
    __tablename__ = "tenants"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    # Quota limits on admitted work; NULL = unlimited.
    quota_cpu: Mapped[float | None] = mapped_column(Float)
    quota_gpu: Mapped[float | None] = mapped_column(Float)
    quota_memory_gb: Mapped[float | None] = mapped_column(Float)
    # What the tenant may keep stored: code bundles (unpacked) and its jobs' artifacts.
    quota_storage_gb: Mapped[float | None] = mapped_column(Float)
    # Fair-share weight among tenants at the same priority: a weight-2 tenant's fair share
    # is twice a weight-1 tenant's.
    weight: Mapped[float] = mapped_column(Float, default=1.0, server_default="1.0")
    # Borrowing limits: how much a tenant may use BEYOND its quota out of other tenants'
    # idle quota (reclaimed by preemption when they need it). NULL = no limit, 0 = none.
    borrow_cpu: Mapped[float | None] = mapped_column(Float)
    borrow_gpu: Mapped[float | None] = mapped_column(Float)
    borrow_memory_gb: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiTokenRow(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.name"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(100))
    # sha256 of the token; the token itself is shown once and never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # NULL = never expires. A job's token expires with the job, and is revoked when it ends.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Written at most once per authentication-cache lifetime, not on every request.
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set for the token a job runs with: it is scoped to that job's tenant and job.
    job_id: Mapped[str | None] = mapped_column(String(64), index=True)


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_queue", "status", "priority_rank", "created_at"),
        Index("ix_jobs_tenant_created", "tenant", "created_at"),
    )

    # Also the Ray job's submission id, so resubmitting after a crash is idempotent.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.name"))
    name: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(16))
    priority_rank: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Demand of the job at its minimum size: what admission and quotas count.
    demand_cpu: Mapped[float] = mapped_column(Float)
    demand_gpu: Mapped[float] = mapped_column(Float)
    demand_memory_gb: Mapped[float] = mapped_column(Float)
    # Submissions to Ray so far; each one is a new Ray submission id (<id>-<attempt>).
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    # Set once Ray has accepted the current attempt; NULL while STARTING = not yet sent.
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    termination_reason: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # -- scheduling state of the current (or last admitted) run --------------------
    workers: Mapped[int | None] = mapped_column(Integer)
    # {node_id: worker count} the scheduler placed the current run on.
    placement: Mapped[dict[str, int] | None] = mapped_column(JSON)
    preemptions: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # When the current run was admitted; with `workers`, what its attained service grows by.
    run_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # GPU-seconds received by finished runs only (the current run is added on the fly).
    attained_gpu_s: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    # When the job last became PENDING (submit or requeue): its place in the queue.
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_checkpoint_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A stop the scheduler asked for: "preempt" or "resize"; stop_for is the job id the
    # stop makes room for (kept on the requeued PENDING victim until that job is admitted:
    # the policy's Job.yields_to), target_workers the size of the run after a resize.
    stop_action: Mapped[str | None] = mapped_column(String(16))
    stop_for: Mapped[str | None] = mapped_column(String(64))
    target_workers: Mapped[int | None] = mapped_column(Integer)
    # Bytes the job's run directory held when it ended: counted against storage quota.
    artifact_bytes: Mapped[int | None] = mapped_column(BigInteger)


class JobEventRow(Base):
    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    message: Mapped[str | None] = mapped_column(Text)


class CodeBundleRow(Base):
    __tablename__ = "code_bundles"

    # Content address of the zip; a tenant may only run bundles it uploaded itself.
    ref: Mapped[str] = mapped_column(String(71), primary_key=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.name"), primary_key=True)
    size_bytes: Mapped[int] = mapped_column(Integer)
    # What the bundle unpacks to: what it counts against the tenant's storage quota.
    unpacked_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ModelRow(Base):
    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("tenant", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.name"))
    name: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ModelVersionRow(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    uri: Mapped[str] = mapped_column(Text)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Lineage: the job that produced it; unique so a replayed completion registers once.
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), unique=True)
    # What produced it: {"job", "kind", "config"} for a train job; a tune job adds the
    # best "trial" id and its "metrics". NULL for versions from before lineage was kept.
    lineage: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # "ready", or "rejected": a compress job's gate refused it (kept, never deployed).
    status: Mapped[str] = mapped_column(String(16), default=VERSION_READY, server_default="ready")
    status_reason: Mapped[str | None] = mapped_column(Text)
    # A compress job's report: parent and child measured, ratios, the gate's verdict.
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DeploymentRow(Base):
    """A model deployment: what the user asked for (spec, resolved versions) and what the
    deployment reconciler last saw of it on Ray Serve (status, replicas)."""

    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("tenant", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.name"))
    name: Mapped[str] = mapped_column(String(63))
    # The DeploymentSpec as given, its `model` and `canary.model` resolved to name:version.
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    canary_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    # DEPLOYING | HEALTHY | UNHEALTHY | DELETING (then the row goes once Serve drops it).
    status: Mapped[str] = mapped_column(String(16))
    message: Mapped[str | None] = mapped_column(Text)
    replicas: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    canary_replicas: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    target_replicas: Mapped[int | None] = mapped_column(Integer)
    # Bumped on every change the user makes; the reconciler records the generation it
    # last applied to Serve, so "applied and healthy" is never read from an older config.
    generation: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    applied_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LeaseRow(Base):
    """Which control plane runs a reconciler: a lease its holder renews every pass and
    another replica may take once it has expired (see server/lease.py)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(255))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
