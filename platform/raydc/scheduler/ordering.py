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
import math
from collections.abc import Callable, Iterator
from operator import attrgetter

from raydc.scheduler.model import TOP_PRIORITY, Job, PolicyConfig, Shape

_SUBMISSION = attrgetter("submitted_at", "id")
_SHAPE = attrgetter("shape")


class Order:
    """The pending jobs grouped for one pass; iterate to get them in scheduling order.

    While a job is being considered, ``rank`` is its effective priority (its own, raised
    by aging) and ``level`` its service level. Iteration re-reads ``share`` after every
    job. ``yielding`` holds the requeued victims that sit out this pass: each waits
    while the job it was stopped for is still pending, so that job gets the room.
    """

    def __init__(self, pending: list[Job], now: float, config: PolicyConfig) -> None:
        thresholds = config.service_levels_gpu_s
        aging = config.aging_s
        bisect_right = bisect.bisect_right
        # Class key: (TOP - effective priority) * 64 + level, so ascending = scheduling order.
        classes: dict[int, dict[str, list[Job]]] = {}
        self.yielding: list[Job] = []
        todo, requeued, pending_ids = pending, [], None
        # Whether the jobs come in submission order (the control plane reads them so):
        # then each tenant's list is already sorted, and a pass need not sort it again.
        in_order, last_at, last_id = True, -math.inf, ""
        while todo:
            for job in todo:
                at = job.submitted_at
                if at <= last_at and (at < last_at or job.id < last_id):
                    in_order = False
                last_at, last_id = at, job.id
                if job.yields_to is not None:
                    if pending_ids is None:  # sorted out once every job has been seen
                        requeued.append(job)
                        continue
                    if job.yields_to in pending_ids:
                        self.yielding.append(job)
                        continue
                attained = job.attained_gpu_s
                level = bisect_right(thresholds, attained) if attained and thresholds else 0
                rank = job.priority
                if aging > 0 and rank < TOP_PRIORITY:
                    since = job.queued_at if job.queued_at is not None else job.submitted_at
                    waited = now - since
                    if waited >= aging:
                        rank = min(TOP_PRIORITY, rank + int(waited // aging))
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
            if pending_ids is not None or not requeued:
                break
            pending_ids = {job.id for job in pending}
            todo = requeued
            in_order = False  # the requeued jobs join their lists out of order
        self.classes = classes
        self._in_order = in_order
        self._pending = pending
        self._shapes: set[Shape] | None = None
        self.rank, self.level = TOP_PRIORITY, 0

    @property
    def shapes(self) -> set[Shape]:
        """The distinct worker shapes among the pending jobs."""
        if self._shapes is None:
            self._shapes = set(map(_SHAPE, self._pending))  # a loop in C: no job is read twice
        return self._shapes

    def jobs(
        self, share: Callable[[str], float], borrows: Callable[[str, Shape, int], bool]
    ) -> Iterator[Job]:
        """Jobs in scheduling order. Among tenants of one class, a tenant whose next job
        fits its own quota goes before one that would have to borrow (as in Kueue), then
        the smaller weighted share, then the older job."""
        for key in sorted(self.classes):
            self.rank, self.level = TOP_PRIORITY - key // 64, key % 64
            by_tenant = self.classes[key]
            for jobs in by_tenant.values():  # sorted only once reached: newest first,
                if self._in_order:  # so pop() gives the oldest
                    jobs.reverse()
                else:
                    jobs.sort(key=_SUBMISSION, reverse=True)
            if len(by_tenant) == 1:
                (jobs,) = by_tenant.values()
                while jobs:
                    yield jobs.pop()
                continue
            turns = [
                (
                    borrows(t, jobs[-1].shape, jobs[-1].min_workers),
                    share(t),
                    jobs[-1].submitted_at,
                    t,
                )
                for t, jobs in by_tenant.items()
            ]
            heapq.heapify(turns)
            while turns:  # the tenant stays on top while its job is considered
                tenant = turns[0][3]
                jobs = by_tenant[tenant]
                yield jobs.pop()
                if jobs:
                    head = jobs[-1]
                    turn = (
                        borrows(tenant, head.shape, head.min_workers),
                        share(tenant),
                        head.submitted_at,
                        tenant,
                    )
                    heapq.heapreplace(turns, turn)
                else:
                    heapq.heappop(turns)
