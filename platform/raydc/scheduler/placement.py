"""Gang placement: all of a job's workers on real nodes at once, or none of them.

Each node's free resources are tracked separately, and a job's workers (identical
bundles) are packed node by node, as a Ray placement group would place them. The sum
over the cluster never decides anything: 8 free GPUs spread one per node do not hold a
worker that needs two. Per-node arithmetic is vectorized (numpy), so a placement over
1,000 nodes costs tens of microseconds.

How many workers of a shape each node holds is asked far more often than the map
changes (every admission touches one or a few nodes), so the answer is cached per shape
and patched only at the nodes changed since: a pass over a 1,000-node cluster would
otherwise spend a tenth of its time recomputing the same columns.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from raydc.scheduler.model import Node, NodeType, Shape, Strategy

EPS = 1e-9
UNBOUNDED = 1 << 30
_CACHED_SHAPES = 64  # per map; beyond that the cache starts over
_PATCH_LIMIT = 64  # nodes changed since an answer was cached: patch it, else recompute
Slots = npt.NDArray[np.int64]
Column = npt.NDArray[np.float64]


_EMPTY: dict[int, tuple[list[Node], FreeMap]] = {}
_VERSIONS = itertools.count(1)


class FreeMap:
    """Free resources per node; placements are taken from and given back to it."""

    __slots__ = ("_cache", "_log", "cpu", "custom", "gpu", "ids", "index", "mem", "version")

    def __init__(self, nodes: Iterable[Node]) -> None:
        nodes = list(nodes)
        self.ids = [n.id for n in nodes]
        self.index = {n.id: i for i, n in enumerate(nodes)}
        self.cpu: Column = np.array([n.cpu for n in nodes], dtype=np.float64)
        self.gpu: Column = np.array([n.gpu for n in nodes], dtype=np.float64)
        self.mem: Column = np.array([n.memory_gb for n in nodes], dtype=np.float64)
        names = sorted({name for n in nodes for name, _ in n.custom})
        self.custom: dict[str, Column] = {
            name: np.array([dict(n.custom).get(name, 0.0) for n in nodes], dtype=np.float64)
            for name in names
        }
        # Changes on every change, and no two maps (copies included) ever share a value,
        # so an answer cached at a version holds for exactly that content.
        self.version = next(_VERSIONS)
        # shape -> (slots per node, read-only; len(_log) when it was right)
        self._cache: dict[Shape, tuple[Slots, int]] = {}
        self._log: list[int] = []  # node indices changed one by one, in order

    @classmethod
    def of_nodes(cls, nodes: list[Node]) -> FreeMap:
        """The empty map of ``nodes``, built once per list: a simulator passes the same
        (never changed) list every pass. Treat the result as read-only; copy() to change."""
        cached = _EMPTY.get(id(nodes))
        if cached is not None and cached[0] is nodes and len(cached[1]) == len(nodes):
            return cached[1]
        built = cls(nodes)
        if len(_EMPTY) >= 8:
            _EMPTY.clear()
        _EMPTY[id(nodes)] = (nodes, built)
        return built

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
        clone.ids, clone.index, clone.version = self.ids, self.index, next(_VERSIONS)
        clone.cpu, clone.gpu, clone.mem = self.cpu.copy(), self.gpu.copy(), self.mem.copy()
        clone.custom = {name: column.copy() for name, column in self.custom.items()}
        # Cached answers are read-only and replaced (never changed) when patched: share them.
        clone._cache, clone._log = dict(self._cache), list(self._log)
        return clone

    def __len__(self) -> int:
        return len(self.ids)

    # -- what fits ------------------------------------------------------------------
    def slots(self, shape: Shape) -> Slots:
        """How many workers of ``shape`` each node can hold now (a read-only array)."""
        log = self._log
        hit = self._cache.get(shape)
        if hit is not None:
            count, seen = hit
            if seen == len(log):
                return count
            if len(log) - seen <= _PATCH_LIMIT:
                count = count.copy()
                for i in set(log[seen:]):
                    count[i] = self._slots_at(i, shape)
                count.flags.writeable = False
                self._cache[shape] = (count, len(log))
                return count
        count = self._slots_all(shape)
        count.flags.writeable = False
        if len(self._cache) >= _CACHED_SHAPES:
            self._cache.clear()
        self._cache[shape] = (count, len(log))
        return count

    def _slots_all(self, shape: Shape) -> Slots:
        count = np.full(len(self.ids), UNBOUNDED, dtype=np.int64)
        dims = ((self.cpu, shape.cpu), (self.gpu, shape.gpu), (self.mem, shape.memory_gb))
        for column, need in dims:
            if need > 0:
                np.minimum(count, np.floor((column + EPS) / need).astype(np.int64), out=count)
        for name, need in shape.custom:
            if need > 0:
                have = self.custom.get(name)
                if have is None:
                    return np.zeros(len(self.ids), dtype=np.int64)
                np.minimum(count, np.floor((have + EPS) / need).astype(np.int64), out=count)
        return np.maximum(count, 0, out=count)

    def _slots_at(self, i: int, shape: Shape) -> int:
        """``_slots_all`` at one node, with the same float arithmetic."""
        count = node_slots(shape, self.cpu.item(i), self.gpu.item(i), self.mem.item(i))
        for name, need in shape.custom:
            if need > 0:
                have = self.custom.get(name)
                if have is None:
                    return 0
                count = min(count, max(math.floor((have.item(i) + EPS) / need), 0))
        return count

    def place(self, shape: Shape, workers: int, strategy: Strategy) -> dict[str, int] | None:
        """Where ``workers`` bundles of ``shape`` would go, or None if they do not all fit."""
        if workers <= 0:
            return {}
        return self.place_in(self.slots(shape), workers, strategy)

    def place_in(self, slots: Slots, workers: int, strategy: Strategy) -> dict[str, int] | None:
        ids = self.ids
        if not ids:
            return None if workers > 0 else {}
        if strategy is Strategy.STRICT_SPREAD:
            usable = np.flatnonzero(slots >= 1)
            if len(usable) < workers:
                return None
            chosen = usable[slots[usable].argsort(kind="stable")[:workers]]
            return {ids[i]: 1 for i in chosen.tolist()}  # the fullest nodes: keep big holes
        if strategy in (Strategy.PACK, Strategy.STRICT_PACK):
            # Best fit: the fullest node that holds them all.
            best = int(np.where(slots >= workers, slots, UNBOUNDED).argmin())
            if slots[best] >= workers:
                return {ids[best]: workers}
            if strategy is Strategy.STRICT_PACK:
                return None
        if int(np.add.reduce(np.minimum(slots, workers))) < workers:
            return None
        if strategy is Strategy.PACK:
            order = (-slots).argsort(kind="stable")
            taken = slots[order].cumsum()
            last = int(taken.searchsorted(workers))
            placement = {ids[i]: int(slots[i]) for i in order[:last].tolist()}
            placement[ids[int(order[last])]] = workers - (int(taken[last - 1]) if last else 0)
            return placement
        # SPREAD: one per node round-robin, emptiest nodes first, as many rounds as needed.
        order = (-slots).argsort(kind="stable")
        ordered = slots[order]
        spread: dict[str, int] = {}
        need, round_ = workers, 0
        while need > 0:
            eligible = order[ordered > round_][:need].tolist()
            for i in eligible:
                spread[ids[i]] = spread.get(ids[i], 0) + 1
            need -= len(eligible)
            round_ += 1
        return spread

    def any_node_fits(self, shape: Shape) -> bool:
        return bool(len(self.ids)) and int(np.maximum.reduce(self.slots(shape))) >= 1

    # -- bookkeeping ----------------------------------------------------------------
    def take(self, shape: Shape, placement: dict[str, int]) -> None:
        self._add(shape, placement, -1.0)

    def give(self, shape: Shape, placement: dict[str, int]) -> None:
        self._add(shape, placement, 1.0)

    def _add(self, shape: Shape, placement: dict[str, int], sign: float) -> None:
        self.version = next(_VERSIONS)
        index, log = self.index, self._log
        for node_id, count in placement.items():
            i = index.get(node_id)
            if i is None:
                continue  # a node that left the cluster: nothing to account
            log.append(i)
            if shape.cpu:
                self.cpu[i] += sign * shape.cpu * count
            if shape.gpu:
                self.gpu[i] += sign * shape.gpu * count
            if shape.memory_gb:
                self.mem[i] += sign * shape.memory_gb * count
            for name, need in shape.custom:
                column = self.custom.get(name)
                if column is not None:
                    column[i] += sign * need * count

    def take_all(self, placed: list[tuple[Shape, dict[str, int]]]) -> None:
        """Take many placements at once (a pass starts by taking every running job's)."""
        index = self.index
        n = len(self.ids)
        cpu, gpu, mem = [0.0] * n, [0.0] * n, [0.0] * n
        for shape, placement in placed:
            if shape.custom:
                self.take(shape, placement)
                continue
            c, g, m = shape.cpu, shape.gpu, shape.memory_gb
            for node_id, count in placement.items():
                i = index.get(node_id)
                if i is not None:
                    cpu[i] += c * count
                    gpu[i] += g * count
                    mem[i] += m * count
        self.cpu -= np.array(cpu)
        self.gpu -= np.array(gpu)
        self.mem -= np.array(mem)
        self._forget()

    def clamp_to(self, later: FreeMap) -> None:
        """Keep, per node, the smaller of now and ``later``: capacity promised ahead."""
        np.minimum(self.cpu, later.cpu, out=self.cpu)
        np.minimum(self.gpu, later.gpu, out=self.gpu)
        np.minimum(self.mem, later.mem, out=self.mem)
        for name, column in self.custom.items():
            np.minimum(column, later.custom[name], out=column)
        self._forget()

    def _forget(self) -> None:
        """Many nodes changed at once: drop every cached answer."""
        self.version = next(_VERSIONS)
        self._cache.clear()
        self._log.clear()

    def totals(self) -> tuple[float, float, float]:
        return (float(self.cpu.sum()), float(self.gpu.sum()), float(self.mem.sum()))


def node_slots(shape: Shape, cpu: float, gpu: float, mem: float) -> int:
    """How many workers of ``shape`` fit in these free cpu, gpu and memory (custom
    resources aside)."""
    count = UNBOUNDED
    if shape.cpu > 0:
        count = min(count, math.floor((cpu + EPS) / shape.cpu))
    if shape.gpu > 0:
        count = min(count, math.floor((gpu + EPS) / shape.gpu))
    if shape.memory_gb > 0:
        count = min(count, math.floor((mem + EPS) / shape.memory_gb))
    return max(count, 0)
