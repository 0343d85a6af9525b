"""Jobs: submit (JSON or YAML), list, get, cancel, logs, events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from raydc.server.bodies import read_limited
from raydc.server.decoding import decode_body
from raydc.server.deps import ControlPlaneDep, Reader, Submitter
from raydc.server.schemas import JobEventOut, JobOut, JobPage
from raydc.server.services import jobs
from raydc.server.services.logs import current_logs, follow_logs
from raydc.specs.jobs import JOB_KINDS
from raydc.specs.status import JobStatus

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
# Far beyond any real page; within what a database's OFFSET takes (SQLite: 64-bit).
MAX_OFFSET = 10**9
# A larger body is decoded off the event loop, so decoding it (tens of ms for a MiB of
# YAML) does not hold up every other request.
INLINE_DECODE_BYTES = 64 * 1024


@router.post("", status_code=201)
async def submit_job(request: Request, cp: ControlPlaneDep, principal: Submitter) -> JobOut:
    raw = await read_limited(request, cp.settings.max_spec_bytes)
    content_type = request.headers.get("content-type")
    if len(raw) > INLINE_DECODE_BYTES:
        data = await run_in_threadpool(decode_body, raw, content_type)
    else:
        data = decode_body(raw, content_type)
    job = await cp.submissions.submit(jobs.parse_submission(principal, data))
    cp.reconciler.wake()
    return job


@router.get("")
def list_jobs(
    cp: ControlPlaneDep,
    principal: Reader,
    status: JobStatus | None = None,
    kind: Annotated[str | None, Query(pattern="|".join(JOB_KINDS))] = None,
    limit: Annotated[int, Query(ge=1, le=jobs.MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> JobPage:
    with cp.tx() as session:
        rows, total = jobs.list_jobs(
            session, principal, status=status, kind=kind, limit=limit, offset=offset
        )
        items = [JobOut.for_principal(r, principal) for r in rows]  # a viewer: no env values
        return JobPage(items=items, total=total, limit=limit, offset=offset)


@router.get("/{job_id}")
def get_job(job_id: str, cp: ControlPlaneDep, principal: Reader) -> JobOut:
    with cp.tx() as session:
        return JobOut.for_principal(jobs.get_job(session, principal, job_id), principal)


@router.post("/{job_id}/cancel", status_code=202)
def cancel_job(job_id: str, cp: ControlPlaneDep, principal: Submitter) -> JobOut:
    with cp.tx() as session:
        job = JobOut.of(jobs.cancel_job(session, principal, job_id))
    cp.reconciler.wake()
    return job


@router.get("/{job_id}/events")
def job_events(job_id: str, cp: ControlPlaneDep, principal: Reader) -> list[JobEventOut]:
    with cp.tx() as session:
        return [JobEventOut.of(e) for e in jobs.job_events(session, principal, job_id)]


@router.get("/{job_id}/logs", response_model=None)
def job_logs(
    job_id: str, cp: ControlPlaneDep, principal: Reader, follow: bool = False
) -> PlainTextResponse | StreamingResponse:
    with cp.tx() as session:
        job = jobs.get_job(session, principal, job_id)
        attempt = job.attempt
    if follow:
        stream = follow_logs(cp.settings, cp.sessions, lambda: cp.link.cluster, job_id)
        return StreamingResponse(stream, media_type="text/plain; charset=utf-8")
    return PlainTextResponse(current_logs(cp.settings, cp.link.cluster, job_id, attempt))
