"""Whether a blocked job would fit if nothing were held for others (for explanations).

A pass holds capacity for blocked jobs (reservations, room opened by preemption); a job
that fits only in that room waits "reserved for job X", not "cluster full". The answer
is asked for nearly every waiting job, so it is kept cheap: the unheld map is built once
and follows admissions, a misfit stays a misfit (admissions only take room), and a fit
stays a fit while no admission has touched the nodes it was found on.
"""

from __future__ import annotations

from raydc.scheduler.model import Job, Shape
from raydc.scheduler.placement import FreeMap


class UnheldRoom:
    def __init__(self) -> None:
        self.map: FreeMap | None = None
        self.step = 0
        self.touched: dict[int, int] = {}  # node index -> step of its last change
        self.failed: dict[tuple[Shape, int], int] = {}
        self.fits_at: dict[tuple[Shape, int, int], tuple[list[int], int]] = {}

    def forget(self) -> None:
        """The free map changed other than by an admission: rebuild when next asked."""
        self.map = None

    def fits(self, job: Job, free: FreeMap, holds: list[tuple[Shape, dict[str, int], str]]) -> bool:
        if self.map is None:
            self.map = free.copy()
            for shape, placement, _ in holds:
                self.map.give(shape, placement)
            self.touched.clear()
            self.failed.clear()
            self.fits_at.clear()
        strategy = id(job.strategy)  # enum members are singletons; Enum.__hash__ is slow
        failed = self.failed.get((job.shape, strategy))
        if failed is not None and job.min_workers >= failed:
            return False
        key = (job.shape, strategy, job.min_workers)
        known = self.fits_at.get(key)
        if known is not None and all(self.touched.get(i, -1) <= known[1] for i in known[0]):
            return True
        found = self.map.place(job.shape, job.min_workers, job.strategy)
        if found is None:
            self.failed[(job.shape, strategy)] = min(job.min_workers, failed or 1 << 30)
            return False
        self.fits_at[key] = ([self.map.index[n] for n in found], self.step)
        return True

    def take(self, shape: Shape, placement: dict[str, int]) -> None:
        """An admission took ``placement`` from the free map: take it here too."""
        if self.map is None:
            return
        self.map.take(shape, placement)
        self.step += 1
        for node_id in placement:
            i = self.map.index.get(node_id)
            if i is not None:
                self.touched[i] = self.step
