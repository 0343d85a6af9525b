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
from operator import attrgetter

import numpy as np
import numpy.typing as npt

from raydc.scheduler.model import Job, PolicyConfig, Strategy
from raydc.scheduler.placement import EPS, UNBOUNDED, FreeMap
from raydc.scheduler.quotas import Ledger, Vector

MAX_PRUNE = 32
# Nodes examined per search, cheapest first: on a large cluster the cheapest room is
# almost always among them, and a pass must stay fast (see benchmarks/scheduler_pass.py).
MAX_NODES = 128
_COST = attrgetter("cost")


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
    index: int = -1  # position in VictimPool.victims

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
    """Every running job that could ever be stopped, cheapest first, as columns: who
    may be stopped for whom is a numpy mask over them (``Search.mask``), and a
    ``Victim`` object is made only for the few a search looks at closely."""

    def __init__(
        self,
        running: list[Job],
        placements: dict[str, dict[str, int]],
        levels: dict[str, int],
        now: float,
    ) -> None:
        day = 86400.0
        codes: dict[str, int] = {}
        jobs: list[Job] = []
        keep, releases, costs, priority, level_of, ran_s, shrinks, tenant = (
            [], [], [], [], [], [], [], []
        )  # fmt: skip
        for job in running:
            if job.stopping_for is not None or not job.preemptible:
                continue
            placement = placements.get(job.id) or {}
            started = job.started_at
            ran = now - started if started is not None else 0.0
            checkpoint = job.last_checkpoint_at or started or now
            age = min(max(now - checkpoint, 0.0), 10 * day) / day  # < 10: below a priority
            workers = job.workers
            shrink = job.max_workers > job.min_workers and workers > job.min_workers
            if shrink:
                release = _shrink_release(job, placement)
                keep.append(job.min_workers)
                releases.append(release)
                costs.append(job.shape.gpu * sum(release.values()) * 100 + age)
            else:
                shape = job.shape
                keep.append(0)
                releases.append(placement)
                costs.append(
                    10_000 + shape.gpu * workers * 100 + job.priority * 10 + age + shape.cpu * 1e-3
                )
            jobs.append(job)
            priority.append(job.priority)
            level_of.append(levels.get(job.id, 0))
            ran_s.append(ran)
            shrinks.append(shrink)
            tenant.append(codes.setdefault(job.tenant, len(codes)))
        order = sorted(range(len(jobs)), key=costs.__getitem__)  # stable: ties keep job order
        self.jobs = [jobs[i] for i in order]
        self.keep = [keep[i] for i in order]
        self.releases = [releases[i] for i in order]
        self.costs = [costs[i] for i in order]
        by_cost = np.array(order, dtype=np.int64)
        self.priority = np.array(priority, dtype=np.int64)[by_cost]
        self.level = np.array(level_of, dtype=np.int64)[by_cost]
        self.ran = np.array(ran_s, dtype=np.float64)[by_cost]
        self.shrinks = np.array(shrinks, dtype=np.bool_)[by_cost]
        self.tenant = np.array(tenant, dtype=np.int64)[by_cost]
        self.tenant_codes = codes
        self.stopped = np.zeros(len(self.jobs), dtype=np.bool_)  # chosen earlier in the pass
        self._made: dict[int, Victim] = {}
        pair_victim, pair_node = [], []
        by_node: dict[str, list[int]] = {}  # node id -> positions of its victims, cheapest first
        nodes: dict[str, int] = {}
        for i, release in enumerate(self.releases):
            for node_id in release:
                on_node = by_node.get(node_id)
                if on_node is None:
                    on_node = by_node[node_id] = []
                    nodes[node_id] = len(nodes)
                on_node.append(i)
                pair_victim.append(i)
                pair_node.append(nodes[node_id])
        self.by_node = by_node
        # Each victim's nodes, as (victim, node) pairs, to find the nodes with any victim.
        self.pair_victim = np.array(pair_victim, dtype=np.int64)
        self.pair_node = np.array(pair_node, dtype=np.int64)
        # Nodes by their cheapest victim: roughly, where room is cheapest to open.
        self.node_ids = list(by_node)
        cost_of = self.costs
        order = sorted(
            range(len(self.node_ids)), key=lambda k: cost_of[by_node[self.node_ids[k]][0]]
        )
        self.node_order = np.array(order, dtype=np.int64)

    def stop(self, victim: Victim) -> None:
        """``victim`` is stopped (or shrunk) in this pass: no later search may choose it."""
        self.stopped[victim.index] = True

    def victim(self, i: int) -> Victim:
        """The victim at position ``i`` (one object per pass, so searches share it)."""
        made = self._made.get(i)
        if made is None:
            made = self._made[i] = Victim(
                self.jobs[i], self.keep[i], self.releases[i], self.costs[i],
                int(self.level[i]), float(self.ran[i]), index=i,
            )  # fmt: skip
        return made


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
    ) -> None:
        self.job, self.level, self.ledger, self.config = job, level, ledger, config
        self.quota_blocked = quota_blocked
        self._mask: npt.NDArray[np.bool_] | None = None
        demand = job.shape.times(job.min_workers)
        reclaiming = not quota_blocked and ledger.within_nominal(job.tenant, demand)
        self.lenders_borrowing = (
            {name for name in ledger.usage if name != job.tenant and ledger.borrowing(name)}
            if reclaiming
            else set()
        )

    def candidates(self, pool: VictimPool) -> list[Victim]:
        """The victims that may be stopped for this job, cheapest first."""
        return [pool.victim(i) for i in np.flatnonzero(self.mask(pool)).tolist()]

    def mask(self, pool: VictimPool) -> npt.NDArray[np.bool_]:
        """Per victim of ``pool``: whether it may be stopped (or shrunk) for this job."""
        if self._mask is not None:
            return self._mask
        job, priority = self.job, self.job.priority
        stops = pool.priority < priority
        borrowers = [pool.tenant_codes[t] for t in self.lenders_borrowing if t in pool.tenant_codes]
        if borrowers:
            lends = np.zeros(len(pool.tenant_codes), dtype=np.bool_)
            lends[borrowers] = True
            stops |= lends[pool.tenant]
        stops |= (
            (pool.priority == priority)
            & (pool.level > self.level)
            & (pool.ran >= self.config.min_run_s)
        )
        allowed = np.where(pool.shrinks, pool.priority <= priority, stops)
        if self.quota_blocked:
            allowed &= pool.tenant == pool.tenant_codes.get(job.tenant, -1)
        allowed &= ~pool.stopped
        self._mask = allowed
        return allowed

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
    slots_now = free.slots(shape)
    now_slots = slots_now.tolist()
    have = (
        int(np.count_nonzero(slots_now >= 1))
        if strategy is Strategy.STRICT_SPREAD
        else int(np.add.reduce(np.minimum(slots_now, workers)))
    )
    whole = empty.slots(shape).tolist()
    cpu, gpu, mem = free.cpu, free.gpu, free.mem
    need_c, need_g, need_m = shape.cpu, shape.gpu, shape.memory_gb
    # Per node: the cheapest prefix of its victims that opens the room J wants there.
    mask = search.mask(pool)
    allowed = mask.tolist()
    with_victims = np.zeros(len(pool.node_ids), dtype=np.bool_)
    with_victims[pool.pair_node[mask[pool.pair_victim]]] = True
    options: list[tuple[float, int, int, list[int]]] = []  # cost, node, slots, victims
    # When one node can hold the whole gang, stop at the first node whose cheapest victim
    # costs more than the best single-node room found so far.
    one_node = strategy is not Strategy.STRICT_SPREAD and max(whole, default=0) >= workers
    best_one = math.inf
    examined = 0
    node_ids, costs, releases, jobs = pool.node_ids, pool.costs, pool.releases, pool.jobs
    for k in pool.node_order[with_victims[pool.node_order]].tolist():
        node_id = node_ids[k]
        i = free.index.get(node_id)
        if i is None:
            continue
        on_node = pool.by_node[node_id]
        if one_node and costs[on_node[0]] >= best_one:
            break  # node_order is by this cost: no later node can be cheaper
        candidates = [v for v in on_node if allowed[v]]
        if not candidates or (one_node and costs[candidates[0]] >= best_one):
            continue
        examined += 1
        if examined > MAX_NODES:
            break
        target = 1 if strategy is Strategy.STRICT_SPREAD else min(workers, whole[i])
        if target <= 0 or now_slots[i] >= target:
            continue
        c, g, m = cpu.item(i), gpu.item(i), mem.item(i)
        cost, chosen, slots = 0.0, [], now_slots[i]
        for v in candidates:
            count = releases[v][node_id]
            freed = jobs[v].shape
            c += freed.cpu * count
            g += freed.gpu * count
            m += freed.memory_gb * count
            cost += costs[v]
            chosen.append(v)
            # node_slots(shape, c, g, m), inlined: this loop runs thousands of times a pass
            # (GPUs first: on a GPU cluster they bind, so most victims stop there.)
            slots = UNBOUNDED
            if need_g > 0:
                slots = math.floor((g + EPS) / need_g)
                if slots < target:
                    continue
            if need_c > 0:
                slots = min(slots, math.floor((c + EPS) / need_c))
            if need_m > 0:
                slots = min(slots, math.floor((m + EPS) / need_m))
            if slots >= target:
                options.append((cost, i, slots, chosen))
                if slots >= workers:
                    best_one = min(best_one, cost)
                break
    picked = _cheapest(options, now_slots, have, workers, strategy)
    if picked is None:
        return None
    return _finish(search, pool, [pool.victim(v) for v in picked], free, quota_ok)


def _cheapest(
    options: list[tuple[float, int, int, list[int]]],
    now_slots: list[int],
    have: int,
    workers: int,
    strategy: Strategy,
) -> list[int] | None:
    best: tuple[float, list[int]] | None = None
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
    pool: VictimPool,
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
        for victim in search.candidates(pool):
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
