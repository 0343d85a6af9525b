"""Scheduling order: priority (with aging), service level, then weighted fair share.

Pending jobs fall into classes by effective priority (a job's priority plus one level for
every ``aging_s`` it has waited, so no job waits forever) and, within a priority, by
Tiresias service level (GPU-seconds already received: fresh jobs first). Inside a class,
tenants take turns by weighted dominant share — the tenant with the smallest share goes
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


def effective_priority(job: Job, now: float, config: PolicyConfig) -> int:
    if config.aging_s <= 0:
        return job.priority
    waited = now - (job.queued_at if job.queued_at is not None else job.submitted_at)
    return min(TOP_PRIORITY, job.priority + max(0, int(waited // config.aging_s)))


def service_level(job: Job, now: float, config: PolicyConfig) -> int:
    attained = job.attained_gpu_s
    if job.started_at is not None and job.workers:
        attained += (now - job.started_at) * job.shape.gpu * job.workers
    return bisect.bisect_right(config.service_levels_gpu_s, attained)


class Order:
    """The pending jobs grouped for one pass; iterate to get them in scheduling order.

    Building it also records each pending job's service level in ``levels`` and the
    distinct worker shapes in ``shapes``. Iteration re-reads ``share`` after every job.
    """

    def __init__(
        self, pending: list[Job], now: float, config: PolicyConfig, levels: dict[str, int]
    ) -> None:
        thresholds = config.service_levels_gpu_s
        aging = config.aging_s
        bisect_right = bisect.bisect_right
        classes: dict[tuple[int, int], dict[str, list[Job]]] = {}
        for job in pending:
            attained = job.attained_gpu_s
            level = bisect_right(thresholds, attained) if attained and thresholds else 0
            levels[job.id] = level
            rank = job.priority
            if aging > 0 and rank < TOP_PRIORITY:
                since = job.queued_at if job.queued_at is not None else job.submitted_at
                waited = now - since
                if waited >= aging:
                    rank = min(TOP_PRIORITY, rank + int(waited // aging))
            by_tenant = classes.get((-rank, level))
            if by_tenant is None:
                by_tenant = classes[(-rank, level)] = {}
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

    def jobs(self, share: Callable[[str], float]) -> Iterator[Job]:
        for key in sorted(self.classes):
            by_tenant = self.classes[key]
            for jobs in by_tenant.values():  # sorted only once reached: newest first,
                jobs.sort(key=_SUBMISSION, reverse=True)  # so pop() gives the oldest
            if len(by_tenant) == 1:
                (jobs,) = by_tenant.values()
                while jobs:
                    yield jobs.pop()
                continue
            turns = [(share(t), jobs[-1].submitted_at, t) for t, jobs in by_tenant.items()]
            heapq.heapify(turns)
            while turns:
                _, _, tenant = heapq.heappop(turns)
                jobs = by_tenant[tenant]
                yield jobs.pop()
                if jobs:
                    heapq.heappush(turns, (share(tenant), jobs[-1].submitted_at, tenant))
