"""A job's logs: live from Ray while it runs, from the artifact store once it finished."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

from sqlalchemy.orm import Session, sessionmaker

from raydc.cluster.client import RayCluster
from raydc.cluster.jobs import RayJobNotFound, submission_id
from raydc.server.services.launch import logs_path
from raydc.settings import Settings
from raydc.specs.status import JobStatus
from raydc.store.models import JobRow


def current_logs(settings: Settings, cluster: RayCluster | None, job_id: str, attempt: int) -> str:
    """Logs of the job's latest attempt ("" before it reached Ray)."""
    if attempt < 1:
        return ""
    sid = submission_id(job_id, attempt)
    saved = logs_path(settings, job_id, sid)
    if saved.exists():
        return saved.read_text(errors="replace")
    if cluster is None:
        return ""
    try:
        return cluster.jobs.logs(sid)
    except RayJobNotFound:
        return ""


def _job_progress(sessions: sessionmaker[Session], job_id: str) -> tuple[JobStatus, int] | None:
    with sessions() as session:
        job = session.get(JobRow, job_id)
        return (JobStatus(job.status), job.attempt) if job is not None else None


async def follow_logs(
    settings: Settings,
    sessions: sessionmaker[Session],
    cluster_of: Callable[[], RayCluster | None],
    job_id: str,
    poll_s: float = 1.0,
    max_s: float = 24 * 3600,
) -> AsyncIterator[str]:
    """Yield new log text as it appears, until the job ends (then the rest, and stop).

    Async, so a follower waits on the event loop instead of holding a worker thread.
    """
    sent = 0
    attempt_sent = None
    deadline = time.monotonic() + max_s
    while time.monotonic() < deadline:
        progress = await asyncio.to_thread(_job_progress, sessions, job_id)
        if progress is None:
            return
        status, attempt = progress
        if attempt != attempt_sent:
            sent, attempt_sent = 0, attempt
            if attempt > 1:
                yield f"\n--- raydc: attempt {attempt} ---\n"
        text = await asyncio.to_thread(current_logs, settings, cluster_of(), job_id, attempt)
        if len(text) > sent:
            yield text[sent:]
            sent = len(text)
        if status.is_terminal:
            return
        await asyncio.sleep(poll_s)
