"""raydc's scheduling policy: ``decide(snapshot) -> decisions``, a pure function.

One pass walks the pending jobs in scheduling order (see ordering.py) and, for each:
1. checks its tenant's quota (with borrowing); over quota it may only stop its own
   tenant's lower-priority jobs, otherwise it waits without blocking anyone;
2. places all of its minimum workers on real nodes, or
3. when the cluster is too small for it even empty: asks the autoscaler for it if the
   cluster's node types can hold it, and waits without blocking anyone;
4. otherwise looks for the cheapest set of jobs to stop (preemption.py);
5. failing that, the first blocked jobs reserve capacity: later (smaller) jobs backfill
   only around it, so a large job is not starved by a stream of small ones.
After the walk, idle capacity grows elastic jobs toward their maximum (growth.py) — only when
no job waits for capacity. Pending demand the cluster could grow to hold becomes the
autoscaler request; the request also holds what runs, so it shrinks as the queue drains.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator

from raydc.scheduler import preemption
from raydc.scheduler.autoscale import scale_request
from raydc.scheduler.growth import Growth
from raydc.scheduler.model import (
    Admit,
    Decisions,
    Job,
    Preempt,
    Resize,
    Shape,
    Snapshot,
    Strategy,
    Wait,
    WaitCode,
)
from raydc.scheduler.ordering import Order
from raydc.scheduler.placement import FreeMap
from raydc.scheduler.quotas import Ledger, Vector
from raydc.scheduler.unheld import UnheldRoom

_CAPACITY_WAITS = {WaitCode.CAPACITY, WaitCode.RESERVED, WaitCode.PREEMPTING}
_UNKNOWN = Wait(WaitCode.QUOTA, "")  # a cache miss, told apart from a cached None


def decide(snapshot: Snapshot) -> Decisions:
    if snapshot.nodes is None:
        decisions = Decisions()
        for job in sorted(snapshot.pending, key=lambda j: (-j.priority, j.submitted_at, j.id)):
            decisions.order.append(job.id)
            decisions.waiting[job.id] = Wait(
                WaitCode.CLUSTER_UNKNOWN, "waiting for the cluster to connect"
            )
        return decisions
    return _Pass(snapshot).run()


class _Pass:
    def __init__(self, snapshot: Snapshot) -> None:
        self.snap = snapshot
        self.now = snapshot.now
        self.config = snapshot.config
        self.out = Decisions()
        nodes = snapshot.nodes or []
        self.empty = FreeMap.of_nodes(nodes)  # read-only: the cluster with nothing running
        self.free = self.empty.copy()
        self.placements: dict[str, dict[str, int]] = {}
        self.stopping: dict[str, list[Job]] = {}  # preemptor -> its victims still stopping
        placed, unplaced = [], []
        for job in snapshot.running:
            if job.stopping_for is not None:
                self.stopping.setdefault(job.stopping_for, []).append(job)
            if job.placement is None:
                unplaced.append(job)
                continue
            self.placements[job.id] = job.placement
            placed.append((job.shape, job.placement))
        self.free.take_all(placed)
        for job in unplaced:  # not placed by us (recovered): put it where it fits
            placement = self.free.place(job.shape, job.workers, job.strategy) or {}
            self.free.take(job.shape, placement)
            self.placements[job.id] = placement
        self.ledger = Ledger(snapshot.tenants, snapshot.running, self.empty.totals())
        self.levels: dict[str, int] = {}
        self.lowest_priority = 99
        self.shrinkable = False
        self.top_level: dict[int, int] = {}  # priority -> highest level that may be time-shared
        self._summarize_running()
        self.largest = FreeMap.of_node_types(snapshot.node_types) if snapshot.node_types else None
        self.can_grow = self.largest is not None and len(self.largest) > len(self.empty)
        self.gone: set[str] = set()  # running jobs chosen to stop in this pass
        self.holds: list[tuple[Shape, dict[str, int], str]] = []  # capacity promised ahead
        self.reservations_left = self.config.reservations
        self.attempts_left = self.config.preemption_attempts if self.config.preemption else 0
        self.first_blocked: tuple[int, str] | None = None
        self.capacity_wait = False
        # Cache keys hold id(strategy): enum members are singletons, and Enum.__hash__
        # is slow Python code on a path run for every pending job.
        self.failed: dict[tuple[Shape, int], int] = {}
        self.fits_cache: dict[tuple[int, Shape, int, int], bool] = {}
        self.scale_bundles: list[tuple[Shape, int]] = []
        self.admitted_elastic: list[Job] = []
        self.unheld = UnheldRoom()  # for "reserved for job X" explanations
        self.pool: preemption.VictimPool | None = None
        self.some_fit_at = -1  # free-map version at which some pending shape still fit
        self.fit_shape: Shape | None = None
        self.settled_rank = -1  # the class whose reasons settled_waits holds
        self.settled_waits: dict[tuple[object, ...], tuple[Wait, bool]] = {}
        self.capacity_waits: dict[tuple[object, ...], tuple[Wait, bool]] = {}
        self.quota_waits: dict[tuple[str, Shape, int], Wait | None] = {}
        self.wait_objects: dict[tuple[object, ...], Wait] = {}
        self.hopeless: dict[tuple[object, ...], int] = {}  # preemption failed at >= workers
        self.order = Order(snapshot.pending, self.now, self.config)

    def _summarize_running(self) -> None:
        """Service levels, and what could ever be stopped this pass (so most blocked jobs
        skip the search for victims)."""
        now, config = self.now, self.config
        thresholds, min_run = config.service_levels_gpu_s, config.min_run_s
        for job in self.snap.running:
            ran = now - job.started_at if job.started_at is not None else 0.0
            attained = job.attained_gpu_s + ran * job.shape.gpu * job.workers
            level = bisect.bisect_right(thresholds, attained) if thresholds else 0
            self.levels[job.id] = level
            if job.priority < self.lowest_priority:
                self.lowest_priority = job.priority
            if job.max_workers > job.min_workers and job.workers > job.min_workers:
                self.shrinkable = True
            if ran >= min_run and level > self.top_level.get(job.priority, -1):
                self.top_level[job.priority] = level

    # -- the walk ---------------------------------------------------------------------
    def run(self) -> Decisions:
        order = self.order
        depth = self.config.queue_depth
        jobs = order.jobs(self.ledger.share, self.ledger.would_borrow)
        settled = False  # nothing more can start or be preempted for in this pass
        for job in jobs:
            self.out.order.append(job.id)
            if self._consider(job):
                continue
            if not self.config.explain:
                # Like Slurm's queue depth: once nothing more fits, look only so far.
                if depth <= 0 and self._nothing_fits(order.shapes):
                    break
                depth -= 1
            elif self.attempts_left <= 0 and self._nothing_fits(order.shapes):
                settled = True
                break
        if settled:  # the rest of the queue only needs its reasons, in queue order
            self._explain_settled(jobs)
        for job in order.yielding:
            self.out.order.append(job.id)
            self.out.waiting[job.id] = Wait(
                WaitCode.RESERVED, f"preempted for job {job.yields_to}: its room is held for it",
                job.yields_to,
            )  # fmt: skip
        if not self.capacity_wait:
            Growth(self.free, self.ledger, self.placements).grow(
                self.admitted_elastic, self.snap, self.gone, self.out
            )
        if self.largest is not None:
            self.out.scale_request = self._scale_request()
        return self.out

    def _nothing_fits(self, shapes: set[Shape]) -> bool:
        """Whether not even one worker of any pending job fits anywhere now."""
        if self.some_fit_at == self.free.version:
            return False  # known from the last look; the free map has not changed since
        last = self.fit_shape  # what fitted last time most likely still does: try it first
        if last is not None and self.free.any_node_fits(last):
            self.some_fit_at = self.free.version
            return False
        for shape in shapes:
            if shape is not last and self.free.any_node_fits(shape):
                self.some_fit_at, self.fit_shape = self.free.version, shape
                return False
        for shape in shapes:  # no placement of these needs trying again
            for strategy in Strategy:
                self.failed[(shape, id(strategy))] = 1
        return True

    def _consider(self, job: Job) -> bool:
        """Admit, hold room for, or explain ``job``; True if it was admitted."""
        demand = job.shape.times(job.min_workers)
        if not self.ledger.allows(job.tenant, demand):
            if self._preempt_for(job, quota_blocked=True):
                return self.config.instant_preemption
            self._wait(job, WaitCode.QUOTA, lambda: self.ledger.refusal(job.tenant, demand) or "")
            return False
        if self.stopping and job.id in self.stopping and self._await_victims(job, demand):
            return False
        placement = self._place(job)
        if placement is not None:
            self._admit(job, placement)
            return True
        if not self._fits(self.empty, job):
            self._too_large(job)
            return False
        if self._preempt_for(job, quota_blocked=False):
            return self.config.instant_preemption
        self._blocked(job)
        return False

    def _explain_settled(self, jobs: Iterator[Job]) -> None:
        """Once settled, with no reservation left to make, a job waits either on its
        tenant's quota or for a reason that depends only on its shape, size and rank:
        equal jobs of one class wait for the same reason, worked out once. (One loop
        over the rest of the queue, often most of it: kept lean.)"""
        queue, waiting, order = self.out.order, self.out.waiting, self.order
        reasons = self.settled_waits
        for job in jobs:
            queue.append(job.id)
            if self.reservations_left > 0 or (self.stopping and job.id in self.stopping):
                self._explain(job)
                reasons.clear()  # room held for a stopping job's preemptor
                self.capacity_waits.clear()
                continue
            if self.settled_rank != order.rank:  # a new class: its own reasons
                self.settled_rank = order.rank
                reasons.clear()
            key = (job.tenant, job.shape, id(job.strategy), job.min_workers)
            known = reasons.get(key)
            if known is None:
                known = reasons[key] = self._settled_reason(job)
            waiting[job.id] = known[0]
            if known[1]:  # its workers count toward the autoscaler request like the first's
                self.scale_bundles.append((job.shape, job.min_workers))

    def _settled_reason(self, job: Job) -> tuple[Wait, bool]:
        """Why ``job`` waits once settled, and whether it asks the autoscaler for nodes."""
        shape, workers = job.shape, job.min_workers
        quota_key = (job.tenant, shape, workers)
        refused = self.quota_waits.get(quota_key, _UNKNOWN)
        if refused is _UNKNOWN:
            demand = shape.times(workers)
            refusal = None if self.ledger.allows(job.tenant, demand) else self.ledger.refusal
            refused = self.quota_waits[quota_key] = (
                None if refusal is None else Wait(WaitCode.QUOTA, refusal(job.tenant, demand) or "")
            )
        if refused is not None:
            return refused, False
        key = (shape, id(job.strategy), workers, self.order.rank)
        known = self.capacity_waits.get(key)
        if known is None:
            asked = len(self.scale_bundles)
            self._explain_capacity(job)
            scaled = len(self.scale_bundles) > asked
            if scaled:
                self.scale_bundles.pop()  # the caller counts every job's workers, this one's too
            known = self.capacity_waits[key] = (self.out.waiting[job.id], scaled)
        return known

    def _explain(self, job: Job) -> None:
        """``_consider`` once nothing fits and no preemption is left: only the reasons
        (and reservations) remain to work out."""
        demand = job.shape.times(job.min_workers)
        if not self.ledger.allows(job.tenant, demand):
            self._wait(job, WaitCode.QUOTA, lambda: self.ledger.refusal(job.tenant, demand) or "")
        elif self.stopping and job.id in self.stopping and self._await_victims(job, demand):
            return
        else:
            self._explain_capacity(job)

    def _explain_capacity(self, job: Job) -> None:
        if not self._fits(self.empty, job):
            self._too_large(job)
        else:
            self._blocked(job)

    def _place(self, job: Job) -> dict[str, int] | None:
        key = (job.shape, id(job.strategy))
        failed = self.failed.get(key)
        if failed is not None and job.min_workers >= failed:
            return None
        placement = self.free.place(job.shape, job.min_workers, job.strategy)
        if placement is None:
            self.failed[key] = min(job.min_workers, failed or job.min_workers)
        return placement

    def _fits(self, cluster: FreeMap, job: Job) -> bool:
        key = (id(cluster), job.shape, id(job.strategy), job.min_workers)
        known = self.fits_cache.get(key)
        if known is None:
            known = cluster.place(job.shape, job.min_workers, job.strategy) is not None
            self.fits_cache[key] = known
        return known

    def _admit(self, job: Job, placement: dict[str, int]) -> None:
        self.free.take(job.shape, placement)
        self.unheld.take(job.shape, placement)
        self.ledger.add(job.tenant, job.shape.times(job.min_workers))
        self.placements[job.id] = placement
        self.out.admit.append(Admit(job.id, job.min_workers, placement))
        if job.elastic:
            self.admitted_elastic.append(job)

    def _wait(
        self, job: Job, code: WaitCode, message: Callable[[], str], blocker: str | None = None
    ) -> None:
        if code in _CAPACITY_WAITS:
            self.capacity_wait = True
        if self.config.explain:
            self.out.waiting[job.id] = Wait(code, message(), blocker)

    # -- jobs that do not fit ---------------------------------------------------------
    def _too_large(self, job: Job) -> None:
        need = f"{job.min_workers} x ({job.shape.describe()}) with {job.strategy}"
        if self.largest is not None and self._fits(self.largest, job):
            self.scale_bundles.append((job.shape, job.min_workers))
            self._wait(job, WaitCode.SCALE_UP, lambda: f"waiting for scale-up: needs {need}")
        elif not self.empty.any_node_fits(job.shape):
            self._wait(job, WaitCode.NO_NODE_FITS,
                       lambda: f"no node fits a worker ({job.shape.describe()})")  # fmt: skip
        else:
            self._wait(job, WaitCode.NO_NODE_FITS,
                       lambda: f"the cluster cannot hold {need} even when empty")  # fmt: skip

    def _blocked(self, job: Job) -> None:
        self.capacity_wait = True
        if self.can_grow and self.largest is not None and self._fits(self.largest, job):
            self.scale_bundles.append((job.shape, job.min_workers))
        rank = self.order.rank
        if self.first_blocked is None:
            self.first_blocked = (rank, job.id)
        if self.reservations_left > 0:
            self.reservations_left -= 1
            self._reserve(job)
        if not self.config.explain:
            return
        if self.can_grow:
            self._same_wait(job, (WaitCode.SCALE_UP,), lambda: Wait(
                WaitCode.SCALE_UP, "waiting for scale-up: the cluster is full"))  # fmt: skip
            return
        if self.holds and self.unheld.fits(job, self.free, self.holds):
            holder = self.holds[0][2]
            self._same_wait(job, (WaitCode.RESERVED, holder), lambda: Wait(
                WaitCode.RESERVED, f"capacity reserved for job {holder}", holder))  # fmt: skip
            return
        first_rank, first_id = self.first_blocked
        if first_rank > rank:
            message = f"behind higher-priority job {first_id}"
            self._same_wait(job, (WaitCode.HIGHER_PRIORITY, first_id), lambda: Wait(
                WaitCode.HIGHER_PRIORITY, message, first_id))  # fmt: skip
            return
        self._same_wait(job, (WaitCode.CAPACITY, job.shape, job.min_workers), lambda: Wait(
            WaitCode.CAPACITY, f"cluster full: needs {job.min_workers} x ({job.shape.describe()}); "
            "waiting for running jobs to finish"))  # fmt: skip

    def _same_wait(self, job: Job, key: tuple[object, ...], make: Callable[[], Wait]) -> None:
        """Record a capacity wait; equal reasons share one (immutable) Wait."""
        wait = self.wait_objects.get(key)
        if wait is None:
            wait = self.wait_objects[key] = make()
        self.out.waiting[job.id] = wait

    def _reserve(self, job: Job) -> None:
        """Hold the nodes that free up soonest for ``job``; others may use only the rest."""
        order = (-self.free.slots(job.shape)).argsort(kind="stable").tolist()
        whole = self.empty.slots(job.shape)
        placement: dict[str, int] = {}
        need = job.min_workers
        for i in order:
            slots = int(whole[i])
            if job.strategy is Strategy.STRICT_SPREAD:
                slots = min(slots, 1)
            if slots <= 0:
                continue
            take = min(slots, need)
            placement[self.empty.ids[i]] = take
            need -= take
            if need == 0 or job.strategy is Strategy.STRICT_PACK:
                break
        if need > 0:
            return
        self.free.take(job.shape, placement)
        self.failed.clear()
        self.holds.append((job.shape, placement, job.id))

    # -- preemption -------------------------------------------------------------------
    def _await_victims(self, job: Job, demand: Vector) -> bool:
        """Jobs already stopping for ``job``: hold their room for it while they stop."""
        trial = self.free.copy()
        victims = self.stopping[job.id]
        for victim in victims:
            trial.give(victim.shape, self.placements[victim.id])
        placement = trial.place(job.shape, job.min_workers, job.strategy)
        if placement is None:
            return False
        self._hold(job, placement, trial)
        self.ledger.add(job.tenant, demand)
        names = ", ".join(v.id for v in victims)
        self._wait(job, WaitCode.PREEMPTING, lambda: f"waiting for {names} to stop", victims[0].id)
        return True

    def _hold(self, job: Job, placement: dict[str, int], after_stops: FreeMap) -> None:
        after_stops.take(job.shape, placement)
        self.free.clamp_to(after_stops)
        self.failed.clear()
        self.holds.append((job.shape, placement, job.id))

    def _may_preempt(self, job: Job, quota_blocked: bool) -> bool:
        if self.shrinkable or self.lowest_priority < job.priority:
            return True
        if self.top_level.get(job.priority, -1) > self.order.level:
            return True
        return (
            not quota_blocked
            and bool(self.snap.tenants)
            and self.ledger.any_borrowing(exclude=job.tenant)
        )

    def _preempt_for(self, job: Job, *, quota_blocked: bool) -> bool:
        if self.attempts_left <= 0 or not self._may_preempt(job, quota_blocked):
            return False
        # Who may be stopped depends on the tenant only through its quota: jobs of
        # tenants over their nominal quota and not quota-blocked share one verdict.
        demand = job.shape.times(job.min_workers)
        tenant_matters = quota_blocked or self.ledger.within_nominal(job.tenant, demand)
        key = (job.shape, id(job.strategy), job.priority, self.order.level,
               job.tenant if tenant_matters else None, quota_blocked)  # fmt: skip
        if self.hopeless.get(key, 1 << 30) <= job.min_workers:
            return False
        self.attempts_left -= 1
        if self.pool is None:
            self.pool = preemption.VictimPool(
                self.snap.running, self.placements, self.levels, self.now
            )
        search = preemption.Search(
            job, self.order.level, self.ledger, self.config,
            quota_blocked=quota_blocked,
        )  # fmt: skip

        def quota_ok(own_freed: Vector) -> bool:
            self.ledger.remove(job.tenant, own_freed)
            ok = self.ledger.allows(job.tenant, demand)
            self.ledger.add(job.tenant, own_freed)
            return ok

        chosen = preemption.choose(search, self.pool, self.free, self.empty, quota_ok)
        if chosen is None:
            self.hopeless[key] = min(job.min_workers, self.hopeless.get(key, 1 << 30))
            return False
        victims, placement = chosen
        after_stops = self.free.copy()
        for victim in victims:
            self.gone.add(victim.job.id)
            self.pool.stop(victim)
            self.ledger.remove(victim.job.tenant, victim.freed)
            after_stops.give(victim.job.shape, victim.release)
            if victim.keep_workers:
                kept = dict(self.placements[victim.job.id])
                for node, count in victim.release.items():
                    kept[node] -= count
                kept = {node: count for node, count in kept.items() if count > 0}
                self.placements[victim.job.id] = kept
                self.out.resize.append(
                    Resize(victim.job.id, victim.keep_workers, kept, victim.reason, job.id)
                )
            else:
                self.out.preempt.append(Preempt(victim.job.id, job.id, victim.reason))
        if self.config.instant_preemption:
            self.free = after_stops
            self.unheld.forget()
            self.failed.clear()
            self._admit(job, placement)
            return True
        self._hold(job, placement, after_stops)
        self.ledger.add(job.tenant, demand)
        names = ", ".join(v.job.id for v in victims)
        self._wait(job, WaitCode.PREEMPTING, lambda: f"waiting for {names} to stop",
                   victims[0].job.id)  # fmt: skip
        return True

    # -- autoscaling ---------------------------------------------------------------------
    def _scale_request(self) -> list[dict[str, float]]:
        admitted = {a.job_id: a.workers for a in self.out.admit}
        groups = [(j.shape, sum(self.placements.get(j.id, {}).values())) for j in self.snap.running]
        groups += [(j.shape, admitted[j.id]) for j in self.snap.pending if j.id in admitted]
        groups += self.scale_bundles
        largest = self.largest.totals() if self.largest is not None else (0.0, 0.0, 0.0)
        return scale_request(groups, largest)
