"""Who may do what: roles map to actions; tenants bound what a principal can see."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from raydc.specs.tenants import Role


class Action(StrEnum):
    READ = "read"  # jobs, models, logs, queue, cluster of own tenant
    SUBMIT = "submit"  # submit/cancel jobs, upload code in own tenant
    ADMIN = "admin"  # tenants, quotas, tokens, every tenant
    METRICS = "metrics"  # GET /metrics: every tenant's counts, for Prometheus


_ALLOWED: dict[Role, frozenset[Action]] = {
    Role.ADMIN: frozenset(Action),
    Role.MEMBER: frozenset({Action.READ, Action.SUBMIT}),
    Role.VIEWER: frozenset({Action.READ}),
    Role.MONITOR: frozenset({Action.METRICS}),
}


@dataclass(frozen=True)
class Principal:
    token_id: str
    tenant: str
    role: Role
    name: str
    # Set for a job's own token (a VIEWER of the job's tenant that expires with the job).
    job_id: str | None = None

    def may(self, action: Action) -> bool:
        return action in _ALLOWED[self.role]

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def sees_tenant(self, tenant: str) -> bool:
        """Admins see every tenant; everyone else only their own."""
        return self.is_admin or tenant == self.tenant
