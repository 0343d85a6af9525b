"""What a cluster can hold, summarised from its nodes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from raydc.specs.demand import Demand


class NodeResources(Protocol):
    @property
    def alive(self) -> bool: ...
    @property
    def cpu(self) -> float: ...
    @property
    def gpu(self) -> float: ...
    @property
    def memory_gb(self) -> float: ...
    @property
    def custom(self) -> dict[str, float]: ...
    @property
    def node_id(self) -> str: ...


@dataclass(frozen=True, slots=True)
class NodeType:
    """A kind of node the autoscaler may add, and how many of it the cluster may have
    (from the cluster's `ray up` config)."""

    name: str
    cpu: float
    gpu: float
    memory_gb: float
    max_count: int
    custom: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class ClusterCapacity:
    total: Demand
    nodes: tuple[Demand, ...]
    # Custom Ray resources of each node, in the same order as `nodes`.
    node_custom: tuple[dict[str, float], ...] = ()
    # Ray node ids, in the same order as `nodes`; empty = unknown (numbered instead).
    node_ids: tuple[str, ...] = ()

    def worker_fits_a_node(self, worker: Demand, custom: dict[str, float] | None = None) -> bool:
        extras = self.node_custom or tuple({} for _ in self.nodes)
        return any(
            worker.fits_in(node)
            and all(have.get(name, 0.0) >= need for name, need in (custom or {}).items())
            for node, have in zip(self.nodes, extras, strict=True)
        )


def capacity_of(nodes: Iterable[NodeResources]) -> ClusterCapacity:
    alive = [n for n in nodes if n.alive]
    resources = tuple(Demand(n.cpu, n.gpu, n.memory_gb) for n in alive)
    total = Demand()
    for node in resources:
        total = total + node
    return ClusterCapacity(
        total=total, nodes=resources, node_custom=tuple(dict(n.custom) for n in alive),
        node_ids=tuple(n.node_id for n in alive),
    )  # fmt: skip


def largest(capacity: ClusterCapacity, node_types: Iterable[NodeType]) -> ClusterCapacity:
    """The cluster as large as its autoscaler may make it: today's nodes plus every node
    type of its `ray up` config at its maximum count. Generous on purpose (nodes already
    launched count again): it only decides which jobs to refuse at submission."""
    nodes = list(capacity.nodes)
    extras = list(capacity.node_custom or ({} for _ in capacity.nodes))
    total = capacity.total
    for node_type in node_types:
        node = Demand(node_type.cpu, node_type.gpu, node_type.memory_gb)
        for _ in range(min(node_type.max_count, 1)):  # one of a kind decides what fits
            nodes.append(node)
            extras.append(dict(node_type.custom))
        for _ in range(node_type.max_count):
            total = total + node
    return ClusterCapacity(total=total, nodes=tuple(nodes), node_custom=tuple(extras))
