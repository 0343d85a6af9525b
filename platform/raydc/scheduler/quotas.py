"""Tenant quotas with borrowing, and weighted dominant-resource fair shares.

Every tenant's nominal quota is guaranteed. Quota a tenant leaves idle may be borrowed by
the others, each up to its own borrowing limit, as long as all tenants together stay
within the sum of their nominal quotas (Kueue's cohort). A tenant whose usage is over its
nominal quota is borrowing, and a tenant under its own nominal quota may take borrowed
capacity back by preemption. A dimension with no nominal quota is unlimited: it neither
counts against the tenant nor lends to anyone.
"""

from __future__ import annotations

from collections.abc import Iterable

from raydc.scheduler.model import DIMENSIONS, Job, Shape, Tenant

EPS = 1e-9
Vector = tuple[float, float, float]
ZERO: Vector = (0.0, 0.0, 0.0)
_DEFAULT = Tenant(name="")


class Ledger:
    """Usage per tenant as jobs are admitted and stopped within one scheduling pass."""

    def __init__(
        self, tenants: dict[str, Tenant], running: Iterable[Job], cluster_total: Vector
    ) -> None:
        self.tenants = tenants
        self.usage: dict[str, list[float]] = {}
        self.cohort_nominal = [0.0, 0.0, 0.0]
        self.cohort_usage = [0.0, 0.0, 0.0]
        for tenant in tenants.values():
            for d in range(3):
                if tenant.nominal[d] is not None:
                    self.cohort_nominal[d] += tenant.nominal[d]  # type: ignore[operator]
        self.inverse_total = [1.0 / t if t > 0 else 0.0 for t in cluster_total]
        self._borrowers: set[str] | None = None  # cached until usage changes
        self.version = 0  # bumps on every change of usage
        # Answers asked for every pending job, remembered until usage changes.
        self._shares: dict[str, float] = {}
        self._borrows: dict[tuple[str, Shape, int], bool] = {}
        usage = self.usage
        for job in running:
            shape, workers = job.shape, job.workers
            mine = usage.get(job.tenant)
            if mine is None:
                mine = usage[job.tenant] = [0.0, 0.0, 0.0]
            mine[0] += shape.cpu * workers
            mine[1] += shape.gpu * workers
            mine[2] += shape.memory_gb * workers
        for name, mine in usage.items():
            nominal = self.tenant(name).nominal
            for d in range(3):
                if nominal[d] is not None:
                    self.cohort_usage[d] += mine[d]

    def tenant(self, name: str) -> Tenant:
        return self.tenants.get(name, _DEFAULT)

    def used(self, name: str) -> list[float]:
        usage = self.usage.get(name)
        if usage is None:
            usage = self.usage[name] = [0.0, 0.0, 0.0]
        return usage

    def add(self, name: str, demand: Vector, sign: float = 1.0) -> None:
        self._borrowers = None
        self.version += 1
        if self._shares:
            self._shares.clear()
        if self._borrows:
            self._borrows.clear()
        usage = self.used(name)
        nominal = self.tenant(name).nominal
        for d in range(3):
            usage[d] += sign * demand[d]
            if nominal[d] is not None:
                self.cohort_usage[d] += sign * demand[d]

    def remove(self, name: str, demand: Vector) -> None:
        self.add(name, demand, -1.0)

    def allows(self, name: str, demand: Vector) -> bool:
        """Whether tenant ``name`` may have ``demand`` more (``refusal`` says why not)."""
        tenant = self.tenants.get(name)
        if tenant is None:
            return True
        usage = self.usage.get(name)
        nominal, limits = tenant.nominal, tenant.borrowing_limit
        for d in range(3):
            quota, need = nominal[d], demand[d]
            if quota is None or need <= 0:
                continue
            after = (usage[d] if usage is not None else 0.0) + need
            if after <= quota + EPS:
                continue
            limit = limits[d]
            if limit is not None and after - quota > limit + EPS:
                return False
            if self.cohort_usage[d] + need > self.cohort_nominal[d] + EPS:
                return False
        return True

    def refusal(self, name: str, demand: Vector) -> str | None:
        """Why ``demand`` more for tenant ``name`` is over quota, or None if it is allowed."""
        tenant = self.tenant(name)
        usage = self.used(name)
        for d in range(3):
            nominal = tenant.nominal[d]
            if nominal is None or demand[d] <= 0:
                continue
            after = usage[d] + demand[d]
            if after <= nominal + EPS:
                continue
            dim = DIMENSIONS[d]
            limit = tenant.borrowing_limit[d]
            if limit is not None and after - nominal > limit + EPS:
                return (
                    f"tenant quota exhausted: {dim} would be {after:g} of nominal {nominal:g} "
                    f"plus borrowing limit {limit:g}"
                )
            if self.cohort_usage[d] + demand[d] > self.cohort_nominal[d] + EPS:
                idle = max(0.0, self.cohort_nominal[d] - self.cohort_usage[d])
                return (
                    f"tenant quota exhausted: {dim} would be {after:g} of nominal {nominal:g}, "
                    f"and other tenants have only {idle:g} idle to lend"
                )
        return None

    def within_nominal(self, name: str, demand: Vector) -> bool:
        """Whether the tenant stays inside its own nominal quota with ``demand`` more."""
        tenant = self.tenants.get(name)
        if tenant is None:
            return True
        usage = self.usage.get(name) or (0.0, 0.0, 0.0)
        nominal = tenant.nominal
        for d in range(3):
            quota = nominal[d]
            if quota is not None and usage[d] + demand[d] > quota + EPS:
                return False
        return True

    def borrowing(self, name: str) -> bool:
        tenant = self.tenant(name)
        usage = self.used(name)
        return any(
            tenant.nominal[d] is not None and usage[d] > tenant.nominal[d] + EPS  # type: ignore[operator]
            for d in range(3)
        )

    def any_borrowing(self, exclude: str) -> bool:
        if self._borrowers is None:
            self._borrowers = {name for name in self.usage if self.borrowing(name)}
        return bool(self._borrowers - {exclude})

    def borrowing_after(self, name: str, removed: Vector) -> bool:
        """Whether the tenant still borrows once ``removed`` has been taken away."""
        tenant = self.tenant(name)
        usage = self.used(name)
        return any(
            tenant.nominal[d] is not None and usage[d] - removed[d] > tenant.nominal[d] + EPS  # type: ignore[operator]
            for d in range(3)
        )

    def share(self, name: str) -> float:
        """Weighted dominant share: the tenant's largest fraction of any resource / weight."""
        known = self._shares.get(name)
        if known is not None:
            return known
        usage = self.usage.get(name)
        if usage is None:
            known = 0.0
        else:
            inv = self.inverse_total
            dominant = max(usage[0] * inv[0], usage[1] * inv[1], usage[2] * inv[2])
            known = dominant / self.tenant(name).weight
        self._shares[name] = known
        return known

    def would_borrow(self, name: str, shape: Shape, workers: int) -> bool:
        """Whether ``workers`` more of ``shape`` take the tenant beyond its nominal quota."""
        key = (name, shape, workers)
        known = self._borrows.get(key)
        if known is None:
            known = self._borrows[key] = not self.within_nominal(name, shape.times(workers))
        return known
