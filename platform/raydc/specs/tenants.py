"""Tenants, quotas and roles."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from raydc.specs.base import StrictInt, StrictModel

TENANT_NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"


class Role(StrEnum):
    ADMIN = "admin"  # everything, every tenant
    MEMBER = "member"  # submit and cancel in its own tenant
    VIEWER = "viewer"  # read its own tenant
    MONITOR = "monitor"  # read /metrics only (Prometheus' scrape token)


class Quota(StrictModel):
    """Per-resource limits (a quota, or a borrowing limit); None means unlimited."""

    cpu: float | None = Field(default=None, ge=0)
    gpu: float | None = Field(default=None, ge=0)
    memory_gb: float | None = Field(default=None, ge=0)


class TenantScheduling(StrictModel):
    """How a tenant shares the cluster beyond its quota.

    `weight` scales its fair share among tenants at the same priority. `borrowing_limit` is
    how much it may use beyond its quota out of other tenants' idle quota (None = no limit,
    0 = may not borrow); borrowed capacity is reclaimed by preemption when the lender needs it.
    """

    weight: float = Field(default=1.0, gt=0, le=1000)
    borrowing_limit: Quota = Field(default_factory=Quota)


class TenantCreate(StrictModel):
    name: str = Field(pattern=TENANT_NAME_PATTERN)
    quota: Quota = Field(default_factory=Quota)
    weight: float = Field(default=1.0, gt=0, le=1000)
    borrowing_limit: Quota = Field(default_factory=Quota)

    @property
    def scheduling(self) -> TenantScheduling:
        return TenantScheduling(weight=self.weight, borrowing_limit=self.borrowing_limit)


# The longest a token may be made to live for: ten years.
MAX_TOKEN_LIFETIME_S = 10 * 365 * 24 * 3600


class TokenCreate(StrictModel):
    tenant: str = Field(pattern=TENANT_NAME_PATTERN)
    role: Role
    name: str = Field(min_length=1, max_length=100)
    expires_in_s: StrictInt | None = Field(
        default=None, ge=1, le=MAX_TOKEN_LIFETIME_S, description="unset = never expires"
    )
