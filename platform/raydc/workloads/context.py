"""Helpers a user's ``train_loop`` calls from inside a Ray Train worker.

A train loop stays plain PyTorch: it calls :func:`report` once per epoch with its
metrics and the state it wants to resume from, and :func:`load_state` once at the start.
Checkpoints land in the job's run storage; the last one becomes the model version.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import ray.train
import torch

from raydc.workloads.protocol import ENV_INITIAL_CHECKPOINT

STATE_FILE = "state.pt"


def world_rank() -> int:
    return int(ray.train.get_context().get_world_rank())


def world_size() -> int:
    return int(ray.train.get_context().get_world_size())


def load_state() -> dict[str, Any] | None:
    """The state saved by the latest checkpoint of this job, or None on a fresh start.

    After a failure, a resize or a preemption, Ray Train restarts the worker group and
    this returns what the last :func:`report` saved, so the loop continues from there.
    """
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        # A run that continues another one's work (a tune trial) starts from this.
        initial = os.environ.get(ENV_INITIAL_CHECKPOINT)
        return load_checkpoint_dir(initial) if initial else None
    with checkpoint.as_directory() as directory:
        return torch.load(Path(directory) / STATE_FILE, map_location="cpu", weights_only=False)


def report(metrics: dict[str, Any], state: dict[str, Any] | None = None) -> None:
    """Report metrics; with ``state``, rank 0 also writes a checkpoint of it.

    Every worker must call this the same number of times (Ray Train synchronises on it).
    """
    if state is None or world_rank() != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as directory:
        torch.save(state, Path(directory) / STATE_FILE)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))


def load_checkpoint_dir(path: str | Path) -> dict[str, Any]:
    """Load a saved state from a registered model version's checkpoint directory."""
    return torch.load(Path(path) / STATE_FILE, map_location="cpu", weights_only=False)
