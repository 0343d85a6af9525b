"""Tenants, quotas and roles."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, field_validator

from raydc.specs.base import Amount, FiniteFloat, StrictInt, StrictModel

TENANT_NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"


class Role(StrEnum):
    ADMIN = "admin"  # everything, every tenant
    MEMBER = "member"  # submit and cancel in its own tenant
    VIEWER = "viewer"  # read its own tenant
    MONITOR = "monitor"  # read /metrics only (Prometheus' scrape token)


class Quota(StrictModel):
    """Per-resource limits (a quota, or a borrowing limit); None means unlimited.

    `storage_gb` (GiB, like memory) is what the tenant may keep stored: its code bundles,
    unpacked, and its jobs' artifacts. It is not a scheduling dimension: the scheduler never
    reads it, and a borrowing limit may not have one (storage is not lent).
    """

    cpu: Amount | None = None
    gpu: Amount | None = None
    memory_gb: Amount | None = None
    # Shown once set: a quota (and every borrowing limit) without one reads as before.
    storage_gb: Amount | None = Field(default=None, exclude_if=lambda value: value is None)


def _no_storage_borrowing(limit: Quota) -> Quota:
    if limit.storage_gb is not None:
        raise ValueError("storage_gb: storage is not borrowed; set it in the quota")
    return limit


class TenantScheduling(StrictModel):
    """How a tenant shares the cluster beyond its quota.

    `weight` scales its fair share among tenants at the same priority. `borrowing_limit` is
    how much it may use beyond its quota out of other tenants' idle quota (None = no limit,
    0 = may not borrow); borrowed capacity is reclaimed by preemption when the lender needs it.
    """

    weight: FiniteFloat = Field(default=1.0, gt=0, le=1000)
    borrowing_limit: Quota = Field(default_factory=Quota)

    _borrowing = field_validator("borrowing_limit")(_no_storage_borrowing)


class TenantCreate(StrictModel):
    name: str = Field(pattern=TENANT_NAME_PATTERN)
    quota: Quota = Field(default_factory=Quota)
    weight: FiniteFloat = Field(default=1.0, gt=0, le=1000)
    borrowing_limit: Quota = Field(default_factory=Quota)

    _borrowing = field_validator("borrowing_limit")(_no_storage_borrowing)

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
