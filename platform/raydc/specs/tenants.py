"""Tenants, quotas and roles."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from raydc.specs.base import StrictModel

TENANT_NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"


class Role(StrEnum):
    ADMIN = "admin"  # everything, every tenant
    MEMBER = "member"  # submit and cancel in its own tenant
    VIEWER = "viewer"  # read its own tenant


class Quota(StrictModel):
    """A tenant's limit on admitted work; None means unlimited."""

    cpu: float | None = Field(default=None, ge=0)
    gpu: float | None = Field(default=None, ge=0)
    memory_gb: float | None = Field(default=None, ge=0)


class TenantCreate(StrictModel):
    name: str = Field(pattern=TENANT_NAME_PATTERN)
    quota: Quota = Field(default_factory=Quota)


class TokenCreate(StrictModel):
    tenant: str = Field(pattern=TENANT_NAME_PATTERN)
    role: Role
    name: str = Field(min_length=1, max_length=100)
