"""A discrete-event simulator that replays a trace through a scheduling policy.

Time jumps from event to event (arrivals, completions, and the times a policy asks to
be woken, such as a job crossing a priority threshold). All events at one instant are
applied before the policy schedules, once. A preempted job keeps the work it has done
and later resumes from there (a checkpoint), as raydc's jobs do.
"""

from __future__ import annotations

import heapq
import statistics
import time
from dataclasses import dataclass, field
from typing import Protocol

from raydc.scheduler.cluster_model import GpuCluster
from raydc.scheduler.traces import TraceJob


@dataclass(eq=False, slots=True)
class SimJob:
    trace: TraceJob
    remaining_s: float
    attained_gpu_s: float = 0.0  # GPU-seconds of service so far (what LAS ranks by)
    placement: list[tuple[int, int]] | None = None
    running_since: float | None = None
    first_start: float | None = None
    finished_at: float | None = None
    preemptions: int = 0
    run_id: int = 0  # bumps on every start, so a completion event of an old run is ignored

    @property
    def gpus(self) -> int:
        return self.trace.gpus

    def attained_at(self, now: float) -> float:
        running = now - self.running_since if self.running_since is not None else 0.0
        return self.attained_gpu_s + running * self.gpus


class Policy(Protocol):
    name: str

    def submitted(self, job: SimJob, sim: Simulation) -> None: ...
    def finished(self, job: SimJob, sim: Simulation) -> None: ...
    def schedule(self, sim: Simulation) -> float | None:
        """Start/preempt jobs through ``sim``; return when to be called again, if ever."""
        ...


@dataclass
class SimResult:
    policy: str
    jobs: int
    avg_jct_s: float
    median_jct_s: float
    p99_jct_s: float
    avg_wait_s: float
    makespan_s: float
    gpu_utilization: float
    tenant_slowdown_ratio: float
    preemptions: int
    wall_s: float

    def as_dict(self) -> dict[str, float | int | str]:
        return dict(self.__dict__)


@dataclass
class Simulation:
    cluster: GpuCluster
    now: float = 0.0
    running: dict[int, SimJob] = field(default_factory=dict)
    _events: list[tuple[float, int, int, SimJob | None]] = field(default_factory=list)
    _seq: int = 0

    def start(self, job: SimJob, placement: list[tuple[int, int]] | None = None) -> bool:
        """Start ``job`` where the cluster fits it, or on the nodes given by ``placement``."""
        if placement is None:
            placement = self.cluster.place(job.gpus)
            if placement is None:
                return False
        else:
            self.cluster.take(placement)
        job.placement = placement
        job.running_since = self.now
        job.run_id += 1
        if job.first_start is None:
            job.first_start = self.now
        self.running[job.trace.id] = job
        self._push(self.now + job.remaining_s, job.run_id, job)
        return True

    def preempt(self, job: SimJob) -> None:
        if job.placement is None or job.running_since is None:
            raise RuntimeError(f"job {job.trace.id} is not running")
        ran = self.now - job.running_since
        job.remaining_s -= ran
        job.attained_gpu_s += ran * job.gpus
        self.cluster.release(job.placement)
        job.placement = job.running_since = None
        job.preemptions += 1
        job.run_id += 1  # its pending completion event is now stale
        del self.running[job.trace.id]

    def _push(self, at: float, run_id: int, job: SimJob | None) -> None:
        self._seq += 1
        heapq.heappush(self._events, (at, self._seq, run_id, job))

    def _finish(self, job: SimJob) -> None:
        if job.placement is None:
            raise RuntimeError(f"job {job.trace.id} is not running")
        self.cluster.release(job.placement)
        job.attained_gpu_s = job.attained_at(self.now)
        job.remaining_s = 0.0
        job.placement = job.running_since = None
        job.finished_at = self.now
        del self.running[job.trace.id]


def simulate(
    trace: list[TraceJob], cluster: GpuCluster, policy: Policy
) -> tuple[SimResult, list[SimJob]]:
    """Replay ``trace`` (sorted by submit time) to the end; every job must fit the cluster."""
    started = time.perf_counter()
    sim = Simulation(cluster)
    jobs = [SimJob(t, remaining_s=t.duration_s) for t in trace]
    next_arrival = 0
    wake_at: float | None = None
    while next_arrival < len(jobs) or sim._events:
        candidates = []
        if next_arrival < len(jobs):
            candidates.append(jobs[next_arrival].trace.submit_s)
        if sim._events:
            candidates.append(sim._events[0][0])
        sim.now = min(candidates)
        while sim._events and sim._events[0][0] <= sim.now:
            _, _, run_id, job = heapq.heappop(sim._events)
            if job is not None and job.run_id == run_id and job.trace.id in sim.running:
                sim._finish(job)
                policy.finished(job, sim)
        while next_arrival < len(jobs) and jobs[next_arrival].trace.submit_s <= sim.now:
            policy.submitted(jobs[next_arrival], sim)
            next_arrival += 1
        wake = policy.schedule(sim)
        if wake is not None and wake != wake_at and wake > sim.now:
            wake_at = wake
            sim._push(wake, 0, None)
    return summarize(policy.name, jobs, cluster, time.perf_counter() - started), jobs


def summarize(name: str, jobs: list[SimJob], cluster: GpuCluster, wall_s: float) -> SimResult:
    done = [j for j in jobs if j.finished_at is not None]
    if not done:
        raise ValueError("no job finished")
    jct = sorted(j.finished_at - j.trace.submit_s for j in done)  # type: ignore[operator]
    waits = [
        (j.finished_at - j.trace.submit_s) - j.trace.duration_s  # type: ignore[operator]
        for j in done
    ]
    first = min(j.trace.submit_s for j in done)
    makespan = max(j.finished_at for j in done) - first  # type: ignore[type-var, operator]
    busy = sum(j.gpus * j.trace.duration_s for j in done)
    slowdowns: dict[str, list[float]] = {}
    for j in done:
        ran = max(j.trace.duration_s, 1.0)
        slowdowns.setdefault(j.trace.tenant, []).append(
            (j.finished_at - j.trace.submit_s) / ran  # type: ignore[operator]
        )
    per_tenant = [statistics.fmean(values) for values in slowdowns.values()]
    return SimResult(
        policy=name,
        jobs=len(done),
        avg_jct_s=round(statistics.fmean(jct), 1),
        median_jct_s=round(statistics.median(jct), 1),
        p99_jct_s=round(jct[min(len(jct) - 1, int(0.99 * len(jct)))], 1),
        avg_wait_s=round(statistics.fmean(waits), 1),
        makespan_s=round(makespan, 1),
        gpu_utilization=round(busy / (cluster.total_gpus * makespan), 4) if makespan else 0.0,
        tenant_slowdown_ratio=round(max(per_tenant) / min(per_tenant), 3),
        preemptions=sum(j.preemptions for j in jobs),
        wall_s=round(wall_s, 2),
    )
