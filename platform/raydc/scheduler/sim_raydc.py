"""raydc's own policy in the simulator: the live ``decide`` on simulated snapshots.

The adapter keeps one ``Job`` per trace job, builds a snapshot of the simulated cluster
at each pass, calls ``policy.decide`` exactly as the control plane does, and applies its
decisions to the simulation. Passes run at most every ``interval_s`` simulated seconds
(default 10 minutes: the full Philly replay then stays inside its 60 s budget; see
benchmarks/RESULTS.md for what shorter cycles buy), as the live reconciler (every
second) and Slurm's backfill scheduler run in cycles; events between
two passes wait for the next one, and with no event a pass still runs every
``heartbeat_s`` (aging and service levels move with time). A trace job of g GPUs is g
one-GPU workers (PACK). Preemption takes effect at once here; live, a victim first has
to stop.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from raydc.scheduler.model import (
    PRIORITY_NAMES,
    Job,
    Node,
    PolicyConfig,
    Shape,
    Snapshot,
    Strategy,
    Tenant,
)
from raydc.scheduler.policy import decide
from raydc.scheduler.simulator import SimJob, Simulation
from raydc.scheduler.traces import TraceJob

SIM_CONFIG = PolicyConfig(instant_preemption=True, explain=False)


def proportional_quotas(trace: Iterable[TraceJob], total_gpus: float) -> dict[str, Tenant]:
    """Each tenant's nominal GPU quota: its share of the trace's GPU-time."""
    gpu_time: dict[str, float] = {}
    for job in trace:
        gpu_time[job.tenant] = gpu_time.get(job.tenant, 0.0) + job.gpus * job.duration_s
    whole = sum(gpu_time.values()) or 1.0
    return {
        name: Tenant(name, nominal=(None, total_gpus * spent / whole, None))
        for name, spent in gpu_time.items()
    }


def worker_shape(job: TraceJob) -> tuple[Shape, int]:
    if job.gpus >= 1:
        return Shape(job.cpus / job.gpus, 1.0, job.memory_gb / job.gpus), job.gpus
    return Shape(job.cpus, 0.0, job.memory_gb), 1


class RaydcPolicy:
    name = "raydc"

    def __init__(
        self,
        nodes: int,
        gpus_per_node: int,
        cpus_per_node: float | None = None,
        tenants: dict[str, Tenant] | None = None,
        config: PolicyConfig = SIM_CONFIG,
        interval_s: float = 600.0,
        heartbeat_s: float = 1200.0,
    ) -> None:
        cpus = float(cpus_per_node) if cpus_per_node is not None else 1e9  # unlimited
        self.nodes = [Node(str(i), cpus, float(gpus_per_node), 1e12) for i in range(nodes)]
        self.tenants = tenants or {}
        self.config = replace(config, instant_preemption=True)
        self.interval_s = interval_s
        self.heartbeat_s = heartbeat_s
        self.changed = False  # a job arrived or finished since the last pass
        self.last_pass = float("-inf")
        self.pending: dict[str, Job] = {}
        self.running: dict[str, Job] = {}
        self.sim_jobs: dict[str, SimJob] = {}
        self.shapes: dict[Shape, Shape] = {}
        self.next_pass = 0.0

    def submitted(self, job: SimJob, sim: Simulation) -> None:
        trace = job.trace
        shape, workers = worker_shape(trace)
        shape = self.shapes.setdefault(shape, shape)  # one object per shape: cheap to compare
        key = str(trace.id)
        self.pending[key] = Job(
            id=key, tenant=trace.tenant, priority=PRIORITY_NAMES.index(trace.priority),
            submitted_at=trace.submit_s, shape=shape, min_workers=workers,
            max_workers=workers, strategy=Strategy.PACK, queued_at=trace.submit_s,
        )  # fmt: skip
        self.sim_jobs[key] = job
        self.changed = True

    def finished(self, job: SimJob, sim: Simulation) -> None:
        del self.running[str(job.trace.id)]
        self.changed = True

    def schedule(self, sim: Simulation) -> float | None:
        if not self.pending:
            return None
        if sim.now < self.next_pass:
            return self.next_pass
        if not self.changed and sim.now < self.last_pass + self.heartbeat_s:
            return self.last_pass + self.heartbeat_s  # aging and service levels move on
        self.changed = False
        self.last_pass = sim.now
        self.next_pass = sim.now + self.interval_s
        snapshot = Snapshot(
            now=sim.now, nodes=self.nodes, running=list(self.running.values()),
            pending=list(self.pending.values()), tenants=self.tenants, config=self.config,
        )  # fmt: skip
        decisions = decide(snapshot)
        if decisions.resize:
            raise NotImplementedError("trace jobs are not elastic")
        for preempt in decisions.preempt:
            self._preempt(preempt.job_id, sim)
        for admit in decisions.admit:
            job = self.pending.pop(admit.job_id)
            placement = [(int(node), int(job.shape.gpu * n)) for node, n in admit.placement.items()]
            sim.start(self.sim_jobs[job.id], placement if job.shape.gpu > 0 else [])
            job.workers, job.placement, job.started_at = admit.workers, admit.placement, sim.now
            job.last_checkpoint_at = sim.now
            self.running[job.id] = job
        return self.last_pass + self.heartbeat_s if self.pending else None

    def _preempt(self, job_id: str, sim: Simulation) -> None:
        job = self.running.pop(job_id)
        sim_job = self.sim_jobs[job_id]
        sim.preempt(sim_job)
        job.attained_gpu_s = sim_job.attained_gpu_s
        job.workers, job.placement, job.started_at = 0, None, None
        job.queued_at = sim.now
        self.pending[job_id] = job
