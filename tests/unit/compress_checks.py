"""Checks every app's compression interface passes, given a trained checkpoint: int8
serves through the app's predictor, a student is smaller and learns from its teacher,
structured pruning shrinks the model and it still evaluates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from raydc.specs.compression import DistillStep, PruneStep, QuantizeStep
from raydc.workloads.compress_distill import distill_loss
from raydc.workloads.compress_measure import count_params
from raydc.workloads.compress_ops import Compressible, quantize, save_compressed
from raydc.workloads.compress_prune import prune_model


def quantized_version_serves(
    app: Compressible, parent_dir: str, out: Path, predictor: Any, inputs: list[Any],
    max_drop: float,
) -> list[Any]:  # fmt: skip
    """int8 of the parent, within ``max_drop`` of its metric, saved as a version the
    app's predictor loads; returns its predictions of ``inputs``."""
    parent = app.load(parent_dir)
    child = quantize(app.load(parent_dir), QuantizeStep(type="quantize"), [])
    assert app.evaluate(child) >= app.evaluate(parent) - max_drop
    meta = {"quantized_engine": torch.backends.quantized.engine}
    save_compressed(out, child, meta, app.metadata(parent_dir))
    answers = predictor(str(out)).predict(inputs)
    assert len(answers) == len(inputs)
    return answers  # type: ignore[no-any-return]


def student_learns(
    app: Compressible, parent_dir: str, options: dict[str, Any], epochs: int, batch_size: int = 64
) -> tuple[nn.Module, float]:
    """A student of ``options``, smaller than the teacher, distilled for ``epochs``
    in-process (as each Ray Train worker does); returns it and its metric."""
    teacher = app.load(parent_dir)
    torch.manual_seed(0)
    student = app.student(teacher, options)
    assert count_params(student) < count_params(teacher)
    step = DistillStep(type="distill", student=options, epochs=epochs, lr=0.01)
    optimizer = torch.optim.AdamW(student.parameters(), lr=step.lr)
    for epoch in range(1, epochs + 1):
        student.train()
        for inputs, labels in app.train_batches(batch_size, seed=epoch, rank=0, world=1):
            with torch.no_grad():
                soft = teacher(*inputs)
            optimizer.zero_grad()
            distill_loss(student(*inputs), soft, labels, step).backward()
            optimizer.step()
    student.eval()
    return student, app.evaluate(student)


def structured_pruning_shrinks(
    app: Compressible, parent_dir: str, batch_size: int = 32
) -> nn.Module:
    parent = app.load(parent_dir)
    step = PruneStep(type="prune", method="structured", sparsity=0.5, finetune_epochs=1, lr=1e-3,
                     batch_size=batch_size)  # fmt: skip
    child = prune_model(app.load(parent_dir), step, app)
    assert count_params(child) < count_params(parent)
    assert app.evaluate(child) >= 0.5 * app.evaluate(parent)
    return child
