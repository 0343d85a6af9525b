"""Who a token belongs to: what a Serve deployment's ingress asks before it answers."""

from __future__ import annotations

from fastapi import APIRouter

from raydc.server.deps import Reader
from raydc.server.schemas import WhoAmI

router = APIRouter(prefix="/v1/auth", tags=["auth"])


@router.get("/whoami")
async def whoami(principal: Reader) -> WhoAmI:
    return WhoAmI(tenant=principal.tenant, role=principal.role.value, name=principal.name)
