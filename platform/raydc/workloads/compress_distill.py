"""A distill step as a Ray Train run: the student learns from the teacher's soft labels.

Each worker loads the teacher, builds the student the app defines, and trains it on its
shard of the app's training data; DDP averages the gradients. One checkpoint per epoch
(the student's weights and optimizer): after a worker failure or a control-plane
requeue, the run resumes from the latest one, as a ``train`` job does. When the last
epoch is done, rank 0 writes the student in the compressed-model form.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from ray.train import CheckpointConfig, FailureConfig, RunConfig
from ray.train.torch import TorchTrainer, prepare_model
from torch.nn import functional as F

from raydc.specs.compression import DistillStep
from raydc.specs.jobs import CompressSpec
from raydc.workloads.compress_ops import Compressible, save_compressed, task_loss
from raydc.workloads.context import load_state, report, world_rank, world_size
from raydc.workloads.entrypoints import resolve_entrypoint
from raydc.workloads.loops import unwrap
from raydc.workloads.train import scaling_config


def distill_loss(
    student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, step: DistillStep
) -> torch.Tensor:
    """alpha * T^2 * KL(teacher || student at temperature T) + (1 - alpha) * task loss.

    Logits of shape (batch, classes) are softmaxed; one logit per example (a binary
    score, as a recommender's) is a Bernoulli: the KL becomes binary cross-entropy
    against the teacher's probability.
    """
    t = step.temperature
    if student.dim() == 1:
        soft = F.binary_cross_entropy_with_logits(student / t, torch.sigmoid(teacher / t))
        soft = soft - F.binary_cross_entropy_with_logits(teacher / t, torch.sigmoid(teacher / t))
    else:
        soft = F.kl_div(
            F.log_softmax(student / t, dim=-1), F.log_softmax(teacher / t, dim=-1),
            reduction="batchmean", log_target=True,
        )  # fmt: skip
    return step.alpha * soft * (t * t) + (1 - step.alpha) * task_loss(student, labels)


def load_app(entrypoint: str, config: dict[str, Any]) -> Compressible:
    factory = resolve_entrypoint(entrypoint)
    app: Compressible = factory(config)
    return app


def distill_loop(config: dict[str, Any]) -> None:
    """Ray Train's per-worker loop; ``config`` from :func:`build_distill_trainer`."""
    step = DistillStep.model_validate(config["step"])
    app = load_app(config["entrypoint"], config["app_config"])
    teacher = app.load(config["teacher_dir"]).eval()
    torch.manual_seed(step.seed)
    student = app.student(teacher, step.student)
    student.requires_grad_(True)
    state = load_state()
    if state is not None:
        student.load_state_dict(state["model"])
    model = prepare_model(student)
    optimizer = torch.optim.AdamW(model.parameters(), lr=step.lr)
    start = 1
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        start = state["epoch"] + 1
    rank, size = world_rank(), world_size()
    for epoch in range(start, step.epochs + 1):
        model.train()
        total, batches = 0.0, 0
        for inputs, labels in app.train_batches(step.batch_size, step.seed + epoch, rank, size):
            with torch.no_grad():
                soft = teacher(*inputs)
            optimizer.zero_grad()
            loss = distill_loss(model(*inputs), soft, labels, step)
            loss.backward()
            optimizer.step()
            total, batches = total + float(loss), batches + 1
        plain = unwrap(model).eval()
        with torch.inference_mode():
            metric = float(app.evaluate(plain))
        state = {
            "model": {k: v.cpu() for k, v in plain.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "epoch": epoch,
        }
        report({"epoch": epoch, "loss": total / max(1, batches), app.metric_name: metric}, state)
    if rank == 0 and not Path(config["out_dir"]).exists():
        student = unwrap(model).eval().requires_grad_(False)
        meta = {"steps": config["steps_so_far"], "distill": {"epochs": step.epochs}}
        save_compressed(Path(config["out_dir"]), student, meta, app.metadata(config["teacher_dir"]))


def build_distill_trainer(
    spec: CompressSpec,
    step: DistillStep,
    job_id: str,
    index: int,
    runs_dir: Path,
    teacher_dir: str,
    out_dir: Path,
    steps_so_far: list[dict[str, Any]],
    workers: int | None,
) -> TorchTrainer:
    return TorchTrainer(
        train_loop_per_worker=distill_loop,
        train_loop_config={
            "step": step.model_dump(mode="json"),
            "entrypoint": spec.entrypoint,
            "app_config": dict(spec.config),
            "teacher_dir": teacher_dir,
            "out_dir": str(out_dir),
            "steps_so_far": steps_so_far,
        },
        scaling_config=scaling_config(spec.resources, workers),
        run_config=RunConfig(
            # Named per job and step: a retried job resumes the same step's checkpoints.
            name=f"{job_id}-distill-{index}",
            storage_path=str(runs_dir),
            failure_config=FailureConfig(max_failures=spec.max_retries),
            checkpoint_config=CheckpointConfig(num_to_keep=spec.checkpoint.num_to_keep),
        ),
    )
