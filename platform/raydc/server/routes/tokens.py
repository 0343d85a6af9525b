"""API tokens: admins create them; anyone lists its tenant's and revokes what its role may."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from raydc.server.deps import Admin, Authenticated, ControlPlaneDep, Reader
from raydc.server.schemas import TokenCreated, TokenOut
from raydc.server.services import tokens
from raydc.specs.tenants import TokenCreate

router = APIRouter(prefix="/v1", tags=["tokens"])


@router.post("/tokens", status_code=201)
def create_token(body: TokenCreate, cp: ControlPlaneDep, _: Admin) -> TokenCreated:
    with cp.tx() as session:
        row, token = tokens.create_token(session, body)
        return TokenCreated(
            id=row.id, tenant=row.tenant, role=row.role, name=row.name,
            expires_at=row.expires_at, token=token,
        )  # fmt: skip


@router.get("/tokens")
def list_tokens(
    cp: ControlPlaneDep,
    principal: Reader,
    tenant: str | None = None,
    include_inactive: Annotated[
        bool, Query(alias="all", description="also revoked and expired tokens")
    ] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,  # beyond: SQLite's int overflows
) -> list[TokenOut]:
    """Admins: every tenant's tokens (or `tenant`'s); others: their own tenant's."""
    with cp.tx() as session:
        rows = tokens.list_tokens(session, principal, tenant, include_inactive, limit, offset)
        return [TokenOut.model_validate(row) for row in rows]


@router.delete("/tokens/{token_id}")
def revoke_token(token_id: str, cp: ControlPlaneDep, principal: Authenticated) -> TokenOut:
    """Revoke a token: refused at once by this replica, by every other within 10 s."""
    with cp.tx() as session:
        out = TokenOut.model_validate(tokens.revoke_token(session, principal, token_id))
    cp.authenticator.forget(token_id)
    return out
