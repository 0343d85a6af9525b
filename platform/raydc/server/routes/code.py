"""Upload a zipped working directory; a job runs it by its content address."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from raydc.server.bodies import read_limited
from raydc.server.deps import ControlPlaneDep, Submitter
from raydc.server.schemas import CodeRef
from raydc.server.services.code import store_code

router = APIRouter(prefix="/v1", tags=["code"])


@router.post("/code", status_code=201)
async def upload_code(request: Request, cp: ControlPlaneDep, principal: Submitter) -> CodeRef:
    data = await read_limited(request, cp.settings.max_code_bytes)

    def store() -> str:
        with cp.tx() as session:
            return store_code(
                session,
                principal.tenant,
                data,
                cp.settings.code_dir,
                cp.settings.max_code_unpacked_bytes,
            )

    return CodeRef(ref=await run_in_threadpool(store))
