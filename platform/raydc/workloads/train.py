"""The train harness: a TorchTrainer built from a raydc train spec."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from raydc.specs.jobs import Resources, TrainSpec
from raydc.workloads.entrypoints import resolve_entrypoint
from raydc.workloads.run_events import RunEvents

log = logging.getLogger(__name__)
_BYTES_PER_GB = 1024**3


def scaling_config(resources: Resources, workers: int | None = None) -> ScalingConfig:
    """Ray's scaling config: ``workers`` as the scheduler sized the run, else the spec's."""
    per_worker: dict[str, float] = {"CPU": resources.cpus_per_worker, **resources.custom}
    if resources.gpus_per_worker > 0:
        per_worker["GPU"] = resources.gpus_per_worker
    if resources.memory_gb_per_worker > 0:
        per_worker["memory"] = resources.memory_gb_per_worker * _BYTES_PER_GB
    size: int | tuple[int, int]
    if workers is not None:
        # raydc's scheduler owns the size: Ray must not grow the group onto capacity
        # the scheduler gave to another job. An elastic job may still shrink to its
        # minimum when a node is lost (Train restarts the group at the size that fits),
        # and grow back up to the scheduler's size when capacity returns.
        admitted = max(resources.min_workers, min(resources.max_workers, workers))
        elastic = resources.is_elastic and resources.min_workers < admitted
        size = (resources.min_workers, admitted) if elastic else admitted
    elif resources.is_elastic:
        size = (resources.min_workers, resources.max_workers)
    else:
        size = resources.min_workers
    return ScalingConfig(
        # Train V2 takes (min, max) for an elastic group; mypy sees V1's signature.
        num_workers=size,  # type: ignore[arg-type]
        use_gpu=resources.gpus_per_worker > 0,
        resources_per_worker=per_worker,
        placement_strategy=resources.placement.value,
    )


def build_trainer(
    spec: TrainSpec,
    job_id: str,
    runs_dir: Path,
    workers: int | None = None,
    progress: Path | None = None,
) -> TorchTrainer:
    train_loop = resolve_entrypoint(spec.entrypoint)
    return TorchTrainer(
        train_loop_per_worker=train_loop,
        train_loop_config=dict(spec.config),
        scaling_config=scaling_config(spec.resources, workers),
        run_config=RunConfig(
            # The job id names the run: a retried or requeued job finds its own
            # checkpoints under this name and resumes from the latest one.
            name=job_id,
            storage_path=str(runs_dir),
            failure_config=FailureConfig(max_failures=spec.max_retries),
            checkpoint_config=CheckpointConfig(num_to_keep=spec.checkpoint.num_to_keep),
            # Train V2's UserCallback; mypy sees V1's RunConfig.
            callbacks=[RunEvents(progress)] if progress is not None else None,  # type: ignore[list-item]
        ),
    )


def run_train(
    spec: TrainSpec,
    job_id: str,
    runs_dir: Path,
    workers: int | None = None,
    progress: Path | None = None,
) -> dict[str, Any]:
    trainer = build_trainer(spec, job_id, runs_dir, workers, progress)
    result = trainer.fit()
    checkpoint = result.checkpoint
    return {
        "metrics": dict(result.metrics or {}),
        "checkpoint_path": checkpoint.path if checkpoint is not None else None,
    }
