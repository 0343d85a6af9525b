"""Typed FastAPI dependencies: the control plane and the authenticated principal."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from raydc.security.rbac import Action, Principal
from raydc.server.control_plane import ControlPlane
from raydc.server.errors import Forbidden, Unauthorized

# Dependencies are async so a request does not hop through the thread pool for each of
# them; a token-cache miss does its one database read in a thread.


async def get_control_plane(request: Request) -> ControlPlane:
    return request.app.state.control_plane


ControlPlaneDep = Annotated[ControlPlane, Depends(get_control_plane)]


async def current_principal(request: Request, cp: ControlPlaneDep) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
    cached = cp.authenticator.cached(token.strip())
    if cached is not None:
        return cached
    return await run_in_threadpool(cp.authenticator.authenticate, token.strip())


def require(action: Action) -> Callable[[Principal], Awaitable[Principal]]:
    async def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if not principal.may(action):
            raise Forbidden(f"role '{principal.role.value}' may not {action.value}")
        return principal

    return check


Authenticated = Annotated[Principal, Depends(current_principal)]  # any role
Reader = Annotated[Principal, Depends(require(Action.READ))]
Submitter = Annotated[Principal, Depends(require(Action.SUBMIT))]
Admin = Annotated[Principal, Depends(require(Action.ADMIN))]
Monitor = Annotated[Principal, Depends(require(Action.METRICS))]
