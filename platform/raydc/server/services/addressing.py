"""Which tenant's object a name means: names are unique within a tenant, not across them.

A tenant's user addresses only their own tenant (``?tenant=`` naming another is a 404,
like any other tenant's object). An admin sees every tenant: ``?tenant=`` picks one, and a
name that matches objects of several tenants without it is a 409 naming them, never the
first one silently (a DELETE must not land on the wrong tenant's deployment).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from raydc.security.rbac import Principal
from raydc.server.errors import Conflict, NotFound

T = TypeVar("T")


def addressed_tenants(principal: Principal, tenant: str | None) -> list[str] | None:
    """The tenants a request looks in: None = every tenant (an admin who named none),
    [] = none (a tenant's user naming another tenant)."""
    if tenant is None:
        return None if principal.is_admin else [principal.tenant]
    return [tenant] if principal.sees_tenant(tenant) else []


def the_one(rows: Sequence[T], tenant_of: Callable[[T], str], what: str) -> T:
    """The single object a name lookup found; a 404 for none, a 409 for several tenants'."""
    if not rows:
        raise NotFound(f"{what} not found")
    tenants = sorted({tenant_of(row) for row in rows})
    if len(tenants) > 1:
        raise Conflict(
            f"{what} exists in tenants {', '.join(tenants)}: add ?tenant=<tenant> to say which one"
        )
    return rows[0]
