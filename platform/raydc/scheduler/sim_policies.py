"""Baseline policies for the simulator: strict FIFO, oracle SJF, and Tiresias 2D-LAS."""

from __future__ import annotations

import bisect
import heapq
from collections import deque
from collections.abc import Callable

from raydc.scheduler.simulator import Policy, SimJob, Simulation


class FifoPolicy:
    """Strict first-come first-served: the head of the queue blocks everything behind it."""

    name = "fifo"

    def __init__(self) -> None:
        self.queue: deque[SimJob] = deque()

    def submitted(self, job: SimJob, sim: Simulation) -> None:
        self.queue.append(job)

    def finished(self, job: SimJob, sim: Simulation) -> None:
        pass

    def schedule(self, sim: Simulation) -> float | None:
        while self.queue and sim.start(self.queue[0]):
            self.queue.popleft()
        return None


class SjfPolicy:
    """Shortest job first with oracle durations, non-preemptive; skips jobs that do not fit."""

    name = "sjf"

    def __init__(self) -> None:
        # One queue per GPU count, so "the shortest job that fits" costs O(#sizes).
        self.by_size: dict[int, list[tuple[float, int, SimJob]]] = {}

    def submitted(self, job: SimJob, sim: Simulation) -> None:
        queue = self.by_size.setdefault(job.gpus, [])
        heapq.heappush(queue, (job.trace.duration_s, job.trace.id, job))

    def finished(self, job: SimJob, sim: Simulation) -> None:
        pass

    def schedule(self, sim: Simulation) -> float | None:
        while sim.cluster.free_gpus > 0:
            best: tuple[float, int, SimJob] | None = None
            for size, queue in self.by_size.items():
                if queue and (best is None or queue[0] < best) and sim.cluster.can_place(size):
                    best = queue[0]
            if best is None or not sim.start(best[2]):
                return None
            heapq.heappop(self.by_size[best[2].gpus])
        return None


class LasPolicy:
    """Tiresias-style discretized two-dimensional least-attained-service (preemptive).

    A job's priority queue is set by the GPU-seconds it has received; within a queue,
    jobs go in arrival order. Each pass gives GPUs to jobs in that order and preempts
    running jobs that fall outside; preempted jobs resume where they stopped.
    """

    name = "las"

    def __init__(self, thresholds_gpu_s: tuple[float, ...] = (3600.0, 36000.0)) -> None:
        self.thresholds = thresholds_gpu_s
        self.queues: list[list[int]] = [[] for _ in range(len(thresholds_gpu_s) + 1)]
        self.jobs: dict[int, SimJob] = {}
        self.level: dict[int, int] = {}

    def _level_of(self, attained: float) -> int:
        return bisect.bisect_right(self.thresholds, attained)

    def submitted(self, job: SimJob, sim: Simulation) -> None:
        self.jobs[job.trace.id] = job
        self.level[job.trace.id] = 0
        bisect.insort(self.queues[0], job.trace.id)

    def finished(self, job: SimJob, sim: Simulation) -> None:
        level = self.level.pop(job.trace.id)
        queue = self.queues[level]
        del queue[bisect.bisect_left(queue, job.trace.id)]
        del self.jobs[job.trace.id]

    def _demote_running(self, sim: Simulation) -> None:
        for job in sim.running.values():
            level = self._level_of(job.attained_at(sim.now))
            old = self.level[job.trace.id]
            if level != old:
                queue = self.queues[old]
                del queue[bisect.bisect_left(queue, job.trace.id)]
                bisect.insort(self.queues[level], job.trace.id)
                self.level[job.trace.id] = level

    def schedule(self, sim: Simulation) -> float | None:
        self._demote_running(sim)
        capacity = sim.cluster.total_gpus
        chosen: list[SimJob] = []
        for queue in self.queues:
            for job_id in queue:
                if capacity <= 0:
                    break
                job = self.jobs[job_id]
                if job.gpus <= capacity:
                    chosen.append(job)
                    capacity -= job.gpus
        keep = {job.trace.id for job in chosen}
        for job in [j for j in sim.running.values() if j.trace.id not in keep]:
            sim.preempt(job)
        for job in chosen:
            if job.placement is None:
                sim.start(job)  # may not fit a node yet (fragmentation): next pass
        return self._next_demotion(sim)

    def _next_demotion(self, sim: Simulation) -> float | None:
        soonest: float | None = None
        for job in sim.running.values():
            level = self.level[job.trace.id]
            if level < len(self.thresholds):
                at = sim.now + (self.thresholds[level] - job.attained_at(sim.now)) / job.gpus
                soonest = at if soonest is None or at < soonest else soonest
        return soonest


POLICIES: dict[str, Callable[[], Policy]] = {
    "fifo": FifoPolicy,
    "sjf": SjfPolicy,
    "las": LasPolicy,
}
