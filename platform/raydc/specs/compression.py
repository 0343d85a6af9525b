"""The parts of a ``compress`` job spec: its steps and its accuracy gate.

A compress job takes a registered model version, runs ``steps`` in order (each one's
output is the next one's input), measures the result against the parent on the app's
held-out data, and registers it as the next version of the parent's model:

```yaml
steps:
  - {type: distill, student: {layers: 2}, temperature: 2.0, alpha: 0.5, epochs: 3}
  - {type: prune, method: unstructured, sparsity: 0.5, finetune_epochs: 1}
  - {type: quantize, method: dynamic}
gate: {max_accuracy_drop: 1.0, min_speedup: 1.5}
```
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictBool, ValidationInfo, field_validator

from raydc.specs.base import FiniteFloat, StrictInt, StrictModel
from raydc.specs.limits import check_plain_data

MODEL_REF_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(:[1-9][0-9]*)?$"


class QuantBackend(StrEnum):
    """torch's quantized CPU engines: x86 (the default on x86), fbgemm, qnnpack (ARM)."""

    X86 = "x86"
    FBGEMM = "fbgemm"
    QNNPACK = "qnnpack"


class QuantizeStep(StrictModel):
    """int8 weights. ``dynamic``: Linear weights int8, activations quantized per batch
    at run time (and, with ``embeddings``, embedding tables int8 weight-only).
    ``static``: activations' ranges fixed once from ``calibration_batches`` batches of
    the app's calibration data. ``smooth_alpha`` first moves activation outliers into
    the weights (either method; see raydc.workloads.compress_smooth)."""

    type: Literal["quantize"]
    method: Literal["dynamic", "static"] = "dynamic"
    backend: QuantBackend | None = Field(
        default=None, description="torch's quantized engine; default: the platform's own"
    )
    per_channel: StrictBool = Field(
        default=True, description="a scale per output channel (else one per layer; dynamic only)"
    )
    embeddings: StrictBool = Field(default=True, description="also quantize embedding tables")
    smooth_alpha: FiniteFloat | None = Field(
        default=None,
        gt=0,
        le=1,
        description=(
            "smooth activation outliers into the weights before int8 (SmoothQuant): "
            "each Linear input channel j is divided by s_j = max|x_j|^alpha / "
            "max|w_j|^(1-alpha), measured on calibration batches; unset: no smoothing"
        ),
    )
    calibration_batches: Annotated[StrictInt, Field(ge=1, le=1000)] = Field(
        default=8, description="for static int8 and for smoothing"
    )


class PruneStep(StrictModel):
    """Magnitude pruning, made permanent in the saved model.

    ``unstructured``: the smallest weights of all prunable layers together (global) are
    zeroed until ``sparsity`` of them are zero. ``structured`` removes the ``sparsity``
    fraction of whole units with the smallest weight norm, so the layers get smaller:
    ``target: neurons``, hidden neurons of the layer pairs the app names (a feed-forward
    block's inner width); ``target: heads``, attention heads of each attention block.
    ``finetune_epochs`` epochs on the app's training data then let the rest adapt.
    """

    type: Literal["prune"]
    method: Literal["unstructured", "structured"] = "unstructured"
    target: Literal["neurons", "heads"] | None = Field(
        default=None, description="structured only: what is removed (default neurons)"
    )
    sparsity: FiniteFloat = Field(gt=0, lt=1)
    finetune_epochs: Annotated[StrictInt, Field(ge=0, le=100)] = 0
    lr: FiniteFloat = Field(default=1e-4, gt=0, description="fine-tune learning rate")
    batch_size: Annotated[StrictInt, Field(ge=1, le=65_536)] = 32

    @field_validator("target")
    @classmethod
    def _target_is_structured(cls, target: str | None, info: ValidationInfo) -> str | None:
        # A method that failed its own check is reported there, not again here.
        if target is not None and info.data.get("method", "structured") != "structured":
            raise ValueError(f"{target!r} needs method: structured")
        return target


def _plain(value: dict[str, Any]) -> dict[str, Any]:
    check_plain_data(value)
    return value


class DistillStep(StrictModel):
    """Train a smaller student (the app builds it from ``student`` options) on the
    teacher's soft labels: loss = alpha * T^2 * KL(student/T || teacher/T)
    + (1 - alpha) * cross-entropy on the true labels. Runs as a Ray Train job on the
    spec's ``resources`` (workers, checkpoints each epoch, restarts on failure)."""

    type: Literal["distill"]
    student: Annotated[dict[str, Any], AfterValidator(_plain)] = Field(
        default_factory=dict, description="the app's student options"
    )
    temperature: FiniteFloat = Field(default=2.0, gt=0)
    alpha: FiniteFloat = Field(default=0.5, ge=0, le=1)
    epochs: Annotated[StrictInt, Field(ge=1, le=1000)] = 3
    lr: FiniteFloat = Field(default=1e-3, gt=0)
    batch_size: Annotated[StrictInt, Field(ge=1, le=65_536)] = 32
    seed: Annotated[StrictInt, Field(ge=0)] = 0


CompressStep = Annotated[QuantizeStep | PruneStep | DistillStep, Field(discriminator="type")]


class Gate(StrictModel):
    """When the compressed model is accepted. ``max_accuracy_drop`` is in points of the
    app's metric (accuracy 0.93 -> 0.92 is a drop of 1 point); ``min_speedup`` is the
    parent's batch-1 p50 latency over the child's."""

    max_accuracy_drop: FiniteFloat = Field(default=1.0, ge=0, le=100)
    min_speedup: FiniteFloat | None = Field(default=None, gt=0, le=1e6)


def check_steps(steps: list[Any]) -> list[Any]:
    """A quantized model is the end of the line: torch cannot prune or train int8 layers."""
    for index, step in enumerate(steps[:-1]):
        if isinstance(step, QuantizeStep):
            raise ValueError(
                f"steps[{index}]: quantize must be the last step (an int8 model cannot be "
                "pruned, distilled or quantized again)"
            )
    return steps
