"""How much of the cluster a job asks for: the currency of quotas and admission."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from raydc.specs.jobs import Resources


@dataclass(frozen=True)
class Demand:
    cpu: float = 0.0
    gpu: float = 0.0
    memory_gb: float = 0.0

    def __add__(self, other: Demand) -> Demand:
        return Demand(self.cpu + other.cpu, self.gpu + other.gpu, self.memory_gb + other.memory_gb)

    def __sub__(self, other: Demand) -> Demand:
        return Demand(self.cpu - other.cpu, self.gpu - other.gpu, self.memory_gb - other.memory_gb)

    def fits_in(self, capacity: Demand) -> bool:
        eps = 1e-9
        return (
            self.cpu <= capacity.cpu + eps
            and self.gpu <= capacity.gpu + eps
            and self.memory_gb <= capacity.memory_gb + eps
        )

    def as_dict(self) -> dict[str, float]:
        return {"cpu": self.cpu, "gpu": self.gpu, "memory_gb": self.memory_gb}


def worker_demand(resources: Resources) -> Demand:
    return Demand(
        resources.cpus_per_worker, resources.gpus_per_worker, resources.memory_gb_per_worker
    )


def job_demand(resources: Resources, workers: int) -> Demand:
    per_worker = worker_demand(resources)
    return Demand(
        per_worker.cpu * workers, per_worker.gpu * workers, per_worker.memory_gb * workers
    )


def worker_range(spec: Mapping[str, Any]) -> tuple[int, int]:
    """(min, max) workers of the spec's per-worker shape the scheduler sizes a job at.

    Reads a validated spec as stored (JSON), without pydantic: the scheduling pass calls
    it for every queued job. A train job has its own range; a tune job is one fixed-size
    job holding room for all its concurrent trials: max_concurrent_trials x trial workers.
    """
    workers = (spec.get("resources") or {}).get("workers", 1)
    low, high = (workers, workers) if isinstance(workers, int) else (workers["min"], workers["max"])
    if spec.get("kind") == "tune":
        total = int(spec.get("max_concurrent_trials", 1)) * high
        return total, total
    return low, high
