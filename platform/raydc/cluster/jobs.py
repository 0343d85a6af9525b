"""Ray Jobs API: submit, stop, status and logs of a raydc job's Ray submissions."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ray.job_submission import JobSubmissionClient

log = logging.getLogger(__name__)


class RayJobNotFound(Exception):
    pass


class RaySubmissionRejected(Exception):
    """Ray refused the submission (bad runtime env, ...): retrying will not help."""


@dataclass(frozen=True)
class RayJobState:
    status: str  # PENDING | RUNNING | STOPPED | SUCCEEDED | FAILED
    message: str | None
    start_time_ms: int | None
    end_time_ms: int | None


def submission_id(job_id: str, attempt: int) -> str:
    """The Ray submission id of a job's attempt: the job id itself for the first attempt.

    Ray keeps finished submissions, so a requeued job needs a new id per attempt; the id
    for a given attempt never changes, which makes a resubmission after a crash idempotent.
    """
    return job_id if attempt <= 1 else f"{job_id}-a{attempt}"


class _TimedJobSubmissionClient(JobSubmissionClient):
    """Ray's client sends its requests with no timeout: a hung dashboard would hang us."""

    timeout_s = 30.0

    def _do_request(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self.timeout_s)
        return super()._do_request(*args, **kwargs)


class RayJobs:
    def __init__(self, dashboard_url: str, auth_token: str | None) -> None:
        headers = {"Authorization": f"Bearer {auth_token}"} if auth_token else None
        self.dashboard_url = dashboard_url
        self._client = _TimedJobSubmissionClient(dashboard_url, headers=headers)

    def submit(
        self,
        sid: str,
        entrypoint: str,
        runtime_env: dict[str, Any],
        metadata: dict[str, str],
        entrypoint_resources: dict[str, float] | None = None,
    ) -> None:
        """Submit once; a second call for the same id is a no-op (crash recovery)."""
        try:
            self._client.submit_job(
                entrypoint=entrypoint,
                submission_id=sid,
                runtime_env=runtime_env,
                metadata=metadata,
                entrypoint_resources=entrypoint_resources or None,
            )
        except (ValueError, TypeError) as error:
            # Raised while packaging the runtime env (missing dir, too large): final.
            raise RaySubmissionRejected(f"{type(error).__name__}: {error}") from error
        except RuntimeError as error:
            text = str(error)
            if "already exists" in text:
                log.info("ray job %s was already submitted; re-attaching", sid)
                return
            if "status code 400" in text:
                raise RaySubmissionRejected(text) from error
            raise

    def state(self, sid: str) -> RayJobState:
        try:
            info = self._client.get_job_info(sid)
        except RuntimeError as error:
            if "status code 404" in str(error):
                raise RayJobNotFound(sid) from error
            raise
        return RayJobState(
            status=str(info.status.value if hasattr(info.status, "value") else info.status),
            message=info.message,
            start_time_ms=info.start_time,
            end_time_ms=info.end_time,
        )

    def stop(self, sid: str) -> None:
        try:
            self._client.stop_job(sid)
        except RuntimeError as error:
            if "status code 404" in str(error):
                raise RayJobNotFound(sid) from error
            raise

    def logs(self, sid: str) -> str:
        try:
            return str(self._client.get_job_logs(sid))
        except RuntimeError as error:
            if "status code 404" in str(error):
                raise RayJobNotFound(sid) from error
            raise
