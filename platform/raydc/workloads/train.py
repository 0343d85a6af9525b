"""The train harness: a TorchTrainer built from a raydc train spec."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from raydc.specs.jobs import Resources, TrainSpec
from raydc.workloads.entrypoints import resolve_entrypoint

log = logging.getLogger(__name__)
_BYTES_PER_GB = 1024**3


def scaling_config(resources: Resources) -> ScalingConfig:
    per_worker: dict[str, float] = {"CPU": resources.cpus_per_worker, **resources.custom}
    if resources.gpus_per_worker > 0:
        per_worker["GPU"] = resources.gpus_per_worker
    if resources.memory_gb_per_worker > 0:
        per_worker["memory"] = resources.memory_gb_per_worker * _BYTES_PER_GB
    workers: int | tuple[int, int] = (
        (resources.min_workers, resources.max_workers)
        if resources.is_elastic
        else resources.min_workers
    )
    return ScalingConfig(
        # Train V2 takes (min, max) for an elastic group; mypy sees V1's signature.
        num_workers=workers,  # type: ignore[arg-type]
        use_gpu=resources.gpus_per_worker > 0,
        resources_per_worker=per_worker,
    )


def build_trainer(spec: TrainSpec, job_id: str, runs_dir: Path) -> TorchTrainer:
    train_loop = resolve_entrypoint(spec.entrypoint)
    return TorchTrainer(
        train_loop_per_worker=train_loop,
        train_loop_config=dict(spec.config),
        scaling_config=scaling_config(spec.resources),
        run_config=RunConfig(
            # The job id names the run: a retried or requeued job finds its own
            # checkpoints under this name and resumes from the latest one.
            name=job_id,
            storage_path=str(runs_dir),
            failure_config=FailureConfig(max_failures=spec.max_retries),
            checkpoint_config=CheckpointConfig(num_to_keep=spec.checkpoint.num_to_keep),
        ),
    )


def run_train(spec: TrainSpec, job_id: str, runs_dir: Path) -> dict[str, Any]:
    trainer = build_trainer(spec, job_id, runs_dir)
    result = trainer.fit()
    checkpoint = result.checkpoint
    return {
        "metrics": dict(result.metrics or {}),
        "checkpoint_path": checkpoint.path if checkpoint is not None else None,
    }
