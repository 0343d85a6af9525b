"""Growing elastic jobs onto idle capacity, once no job waits for capacity.

Jobs admitted in this pass at their minimum grow first (they have not started yet, so
growing them costs nothing), then running elastic jobs, highest priority and oldest
first, each at most once per ``resize_gap_s`` (a resize restarts the job from its
checkpoint). A job grows to the largest size up to its maximum that fits its tenant's
quota and the free nodes.
"""

from __future__ import annotations

from raydc.scheduler.model import Admit, Decisions, Job, Resize, Snapshot
from raydc.scheduler.placement import FreeMap
from raydc.scheduler.quotas import Ledger


class Growth:
    def __init__(self, free: FreeMap, ledger: Ledger, placements: dict[str, dict[str, int]]):
        self.free, self.ledger, self.placements = free, ledger, placements

    def grow(self, admitted: list[Job], snap: Snapshot, gone: set[str], out: Decisions) -> None:
        """Grow ``admitted`` (elastic jobs admitted at min) and, if the policy allows, the
        running elastic jobs not stopping; write the decisions into ``out``."""
        admits = {a.job_id: i for i, a in enumerate(out.admit)}
        for job in admitted:
            grown = self._try(job, job.min_workers)
            if grown is not None:
                out.admit[admits[job.id]] = Admit(job.id, *grown)
        config = snap.config
        if not config.grow_running:
            return
        for job in sorted(snap.running, key=lambda j: (-j.priority, j.submitted_at)):
            if not job.elastic or job.workers >= job.max_workers or job.id in gone:
                continue
            if job.stopping_for is not None:
                continue
            since = job.resized_at if job.resized_at is not None else job.started_at
            if since is not None and snap.now - since < config.resize_gap_s:
                continue
            grown = self._try(job, job.workers)
            if grown is not None:
                out.resize.append(Resize(job.id, grown[0], grown[1], "grown on idle capacity"))

    def _try(self, job: Job, workers: int) -> tuple[int, dict[str, int]] | None:
        free, ledger = self.free, self.ledger
        current = self.placements[job.id]
        free.give(job.shape, current)
        ledger.remove(job.tenant, job.shape.times(workers))
        for size in range(job.max_workers, workers, -1):
            if not ledger.allows(job.tenant, job.shape.times(size)):
                continue
            placement = free.place(job.shape, size, job.strategy)
            if placement is not None:
                free.take(job.shape, placement)
                ledger.add(job.tenant, job.shape.times(size))
                self.placements[job.id] = placement
                return size, placement
        free.take(job.shape, current)
        ledger.add(job.tenant, job.shape.times(workers))
        return None
