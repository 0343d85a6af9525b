"""Choosing what to stop so a blocked job fits: the cheapest set that is enough.

Who may be stopped for job J (never a job already stopping):
- an elastic job of J's priority or lower, shrunk toward its minimum — always tried
  before any job is stopped outright;
- a job of lower priority than J;
- a job of a tenant that is borrowing beyond its nominal quota, when J's tenant is
  within its own nominal quota (reclaim); the lender takes back only what was lent;
- a job of J's priority that has received more service (a higher Tiresias level) and
  has run at least ``min_run_s`` (time sharing).
A job blocked by its own tenant's quota may only stop its own tenant's jobs.
Victims are taken cheapest first — shrinks, then the fewest GPUs, then the most recent
checkpoint — until J fits on real nodes; then any victim J can do without is spared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from raydc.scheduler.model import Job, PolicyConfig
from raydc.scheduler.placement import EPS, FreeMap
from raydc.scheduler.quotas import Ledger, Vector


@dataclass(slots=True)
class Victim:
    job: Job
    keep_workers: int  # 0: stopped; otherwise shrunk to this many workers
    release: dict[str, int]  # node id -> workers freed there
    reason: str
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


def candidates(
    job: Job,
    running: list[Job],
    placements: dict[str, dict[str, int]],
    levels: dict[str, int],
    ledger: Ledger,
    now: float,
    config: PolicyConfig,
    *,
    quota_blocked: bool,
    exclude: set[str],
) -> list[Victim]:
    level = levels[job.id]
    demand = job.shape.times(job.min_workers)
    reclaiming = not quota_blocked and ledger.within_nominal(job.tenant, demand)
    found: list[tuple[tuple[float, ...], Victim]] = []
    for other in running:
        if other.stopping_for is not None or other.id in exclude:
            continue
        placement = placements[other.id]
        own = other.tenant == job.tenant
        if quota_blocked and not own:
            continue
        since_checkpoint = now - (other.last_checkpoint_at or other.started_at or now)
        if other.elastic and other.workers > other.min_workers and other.priority <= job.priority:
            release = _shrink_release(other, placement)
            gpus = other.shape.gpu * sum(release.values())
            victim = Victim(other, other.min_workers, release, f"shrunk for job {job.id}")
            found.append(((0, gpus, since_checkpoint), victim))
            continue
        reason = None
        reclaim = False
        if other.priority < job.priority:
            reason = f"preempted by higher-priority job {job.id}"
        elif reclaiming and not own and ledger.borrowing(other.tenant):
            reason = f"tenant {job.tenant} reclaimed the quota tenant {other.tenant} borrowed"
            reclaim = True
        elif (
            other.priority == job.priority
            and levels.get(other.id, 0) > level
            and other.started_at is not None
            and now - other.started_at >= config.min_run_s
        ):
            reason = f"time-shared with job {job.id}, which has had less service"
        if reason is None:
            continue
        gpus = other.shape.gpu * other.workers
        victim = Victim(other, 0, dict(placement), reason, reclaim)
        found.append(((1, gpus, other.priority, since_checkpoint), victim))
    found.sort(key=lambda item: item[0])
    return [victim for _, victim in found]


def choose(
    job: Job,
    options: list[Victim],
    free: FreeMap,
    ledger: Ledger,
    quota_ok: Callable[[Vector], bool],
) -> tuple[list[Victim], dict[str, int]] | None:
    """The victims to stop and where ``job`` then goes, or None if no set is enough."""
    need = job.shape.times(job.min_workers)
    trial = free.copy()
    have = [sum(max(0.0, x) for x in column) for column in (trial.cpu, trial.gpu, trial.mem)]
    chosen: list[Victim] = []
    removed: dict[str, list[float]] = {}
    own = [0.0, 0.0, 0.0]
    placement = None
    for victim in options:
        tenant = victim.job.tenant
        gone = removed.setdefault(tenant, [0.0, 0.0, 0.0])
        if victim.reclaim and not ledger.borrowing_after(tenant, (gone[0], gone[1], gone[2])):
            continue  # the lender has what it lent back already
        freed = victim.freed
        trial.give(victim.job.shape, victim.release)
        chosen.append(victim)
        for d in range(3):
            have[d] += freed[d]
            gone[d] += freed[d]
            if tenant == job.tenant:
                own[d] += freed[d]
        if all(have[d] + EPS >= need[d] for d in range(3)) and quota_ok((own[0], own[1], own[2])):
            placement = trial.place(job.shape, job.min_workers, job.strategy)
            if placement is not None:
                break
    if placement is None:
        return None
    for victim in reversed(chosen[:-1]):  # spare every victim the job can do without
        trial.take(victim.job.shape, victim.release)
        freed = victim.freed if victim.job.tenant == job.tenant else (0.0, 0.0, 0.0)
        without = (own[0] - freed[0], own[1] - freed[1], own[2] - freed[2])
        retry = trial.place(job.shape, job.min_workers, job.strategy) if quota_ok(without) else None
        if retry is None:
            trial.give(victim.job.shape, victim.release)
            continue
        chosen.remove(victim)
        own = list(without)
        placement = retry
    return chosen, placement
