"""Choosing what to stop so a blocked job fits: the cheapest set that is enough.

Who may be stopped for job J (never a job already stopping):
- an elastic job of J's priority or lower, shrunk toward its minimum — cheaper than
  stopping any job outright, so always tried first;
- a job of lower priority than J;
- a job of a tenant that is borrowing beyond its nominal quota, when J's tenant is
  within its own nominal quota (reclaim); the lender takes back only what was lent;
- a job of J's priority that has received more service (a higher Tiresias level) and
  has run at least ``min_run_s`` (time sharing).
A job blocked by its own tenant's quota may only stop its own tenant's jobs.

Cost of a victim: fewest GPUs lost first, then lower priority, then the most recent
checkpoint (least work redone). The search is per node — J's workers must land on real
nodes — taking on each node the cheapest victims that open room there, then the
cheapest combination of nodes; victims J can do without are spared at the end.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from raydc.scheduler.model import Job, PolicyConfig, Shape, Strategy
from raydc.scheduler.placement import EPS, UNBOUNDED, FreeMap
from raydc.scheduler.quotas import Ledger, Vector

MAX_PRUNE = 32
# Nodes examined per search, cheapest first: on a large cluster the cheapest room is
# almost always among them, and a pass must stay fast (see benchmarks/scheduler_pass.py).
MAX_NODES = 128


@dataclass(slots=True)
class Victim:
    job: Job
    keep_workers: int  # 0: stopped; otherwise shrunk to this many workers
    release: dict[str, int]  # node id -> workers freed there
    cost: float
    level: int
    ran_s: float  # how long its current run has lasted
    reason: str = ""
    reclaim: bool = False

    @property
    def freed(self) -> Vector:
        return self.job.shape.times(sum(self.release.values()))


def _shrink_release(job: Job, placement: dict[str, int]) -> dict[str, int]:
    """Free the workers above min, emptying the nodes where the job has fewest first."""
    extra = job.workers - job.min_workers
    release: dict[str, int] = {}
    for node, count in sorted(placement.items(), key=lambda item: item[1]):
        if extra == 0:
            break
        take = min(count, extra)
        release[node] = take
        extra -= take
    return release


class VictimPool:
    """Every running job that could ever be stopped, cheapest first."""

    def __init__(
        self,
        running: list[Job],
        placements: dict[str, dict[str, int]],
        levels: dict[str, int],
        now: float,
    ) -> None:
        pool: list[Victim] = []
        day = 86400.0
        for job in running:
            if job.stopping_for is not None:
                continue
            placement = placements.get(job.id) or {}
            started = job.started_at
            ran = now - started if started is not None else 0.0
            checkpoint = job.last_checkpoint_at or started or now
            age = min(max(now - checkpoint, 0.0), 10 * day) / day  # < 10: below a priority
            level = levels.get(job.id, 0)
            workers = job.workers
            if job.max_workers > job.min_workers and workers > job.min_workers:
                release = _shrink_release(job, placement)
                gpus = job.shape.gpu * sum(release.values())
                pool.append(Victim(job, job.min_workers, release, gpus * 100 + age, level, ran))
            else:
                shape = job.shape
                cost = (
                    10_000 + shape.gpu * workers * 100 + job.priority * 10 + age + shape.cpu * 1e-3
                )
                pool.append(Victim(job, 0, placement, cost, level, ran))
        pool.sort(key=lambda v: v.cost)
        self.victims = pool
        self.by_node: dict[str, list[Victim]] = {}
        for victim in pool:
            for node_id in victim.release:
                self.by_node.setdefault(node_id, []).append(victim)
        # Nodes by their cheapest victim: roughly, where room is cheapest to open.
        self.node_order = sorted(self.by_node, key=lambda n: self.by_node[n][0].cost)


class Search:
    """One blocked job's search for victims, against the free map of the pass."""

    def __init__(
        self,
        job: Job,
        level: int,
        ledger: Ledger,
        config: PolicyConfig,
        *,
        quota_blocked: bool,
        exclude: set[str],
    ) -> None:
        self.job, self.level, self.ledger, self.config = job, level, ledger, config
        self.quota_blocked, self.exclude = quota_blocked, exclude
        demand = job.shape.times(job.min_workers)
        reclaiming = not quota_blocked and ledger.within_nominal(job.tenant, demand)
        self.lenders_borrowing = (
            {name for name in ledger.usage if name != job.tenant and ledger.borrowing(name)}
            if reclaiming
            else set()
        )

    def candidates(self, pool: VictimPool) -> list[Victim]:
        """The victims that may be stopped for this job, cheapest first."""
        job, exclude, borrowers = self.job, self.exclude, self.lenders_borrowing
        priority, level, min_run = job.priority, self.level, self.config.min_run_s
        own_only = self.quota_blocked
        found = []
        for victim in pool.victims:
            other = victim.job
            if other.id in exclude or other is job:
                continue
            if own_only and other.tenant != job.tenant:
                continue
            if victim.keep_workers:
                if other.priority <= priority:
                    found.append(victim)
            elif (
                other.priority < priority
                or other.tenant in borrowers
                or (other.priority == priority and victim.level > level and victim.ran_s >= min_run)
            ):
                found.append(victim)
        return found

    def explain(self, victim: Victim) -> None:
        job, other = self.job, victim.job
        victim.reclaim = False
        if victim.keep_workers:
            victim.reason = f"shrunk for job {job.id}"
        elif other.priority < job.priority:
            victim.reason = f"preempted by higher-priority job {job.id}"
        elif other.tenant in self.lenders_borrowing:
            victim.reason = (
                f"tenant {job.tenant} reclaimed the quota tenant {other.tenant} borrowed"
            )
            victim.reclaim = True
        else:
            victim.reason = f"time-shared with job {job.id}, which has had less service"


def _node_slots(shape: Shape, cpu: float, gpu: float, mem: float) -> int:
    count = UNBOUNDED
    if shape.cpu > 0:
        count = min(count, math.floor((cpu + EPS) / shape.cpu))
    if shape.gpu > 0:
        count = min(count, math.floor((gpu + EPS) / shape.gpu))
    if shape.memory_gb > 0:
        count = min(count, math.floor((mem + EPS) / shape.memory_gb))
    return max(count, 0)


def choose(
    search: Search,
    pool: VictimPool,
    free: FreeMap,
    empty: FreeMap,
    quota_ok: Callable[[Vector], bool],
) -> tuple[list[Victim], dict[str, int]] | None:
    """The victims to stop and where the job then goes, or None if no set is enough."""
    job = search.job
    shape, workers, strategy = job.shape, job.min_workers, job.strategy
    eligible = search.candidates(pool)
    if not eligible:
        return None
    slots_now = free.slots(shape)
    now_slots = slots_now.tolist()
    have = (
        int((slots_now >= 1).sum())
        if strategy is Strategy.STRICT_SPREAD
        else int(np.minimum(slots_now, workers).sum())
    )
    whole = empty.slots(shape).tolist()
    cpu, gpu, mem = free.cpu.tolist(), free.gpu.tolist(), free.mem.tolist()
    # Per node: the cheapest prefix of its victims that opens the room J wants there.
    allowed = {id(victim) for victim in eligible}
    options: list[tuple[float, int, int, list[Victim]]] = []  # cost, node, slots, victims
    # When one node can hold the whole gang, stop at the first node whose cheapest victim
    # costs more than the best single-node room found so far.
    one_node = strategy is not Strategy.STRICT_SPREAD and max(whole, default=0) >= workers
    best_one = math.inf
    examined = 0
    for node_id in pool.node_order:
        i = free.index.get(node_id)
        if i is None:
            continue
        on_node = pool.by_node[node_id]
        if one_node and on_node[0].cost >= best_one:
            break  # node_order is by this cost: no later node can be cheaper
        candidates = [v for v in on_node if id(v) in allowed]
        if not candidates or (one_node and candidates[0].cost >= best_one):
            continue
        examined += 1
        if examined > MAX_NODES:
            break
        target = 1 if strategy is Strategy.STRICT_SPREAD else min(workers, whole[i])
        if target <= 0 or now_slots[i] >= target:
            continue
        c, g, m = cpu[i], gpu[i], mem[i]
        cost, chosen, slots = 0.0, [], now_slots[i]
        for victim in candidates:
            count = victim.release[node_id]
            c += victim.job.shape.cpu * count
            g += victim.job.shape.gpu * count
            m += victim.job.shape.memory_gb * count
            cost += victim.cost
            chosen.append(victim)
            slots = _node_slots(shape, c, g, m)
            if slots >= target:
                options.append((cost, i, slots, chosen))
                if slots >= workers:
                    best_one = min(best_one, cost)
                break
    picked = _cheapest(options, now_slots, have, workers, strategy)
    if picked is None:
        return None
    return _finish(search, eligible, picked, free, quota_ok)


def _cheapest(
    options: list[tuple[float, int, int, list[Victim]]],
    now_slots: list[int],
    have: int,
    workers: int,
    strategy: Strategy,
) -> list[Victim] | None:
    best: tuple[float, list[Victim]] | None = None
    if strategy is not Strategy.STRICT_SPREAD:  # the whole gang on one node
        for cost, _, slots, victims in options:
            if slots >= workers and (best is None or cost < best[0]):
                best = (cost, victims)
    if strategy is not Strategy.STRICT_PACK:  # or spread over several nodes
        if strategy is Strategy.STRICT_SPREAD:
            gains = sorted(((cost, 1, victims) for cost, _, _, victims in options),
                           key=lambda item: item[0])  # fmt: skip
        else:
            gains = sorted(
                ((cost / max(slots - now_slots[i], 1), slots - now_slots[i], victims)
                 for cost, i, slots, victims in options),
                key=lambda item: item[0],
            )  # fmt: skip
        total, chosen = 0.0, []
        for rate, gained, victims in gains:
            if have >= workers:
                break
            have += gained
            total += rate * gained if strategy is not Strategy.STRICT_SPREAD else rate
            chosen.extend(victims)
        if have >= workers and (best is None or total < best[0]):
            best = (total, chosen)
    return best[1] if best is not None else None


def _finish(
    search: Search,
    eligible: list[Victim],
    picked: list[Victim],
    free: FreeMap,
    quota_ok: Callable[[Vector], bool],
) -> tuple[list[Victim], dict[str, int]] | None:
    job, ledger = search.job, search.ledger
    chosen: list[Victim] = []
    seen: set[int] = set()
    for victim in sorted(picked, key=lambda v: v.cost):
        if id(victim) not in seen:
            seen.add(id(victim))
            chosen.append(victim)
    own = [0.0, 0.0, 0.0]
    for victim in chosen:
        if victim.job.tenant == job.tenant:
            own = [a + b for a, b in zip(own, victim.freed, strict=True)]
    if not quota_ok((own[0], own[1], own[2])):  # free the tenant's own quota too
        for victim in eligible:
            if id(victim) in seen or victim.job.tenant != job.tenant:
                continue
            seen.add(id(victim))
            chosen.append(victim)
            own = [a + b for a, b in zip(own, victim.freed, strict=True)]
            if quota_ok((own[0], own[1], own[2])):
                break
        else:
            return None
    for victim in chosen:
        search.explain(victim)
    removed: dict[str, list[float]] = {}
    for victim in chosen:  # a lender takes back only what it lent
        gone = removed.setdefault(victim.job.tenant, [0.0, 0.0, 0.0])
        still = ledger.borrowing_after(victim.job.tenant, (gone[0], gone[1], gone[2]))
        if victim.reclaim and not still:
            return None
        for d, amount in enumerate(victim.freed):
            gone[d] += amount
    trial = free.copy()
    for victim in chosen:
        trial.give(victim.job.shape, victim.release)
    placement = trial.place(job.shape, job.min_workers, job.strategy)
    if placement is None:
        return None
    if len(chosen) > MAX_PRUNE:
        return chosen, placement
    kept: list[Victim] = []
    for victim in reversed(chosen):  # the dearest first: spare every one it can do without
        trial.take(victim.job.shape, victim.release)
        freed = victim.freed if victim.job.tenant == job.tenant else (0.0, 0.0, 0.0)
        without = (own[0] - freed[0], own[1] - freed[1], own[2] - freed[2])
        retry = trial.place(job.shape, job.min_workers, job.strategy) if quota_ok(without) else None
        if retry is None:
            trial.give(victim.job.shape, victim.release)
            kept.append(victim)
            continue
        own = list(without)
        placement = retry
    kept.reverse()
    return kept, placement
