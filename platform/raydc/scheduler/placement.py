"""Gang placement: all of a job's workers on real nodes at once, or none of them.

Each node's free resources are tracked separately, and a job's workers (identical
bundles) are packed node by node, as a Ray placement group would place them. The sum
over the cluster never decides anything: 8 free GPUs spread one per node do not hold a
worker that needs two.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from raydc.scheduler.model import Node, NodeType, Shape, Strategy

EPS = 1e-9
UNBOUNDED = 1 << 30


class FreeMap:
    """Free resources per node; placements are taken from and given back to it."""

    __slots__ = ("_has_custom", "cpu", "custom", "gpu", "ids", "index", "mem")

    def __init__(self, nodes: Iterable[Node]) -> None:
        nodes = list(nodes)
        self.ids = [n.id for n in nodes]
        self.index = {n.id: i for i, n in enumerate(nodes)}
        self.cpu = [n.cpu for n in nodes]
        self.gpu = [n.gpu for n in nodes]
        self.mem = [n.memory_gb for n in nodes]
        self.custom = [dict(n.custom) for n in nodes]
        self._has_custom = any(self.custom)

    @classmethod
    def of_node_types(cls, types: Iterable[NodeType]) -> FreeMap:
        """An empty cluster at the largest size its node types allow."""
        nodes = [
            Node(f"{t.name}-{i}", t.cpu, t.gpu, t.memory_gb, t.custom)
            for t in types
            for i in range(t.max_count)
        ]
        return cls(nodes)

    def copy(self) -> FreeMap:
        clone = FreeMap.__new__(FreeMap)
        clone.ids, clone.index = self.ids, self.index
        clone.cpu, clone.gpu, clone.mem = list(self.cpu), list(self.gpu), list(self.mem)
        clone.custom = [dict(c) for c in self.custom] if self._has_custom else self.custom
        clone._has_custom = self._has_custom
        return clone

    def __len__(self) -> int:
        return len(self.ids)

    # -- what fits ------------------------------------------------------------------
    def fits_on(self, shape: Shape, i: int) -> int:
        """How many workers of ``shape`` node ``i`` can hold now."""
        count = UNBOUNDED
        if shape.cpu > 0:
            count = min(count, math.floor((self.cpu[i] + EPS) / shape.cpu))
        if shape.gpu > 0:
            count = min(count, math.floor((self.gpu[i] + EPS) / shape.gpu))
        if shape.memory_gb > 0:
            count = min(count, math.floor((self.mem[i] + EPS) / shape.memory_gb))
        for name, need in shape.custom:
            if need > 0:
                have = self.custom[i].get(name, 0.0) if self._has_custom else 0.0
                count = min(count, math.floor((have + EPS) / need))
        return max(count, 0)

    def place(self, shape: Shape, workers: int, strategy: Strategy) -> dict[str, int] | None:
        """Where ``workers`` bundles of ``shape`` would go, or None if they do not all fit."""
        if workers <= 0:
            return {}
        if shape.gpu > 0 and not shape.custom and shape.cpu == 0 and shape.memory_gb == 0:
            slots = [math.floor((g + EPS) / shape.gpu) for g in self.gpu]  # the common case
        else:
            slots = [self.fits_on(shape, i) for i in range(len(self.ids))]
        if strategy is Strategy.STRICT_SPREAD:
            usable = [i for i, k in enumerate(slots) if k >= 1]
            if len(usable) < workers:
                return None
            usable.sort(key=lambda i: slots[i])  # keep the emptiest nodes for others
            return {self.ids[i]: 1 for i in usable[:workers]}
        if sum(min(k, workers) for k in slots) < workers:
            return None
        if strategy in (Strategy.PACK, Strategy.STRICT_PACK):
            best = -1
            for i, k in enumerate(slots):  # best fit: the fullest node that holds them all
                if k >= workers and (best < 0 or k < slots[best]):
                    best = i
            if best >= 0:
                return {self.ids[best]: workers}
            if strategy is Strategy.STRICT_PACK:
                return None
            placement: dict[str, int] = {}
            need = workers
            for i in sorted(range(len(slots)), key=lambda i: -slots[i]):
                take = min(slots[i], need)
                placement[self.ids[i]] = take
                need -= take
                if need == 0:
                    return placement
            return None
        # SPREAD: one per node round-robin, emptiest nodes first, as many rounds as needed.
        order = sorted((i for i, k in enumerate(slots) if k >= 1), key=lambda i: -slots[i])
        spread: dict[str, int] = {}
        need = workers
        while need > 0:
            progressed = False
            for i in order:
                if need == 0:
                    break
                if slots[i] > 0:
                    slots[i] -= 1
                    spread[self.ids[i]] = spread.get(self.ids[i], 0) + 1
                    need -= 1
                    progressed = True
            if not progressed:
                return None
        return spread

    # -- bookkeeping ----------------------------------------------------------------
    def take(self, shape: Shape, placement: dict[str, int]) -> None:
        self._add(shape, placement, -1)

    def give(self, shape: Shape, placement: dict[str, int]) -> None:
        self._add(shape, placement, +1)

    def _add(self, shape: Shape, placement: dict[str, int], sign: int) -> None:
        for node_id, count in placement.items():
            i = self.index.get(node_id)
            if i is None:
                continue  # a node that left the cluster: nothing to account
            self.cpu[i] += sign * shape.cpu * count
            self.gpu[i] += sign * shape.gpu * count
            self.mem[i] += sign * shape.memory_gb * count
            for name, need in shape.custom:
                if self._has_custom:
                    self.custom[i][name] = self.custom[i].get(name, 0.0) + sign * need * count

    def clamp_to(self, later: FreeMap) -> None:
        """Keep, per node, the smaller of now and ``later``: capacity promised ahead."""
        for mine, theirs in ((self.cpu, later.cpu), (self.gpu, later.gpu), (self.mem, later.mem)):
            for i, value in enumerate(theirs):
                if value < mine[i]:
                    mine[i] = value
        if self._has_custom:
            for mine_c, theirs_c in zip(self.custom, later.custom, strict=True):
                for name, value in theirs_c.items():
                    if value < mine_c.get(name, 0.0):
                        mine_c[name] = value

    def take_all(self, placed: list[tuple[Shape, dict[str, int]]]) -> None:
        """Take many placements at once (a pass starts by taking every running job's)."""
        index, cpu, gpu, mem = self.index, self.cpu, self.gpu, self.mem
        for shape, placement in placed:
            if shape.custom:
                self.take(shape, placement)
                continue
            c, g, m = shape.cpu, shape.gpu, shape.memory_gb
            for node_id, count in placement.items():
                i = index.get(node_id)
                if i is not None:
                    cpu[i] -= c * count
                    gpu[i] -= g * count
                    mem[i] -= m * count

    def totals(self) -> tuple[float, float, float]:
        return (sum(self.cpu), sum(self.gpu), sum(self.mem))

    def any_node_fits(self, shape: Shape) -> bool:
        return any(self.fits_on(shape, i) >= 1 for i in range(len(self.ids)))
