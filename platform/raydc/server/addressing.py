"""``?tenant=``: which tenant's object a name-taking route means (services.addressing)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from raydc.specs.tenants import TENANT_NAME_PATTERN

TenantQuery = Annotated[
    str | None,
    Query(
        pattern=TENANT_NAME_PATTERN,
        description="the tenant whose object the name means: an admin's choice among "
        "tenants; a tenant's user may give only their own",
    ),
]
