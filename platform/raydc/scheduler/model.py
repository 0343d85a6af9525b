"""What the scheduling policy reads (a snapshot) and what it returns (decisions).

Plain data, no behaviour: the live control plane builds a snapshot from its database and
Ray's node list, the simulator from its simulated cluster, and both apply the same
decisions. Times are seconds on one clock (epoch seconds live, trace seconds simulated).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from raydc.specs.capacity import NodeType
from raydc.specs.jobs import PlacementStrategy as Strategy

__all__ = ["NodeType", "Strategy"]  # re-exported: the policy's vocabulary in one place

CPU, GPU, MEMORY = "cpu", "gpu", "memory_gb"
DIMENSIONS = (CPU, GPU, MEMORY)
PRIORITY_NAMES = ("low", "normal", "high", "critical")
TOP_PRIORITY = len(PRIORITY_NAMES) - 1


class Shape(NamedTuple):
    """One worker's resources (one placement-group bundle).

    A named tuple, not a dataclass: shapes key the policy's per-pass caches, and a
    tuple hashes and compares in C — a Python ``__hash__`` ran tens of thousands of
    times a pass."""

    cpu: float = 0.0
    gpu: float = 0.0
    memory_gb: float = 0.0
    custom: tuple[tuple[str, float], ...] = ()  # sorted (name, amount)

    def times(self, count: int) -> tuple[float, float, float]:
        return (self.cpu * count, self.gpu * count, self.memory_gb * count)

    def describe(self) -> str:
        return _describe(self)


@functools.lru_cache(maxsize=1024)
def _describe(shape: Shape) -> str:
    parts = [f"{name}={value:g}" for name, value in zip(DIMENSIONS, shape.times(1), strict=True)]
    parts += [f"{name}={value:g}" for name, value in shape.custom]
    return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    cpu: float
    gpu: float
    memory_gb: float
    custom: tuple[tuple[str, float], ...] = ()


@dataclass(slots=True)
class Job:
    """A pending or running job as the policy sees it."""

    id: str
    tenant: str
    priority: int  # 0 low .. 3 critical
    submitted_at: float  # queue order among equals
    shape: Shape
    min_workers: int
    max_workers: int
    strategy: Strategy = Strategy.PACK
    queued_at: float | None = None  # when it last became pending (aging); None = submitted_at
    attained_gpu_s: float = 0.0  # GPU-seconds received by its finished runs
    # Running jobs only:
    workers: int = 0
    placement: dict[str, int] | None = None  # node id -> workers; None = unknown (placed here)
    started_at: float | None = None  # start of the current run
    last_checkpoint_at: float | None = None
    stopping_for: str | None = None  # a stop was requested to make room for this job id
    # False for what the policy counts but never stops: a model deployment's replicas
    # (Serve scales them; they hold quota and nodes like a job).
    preemptible: bool = True
    # Pending jobs only: preempted to make room for this job id. Requeued before that job
    # is admitted, it sits out while that job is still pending, so the room is not handed
    # straight back to it (the two would preempt each other for ever).
    yields_to: str | None = None
    resized_at: float | None = None

    @property
    def elastic(self) -> bool:
        return self.max_workers > self.min_workers


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    # Nominal (guaranteed) quota per dimension; None = unlimited in that dimension.
    nominal: tuple[float | None, float | None, float | None] = (None, None, None)
    # How far beyond nominal it may borrow other tenants' idle quota; None = no limit.
    borrowing_limit: tuple[float | None, float | None, float | None] = (None, None, None)
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    # A waiting job gains one priority level per aging_s (queue order only): bounded wait.
    aging_s: float = 3600.0
    # Tiresias-style service levels within a priority: a job that has received more
    # GPU-seconds than a threshold queues behind fresher jobs of its priority and may be
    # preempted by them, after it has run min_run_s. Empty: no time sharing.
    service_levels_gpu_s: tuple[float, ...] = (3600.0, 36000.0)
    min_run_s: float = 300.0
    # Capacity held for the first blocked jobs, so smaller jobs backfill only around it.
    reservations: int = 1
    preemption: bool = True
    # Blocked jobs that may look for victims per pass (bounds the pass's cost).
    preemption_attempts: int = 8
    # Victims stop at once (simulator) or later, after the control plane stops them (live).
    instant_preemption: bool = False
    # A running elastic job is grown only on idle capacity, at most once per resize_gap_s.
    grow_running: bool = True
    resize_gap_s: float = 300.0
    explain: bool = True
    # Without explanations, stop looking this many jobs after nothing more fits.
    queue_depth: int = 100


@dataclass(slots=True)
class Snapshot:
    now: float
    nodes: list[Node] | None  # None while the cluster is unreachable
    running: list[Job]
    pending: list[Job]
    tenants: dict[str, Tenant] = field(default_factory=dict)
    config: PolicyConfig = field(default_factory=PolicyConfig)
    # Node types the cluster may scale to; empty = a fixed-size cluster, no requests.
    node_types: list[NodeType] = field(default_factory=list)


class WaitCode(StrEnum):
    CLUSTER_UNKNOWN = "cluster_unknown"
    QUOTA = "quota_exhausted"
    HIGHER_PRIORITY = "behind_higher_priority"
    RESERVED = "reserved_for_job"
    NO_NODE_FITS = "no_node_fits"
    SCALE_UP = "waiting_for_scale_up"
    PREEMPTING = "waiting_for_preemption"
    CAPACITY = "cluster_full"


@dataclass(frozen=True, slots=True)
class Wait:
    code: WaitCode
    message: str
    blocker: str | None = None  # the job it waits behind or for, if one


@dataclass(frozen=True, slots=True)
class Admit:
    job_id: str
    workers: int
    placement: dict[str, int]


@dataclass(frozen=True, slots=True)
class Preempt:
    job_id: str
    for_job: str
    reason: str


@dataclass(frozen=True, slots=True)
class Resize:
    job_id: str
    workers: int
    placement: dict[str, int]
    reason: str
    for_job: str | None = None  # a shrink makes room for this job


@dataclass
class Decisions:
    admit: list[Admit] = field(default_factory=list)
    preempt: list[Preempt] = field(default_factory=list)
    resize: list[Resize] = field(default_factory=list)
    waiting: dict[str, Wait] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # pending jobs in scheduling order
    # Bundles for ray.autoscaler.sdk.request_resources; None = no autoscaler to ask.
    scale_request: list[dict[str, float]] | None = None
