"""Group commit for job submissions.

Requests hand their validated spec to the batcher and wait; one database thread
writes whatever has gathered since its last write in a single transaction. Under load
the batches grow by themselves; alone, a submission is written at once. A batch whose
write raises is written again one submission at a time, so whatever one submission
breaks fails that submission alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from raydc.server.errors import DomainError, InvalidInput
from raydc.server.schemas import JobOut
from raydc.server.services.jobs import Submission, SubmitContext, insert_submissions
from raydc.store.db import transaction

MAX_BATCH = 256
T = TypeVar("T")
RunDb = Callable[[Callable[[], T]], Awaitable[T]]
Outcome = JobOut | BaseException
log = logging.getLogger(__name__)


class SubmissionBatcher:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        run_db: RunDb[list[JobOut | DomainError]],
        context: Callable[[], SubmitContext],
    ) -> None:
        self._sessions = sessions
        self._run_db = run_db
        self._context = context
        self._waiting: list[tuple[Submission, asyncio.Future[JobOut]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, submission: Submission) -> JobOut:
        future: asyncio.Future[JobOut] = asyncio.get_running_loop().create_future()
        self._waiting.append((submission, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all())
        return await future

    async def _write_all(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            outcomes = await self._write_batch([submission for submission, _ in batch])
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():  # the client went away; its job is queued regardless
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    async def _write_batch(self, submissions: list[Submission]) -> list[Outcome]:
        try:
            return list(await self._run_db(partial(self._write, submissions)))
        except Exception as error:
            if len(submissions) == 1:
                return [_single_failure(submissions[0], error)]
        # The batch's transaction rolled back: each one again in its own transaction.
        outcomes: list[Outcome] = []
        for submission in submissions:
            try:
                outcomes.extend(await self._run_db(partial(self._write, [submission])))
            except Exception as error:
                outcomes.append(_single_failure(submission, error))
        return outcomes

    def _write(self, submissions: list[Submission]) -> list[JobOut | DomainError]:
        with transaction(self._sessions) as session:
            outcomes = insert_submissions(session, submissions, self._context())
            return [o if isinstance(o, DomainError) else JobOut.of(o) for o in outcomes]


def _single_failure(submission: Submission, error: Exception) -> BaseException:
    """What one submission that could not be written is answered. A validated spec that
    still cannot be serialized or encoded is an input error; the database failing is not."""
    if isinstance(error, DomainError):
        return error
    log.error("submission '%s' could not be written: %r", submission.spec.name, error)
    cause = error.orig if isinstance(error, StatementError) else error
    if isinstance(cause, ValueError | TypeError) and not isinstance(error, DBAPIError):
        return InvalidInput.field((), f"the spec cannot be stored: {cause!s:.200}")
    return error
