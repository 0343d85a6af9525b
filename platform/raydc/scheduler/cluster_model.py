"""A GPU cluster as the simulator sees it: nodes of equal size, gang placement per node.

A job of at most one node's GPUs is placed on a single node, best fit (the fullest node
that can hold it), which keeps whole nodes free for large jobs. A larger job takes whole
nodes' worth of GPUs from the emptiest nodes. All of a job's GPUs are placed at once or
none are: there is no partial start.
"""

from __future__ import annotations


class GpuCluster:
    def __init__(self, nodes: int, gpus_per_node: int) -> None:
        if nodes < 1 or gpus_per_node < 1:
            raise ValueError("a cluster needs at least one node with at least one GPU")
        self.nodes = nodes
        self.gpus_per_node = gpus_per_node
        self.total_gpus = nodes * gpus_per_node
        self.free_gpus = self.total_gpus
        self._free = [gpus_per_node] * nodes
        # _by_free[f]: the nodes with exactly f free GPUs, for O(gpus_per_node) best fit.
        self._by_free: list[set[int]] = [set() for _ in range(gpus_per_node + 1)]
        self._by_free[gpus_per_node] = set(range(nodes))

    def _move(self, node: int, delta: int) -> None:
        before = self._free[node]
        self._by_free[before].discard(node)
        self._free[node] = before + delta
        self._by_free[before + delta].add(node)
        self.free_gpus += delta

    def can_place(self, gpus: int) -> bool:
        if gpus <= 0:
            return True
        if gpus > self.free_gpus:
            return False
        if gpus <= self.gpus_per_node:
            return any(self._by_free[f] for f in range(gpus, self.gpus_per_node + 1))
        return True

    def place(self, gpus: int) -> list[tuple[int, int]] | None:
        """Reserve ``gpus``; returns [(node, gpus taken)], or None if they do not fit."""
        if gpus <= 0:
            return []
        if gpus > self.free_gpus:
            return None
        if gpus <= self.gpus_per_node:
            for free in range(gpus, self.gpus_per_node + 1):
                if self._by_free[free]:
                    node = next(iter(self._by_free[free]))
                    self._move(node, -gpus)
                    return [(node, gpus)]
            return None
        taken: list[tuple[int, int]] = []
        need = gpus
        for free in range(self.gpus_per_node, 0, -1):
            while need > 0 and self._by_free[free]:
                node = next(iter(self._by_free[free]))
                share = min(free, need)
                self._move(node, -share)
                taken.append((node, share))
                need -= share
            if need == 0:
                return taken
        for node, share in taken:  # cannot happen while free_gpus >= gpus; undo anyway
            self._move(node, share)
        return None

    def take(self, placement: list[tuple[int, int]]) -> None:
        """Reserve GPUs on the nodes a policy chose; refuses a placement that does not fit."""
        if any(gpus > self._free[node] for node, gpus in placement):
            raise ValueError(f"placement {placement} does not fit the free GPUs")
        for node, gpus in placement:
            self._move(node, -gpus)

    def release(self, placement: list[tuple[int, int]]) -> None:
        for node, gpus in placement:
            self._move(node, gpus)
