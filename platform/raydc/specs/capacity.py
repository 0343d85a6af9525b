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


@dataclass(frozen=True)
class ClusterCapacity:
    total: Demand
    nodes: tuple[Demand, ...]

    def worker_fits_a_node(self, worker: Demand) -> bool:
        return any(worker.fits_in(node) for node in self.nodes)


def capacity_of(nodes: Iterable[NodeResources]) -> ClusterCapacity:
    alive = tuple(Demand(n.cpu, n.gpu, n.memory_gb) for n in nodes if n.alive)
    total = Demand()
    for node in alive:
        total = total + node
    return ClusterCapacity(total=total, nodes=alive)
