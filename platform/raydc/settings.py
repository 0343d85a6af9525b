"""All of raydc's settings, read from ``RAYDC_*`` environment variables."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# apps/ next to platform/ in a source checkout; overridable for installed wheels.
_SOURCE_APPS_DIR = Path(__file__).resolve().parents[2] / "apps"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAYDC_", extra="ignore")

    home: Path = Field(default=Path("~/.raydc"), description="state directory")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite file under home"
    )
    artifact_dir: Path | None = Field(
        default=None,
        description="checkpoints, code bundles, job results; must be shared storage "
        "visible to every Ray node on a multi-node cluster",
    )
    apps_dir: Path = _SOURCE_APPS_DIR
    ray_address: str | None = Field(
        default=None,
        description="Ray dashboard address (http://host:8265); unset = start a local head",
    )
    ray_auth_token: str | None = Field(
        default=None, description="Ray's own token for an external cluster with token auth"
    )
    local_ray_num_cpus: int | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    admin_token: str | None = Field(
        default=None, description="unset = generate one on first start into home/admin_token"
    )
    reconcile_interval_s: float = 1.0
    # Replicas sharing one database: only the lease holder reconciles (server/lease.py).
    leader_lease_s: float = Field(
        default=15.0, gt=0, description="a dead reconciler's lease is taken after this long"
    )
    replica_id: str | None = Field(
        default=None, description="this replica's name in leases; default <hostname>:<home>"
    )
    admission_paused: bool = False
    # Scheduler (see README "Scheduling"): aging, time sharing, backfill, preemption.
    sched_aging_s: float = Field(default=3600.0, ge=0, description="0 = no aging")
    sched_service_levels_gpu_h: list[float] = Field(
        default=[1.0, 10.0], description="GPU-hours that move a job to a lower level"
    )
    sched_min_run_s: float = Field(default=300.0, ge=0)
    sched_reservations: int = Field(default=1, ge=0)
    sched_preemption: bool = True
    sched_resize_gap_s: float = Field(default=300.0, ge=0)
    cluster_config: Path | None = Field(
        default=None,
        description="the cluster's `ray up` config: its node types and max counts turn "
        "pending work into autoscaler requests",
    )
    # Ray Serve: where deployments answer, and how their ingresses reach this control
    # plane to check tokens.
    serve_host: str = Field(default="127.0.0.1", description="Serve's HTTP proxy bind address")
    serve_port: int = Field(default=8000, description="Serve's HTTP port")
    serve_url: str | None = Field(
        default=None,
        description="base URL users call deployments at; default http://<serve_host>:<serve_port>",
    )
    public_url: str | None = Field(
        default=None,
        description="this control plane's URL as the cluster's nodes reach it; "
        "default http://<host>:<port>",
    )
    deploy_reconcile_interval_s: float = 2.0
    max_code_bytes: int = 64 * 1024 * 1024
    max_code_unpacked_bytes: int = 512 * 1024 * 1024
    max_spec_bytes: int = 1024 * 1024
    log_level: str = "INFO"

    @field_validator("home", "artifact_dir", "apps_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser().resolve() if value is not None else None

    @cached_property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'raydc.db'}"

    @cached_property
    def resolved_artifact_dir(self) -> Path:
        return self.artifact_dir or self.home / "artifacts"

    @property
    def resolved_public_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def resolved_serve_url(self) -> str:
        host = "127.0.0.1" if self.serve_host in ("0.0.0.0", "::") else self.serve_host
        return (self.serve_url or f"http://{host}:{self.serve_port}").rstrip("/")

    @property
    def admin_token_path(self) -> Path:
        return self.home / "admin_token"

    @property
    def code_dir(self) -> Path:
        return self.resolved_artifact_dir / "code"

    @property
    def jobs_dir(self) -> Path:
        return self.resolved_artifact_dir / "jobs"

    @property
    def runs_dir(self) -> Path:
        return self.resolved_artifact_dir / "runs"

    def ensure_dirs(self) -> None:
        for directory in (self.home, self.code_dir, self.jobs_dir, self.runs_dir):
            directory.mkdir(parents=True, exist_ok=True)
