"""All of raydc's settings, read from ``RAYDC_*`` environment variables."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# apps/ next to platform/ in a source checkout; overridable for installed wheels.
_SOURCE_APPS_DIR = Path(__file__).resolve().parents[2] / "apps"

# An admin token is every tenant's key: refuse one short enough to guess, or one copied
# from raydc's examples (deploy/kubernetes/secret.yaml, old and current).
ADMIN_TOKEN_MIN_LENGTH = 32
PLACEHOLDER_ADMIN_TOKENS = frozenset(
    {"rdc_CHANGE-ME-admin-token", "rdc_REPLACE-ME-the-server-refuses-this-placeholder"}
)
_PLACEHOLDER_MARKERS = ("change-me", "changeme", "replace-me", "replaceme")
MAKE_ADMIN_TOKEN = "python -c \"import secrets; print('rdc_' + secrets.token_urlsafe(32))\""


class InsecureAdminToken(ValueError):
    """An admin token too short to be secret, or a placeholder shipped with raydc."""


def check_admin_token(token: str, source: str = "RAYDC_ADMIN_TOKEN") -> str:
    """The token if it may be the admin's; InsecureAdminToken (never echoing it) if not."""
    lowered = token.lower()
    if token in PLACEHOLDER_ADMIN_TOKENS or any(m in lowered for m in _PLACEHOLDER_MARKERS):
        problem = "is a placeholder from raydc's examples"
    elif len(token) < ADMIN_TOKEN_MIN_LENGTH:
        problem = f"is {len(token)} characters, fewer than {ADMIN_TOKEN_MIN_LENGTH}"
    else:
        return token
    raise InsecureAdminToken(
        f"refusing the admin token: {source} {problem}; make one with {MAKE_ADMIN_TOKEN}"
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAYDC_", extra="ignore")

    home: Path = Field(
        default_factory=lambda: Path("/var/lib/raydc" if os.geteuid() == 0 else "~/.raydc"),
        description="state directory; as root /var/lib/raydc (the jobs user must reach its "
        "artifacts, and root's home is closed to it), else ~/.raydc",
    )
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
    # Who runs the jobs of a local head (cluster/jobs_user.py, SECURITY.md).
    jobs_user: str = Field(
        default="auto",
        description="the OS user the local Ray head and its jobs run as: auto = 'nobody' "
        "when the control plane is root, else itself; none = itself; or a user name",
    )
    job_env_allow: list[str] = Field(
        default=[],
        description="environment variables the local head's jobs inherit beyond the "
        "built-in allowlist (a JSON list); RAYDC_* never",
    )
    host: str = "127.0.0.1"
    port: int = 8080
    admin_token: str | None = Field(
        default=None,
        description="unset = generate one on first start into home/admin_token; at least "
        f"{ADMIN_TOKEN_MIN_LENGTH} characters and no placeholder",
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
    # Connection limits (server/connections.py): what one client's connections may hold.
    http_header_timeout_s: float = Field(
        default=10.0, gt=0, description="a request's headers must be complete this long "
        "after the connect or the previous response, or the connection is closed",
    )  # fmt: skip
    http_body_idle_timeout_s: float = Field(
        default=30.0, gt=0, description="a request body that sends nothing this long is cut"
    )
    http_keep_alive_timeout_s: int = Field(
        default=5, ge=1, description="an idle keep-alive connection is closed after this long"
    )
    max_requests_per_client: int = Field(
        default=64, ge=0, description="requests in flight per client address, past it 429; "
        "0 = no limit (behind a proxy, every client has the proxy's address)",
    )  # fmt: skip

    @field_validator("admin_token", mode="after")
    @classmethod
    def _strong_admin_token(cls, value: str | None) -> str | None:
        return check_admin_token(value) if value is not None else None

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
