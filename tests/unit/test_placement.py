"""The per-node free map: cached answers stay equal to fresh ones as the map changes."""

from __future__ import annotations

import random

import numpy as np

from raydc.scheduler.model import Node, Shape, Strategy, Tenant
from raydc.scheduler.placement import FreeMap
from raydc.scheduler.quotas import Ledger

SHAPES = [
    Shape(cpu=8, gpu=1, memory_gb=64),
    Shape(cpu=16, gpu=2, memory_gb=128),
    Shape(cpu=4, memory_gb=16),
    Shape(cpu=2, gpu=0.5, memory_gb=8, custom=(("tpu", 1.0),)),
]


def cluster(count: int = 40) -> list[Node]:
    return [Node(f"n{i}", 64, 8, 512, (("tpu", 4.0),) if i % 3 == 0 else ()) for i in range(count)]


def test_cached_slots_follow_every_change_of_the_map() -> None:
    rng = random.Random(3)
    free = FreeMap(cluster())
    taken: list[tuple[Shape, dict[str, int]]] = []
    for step in range(600):
        shape = rng.choice(SHAPES)
        action = rng.random()
        if action < 0.6:
            placement = free.place(shape, rng.randint(1, 6), rng.choice(list(Strategy)))
            if placement is not None:
                free.take(shape, placement)
                taken.append((shape, placement))
        elif action < 0.9 and taken:
            free.give(*taken.pop(rng.randrange(len(taken))))
        elif action < 0.95:
            free = free.copy()  # a copy shares the cached answers, and must not share changes
        else:
            later = free.copy()
            later.take(shape, {f"n{rng.randrange(40)}": 1})
            free.clamp_to(later)
        for probe in SHAPES:
            assert np.array_equal(free.slots(probe), free._slots_all(probe)), (step, probe)


def test_a_copy_changes_alone_and_never_shares_a_version() -> None:
    original = FreeMap(cluster(4))
    before = original.slots(SHAPES[0]).copy()
    copy = original.copy()
    assert copy.version != original.version
    copy.take(SHAPES[0], {"n0": 8})
    assert copy.slots(SHAPES[0])[0] == 0
    assert np.array_equal(original.slots(SHAPES[0]), before)
    assert not original.slots(SHAPES[0]).flags.writeable  # callers cannot corrupt the cache
    versions = {original.version, copy.version, original.copy().version}
    assert len(versions) == 3


def test_an_empty_cluster_places_nothing() -> None:
    empty = FreeMap([])
    for strategy in Strategy:
        assert empty.place(SHAPES[0], 1, strategy) is None
        assert empty.place(SHAPES[0], 0, strategy) == {}


def test_remembered_shares_and_borrowing_follow_usage() -> None:
    tenants = {"a": Tenant("a", nominal=(None, 8.0, None)), "b": Tenant("b", weight=2.0)}
    ledger = Ledger(tenants, [], (64.0, 16.0, 512.0))
    gpu = Shape(cpu=1, gpu=1)
    assert ledger.share("a") == 0.0 and not ledger.would_borrow("a", gpu, 8)
    ledger.add("a", gpu.times(4))
    assert ledger.share("a") == 4 / 16
    assert ledger.would_borrow("a", gpu, 5) and not ledger.would_borrow("a", gpu, 4)
    ledger.add("b", gpu.times(8))
    assert ledger.share("b") == (8 / 16) / 2
    ledger.remove("a", gpu.times(4))
    assert ledger.share("a") == 0.0 and not ledger.would_borrow("a", gpu, 8)
