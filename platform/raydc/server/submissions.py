"""Group commit for job submissions.

Requests hand their validated spec to the batcher and wait; one database thread
writes whatever has gathered since its last write in a single transaction. Under load
the batches grow by themselves; alone, a submission is written at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

from sqlalchemy.orm import Session, sessionmaker

from raydc.server.errors import DomainError
from raydc.server.schemas import JobOut
from raydc.server.services.jobs import Submission, SubmitContext, insert_submissions
from raydc.store.db import transaction

MAX_BATCH = 256
T = TypeVar("T")
RunDb = Callable[[Callable[[], T]], Awaitable[T]]


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
            submissions = [submission for submission, _ in batch]
            try:
                outcomes = await self._run_db(partial(self._write, submissions))
            except Exception as error:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():  # the client went away; its job is queued regardless
                    continue
                if isinstance(outcome, DomainError):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    def _write(self, submissions: list[Submission]) -> list[JobOut | DomainError]:
        with transaction(self._sessions) as session:
            outcomes = insert_submissions(session, submissions, self._context())
            return [o if isinstance(o, DomainError) else JobOut.of(o) for o in outcomes]
