"""Scheduling order: priority (with aging), service level, then weighted fair share.

Pending jobs fall into classes by effective priority (a job's priority plus one level for
every ``aging_s`` it has waited, so no job waits forever) and, within a priority, by
Tiresias service level (GPU-seconds already received: fresh jobs first). Inside a class,
a job that fits its tenant's own quota goes before one that would borrow, and tenants
take turns by weighted dominant share — the tenant with the smallest share goes
next, and its share grows with every job it is given — and each tenant's jobs go in
submission order.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Iterator
from operator import attrgetter

from raydc.scheduler.model import TOP_PRIORITY, Job, PolicyConfig, Shape, Strategy

_SUBMISSION = attrgetter("submitted_at", "id")


class Order:
    """The pending jobs grouped for one pass; iterate to get them in scheduling order.

    Building it also records in ``levels`` the service level of each pending job above
    level 0 (absent = 0), and in ``ranks`` the effective priority of each job that aging
    has raised (absent = its own priority). Iteration re-reads ``share`` after every job.
    """

    def __init__(
        self,
        pending: list[Job],
        now: float,
        config: PolicyConfig,
        levels: dict[str, int],
        ranks: dict[str, int] | None = None,
    ) -> None:
        thresholds = config.service_levels_gpu_s
        aging = config.aging_s
        bisect_right = bisect.bisect_right
        # Class key: (TOP - effective priority) * 64 + level, so ascending = scheduling order.
        classes: dict[int, dict[str, list[Job]]] = {}
        for job in pending:
            attained = job.attained_gpu_s
            if attained and thresholds:
                level = bisect_right(thresholds, attained)
                levels[job.id] = level
            else:
                level = 0  # a fresh job: absent from ``levels`` means level 0
            rank = job.priority
            if aging > 0 and rank < TOP_PRIORITY:
                since = job.queued_at if job.queued_at is not None else job.submitted_at
                waited = now - since
                if waited >= aging:
                    rank = min(TOP_PRIORITY, rank + int(waited // aging))
                    if ranks is not None:
                        ranks[job.id] = rank
            key = (TOP_PRIORITY - rank) * 64 + level
            by_tenant = classes.get(key)
            if by_tenant is None:
                classes[key] = {job.tenant: [job]}
                continue
            jobs = by_tenant.get(job.tenant)
            if jobs is None:
                by_tenant[job.tenant] = [job]
            else:
                jobs.append(job)
        self.classes = classes
        self._pending = pending
        self._shapes: set[tuple[Shape, Strategy]] | None = None

    @property
    def shapes(self) -> set[tuple[Shape, Strategy]]:
        """The distinct (worker shape, strategy) pairs among the pending jobs."""
        if self._shapes is None:
            seen: dict[tuple[int, Strategy], tuple[Shape, Strategy]] = {}
            for job in self._pending:
                key = (id(job.shape), job.strategy)  # cheap to hash; equal shapes fold below
                if key not in seen:
                    seen[key] = (job.shape, job.strategy)
            self._shapes = set(seen.values())
        return self._shapes

    def jobs(self, share: Callable[[str], float], borrows: Callable[[Job], bool]) -> Iterator[Job]:
        """Jobs in scheduling order. Among tenants of one class, a tenant whose next job
        fits its own quota goes before one that would have to borrow (as in Kueue), then
        the smaller weighted share, then the older job."""
        for key in sorted(self.classes):
            by_tenant = self.classes[key]
            for jobs in by_tenant.values():  # sorted only once reached: newest first,
                jobs.sort(key=_SUBMISSION, reverse=True)  # so pop() gives the oldest
            if len(by_tenant) == 1:
                (jobs,) = by_tenant.values()
                while jobs:
                    yield jobs.pop()
                continue
            turns = [
                (borrows(jobs[-1]), share(t), jobs[-1].submitted_at, t)
                for t, jobs in by_tenant.items()
            ]
            heapq.heapify(turns)
            while turns:
                tenant = heapq.heappop(turns)[3]
                jobs = by_tenant[tenant]
                yield jobs.pop()
                if jobs:
                    head = jobs[-1]
                    heapq.heappush(turns, (borrows(head), share(tenant), head.submitted_at, tenant))
