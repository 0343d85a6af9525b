"""A model deployment (``POST /v1/deployments``): which model version answers, on how many
replicas of what size, batched how, and optionally a canary taking a share of traffic."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, field_validator, model_validator

from raydc.specs.base import Amount, FiniteFloat, StrictInt, StrictModel
from raydc.specs.jobs import ENTRYPOINT_PATTERN, NAME_PATTERN

MODEL_REF_PATTERN = re.compile(r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(?::([1-9][0-9]*))?$")


def split_model_ref(ref: str) -> tuple[str, int | None]:
    """``name:3`` -> ("name", 3); ``name`` -> ("name", None) = the latest version."""
    match = MODEL_REF_PATTERN.match(ref)
    if match is None:
        raise ValueError("must be 'name' or 'name:version'")
    return match.group(1), int(match.group(3)) if match.group(3) else None


def _model_ref(value: str) -> str:
    split_model_ref(value)
    return value


ModelRef = Annotated[str, AfterValidator(_model_ref)]


class ReplicaResources(StrictModel):
    cpus_per_replica: Amount = 1.0
    gpus_per_replica: Amount = 0.0
    memory_gb_per_replica: Amount = 0.0


class Autoscaling(StrictModel):
    min_replicas: Annotated[StrictInt, Field(ge=0)] = Field(
        default=1, description="0 = scale to zero when idle"
    )
    max_replicas: Annotated[StrictInt, Field(ge=1, le=1000)] = 1
    target_ongoing_requests: FiniteFloat = Field(default=2.0, gt=0, le=1e6)
    upscale_delay_s: FiniteFloat = Field(default=5.0, ge=0, le=86_400)
    downscale_delay_s: FiniteFloat = Field(default=60.0, ge=0, le=86_400)

    @model_validator(mode="after")
    def _min_le_max(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) must not exceed max_replicas "
                f"({self.max_replicas})"
            )
        return self


class Batching(StrictModel):
    max_batch_size: Annotated[StrictInt, Field(ge=1, le=4096)] = Field(
        default=1, description="1 = no batching"
    )
    batch_wait_timeout_s: FiniteFloat = Field(default=0.01, ge=0, le=10)


class Canary(StrictModel):
    model: ModelRef = Field(description="the canary's version: 'name:version' or 'name' = latest")
    percent: FiniteFloat = Field(ge=0, le=100, description="share of requests it answers")


class DeploymentSpec(StrictModel):
    name: str = Field(pattern=NAME_PATTERN, description="lowercase letters, digits and '-'")
    model: ModelRef = Field(description="'name:version', or 'name' for its latest version")
    predictor: str | None = Field(
        default=None,
        description="module:Class of the app's predictor; default <app>.serve:Predictor",
    )
    resources: ReplicaResources = Field(default_factory=ReplicaResources)
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    batching: Batching = Field(default_factory=Batching)
    canary: Canary | None = None

    @field_validator("predictor")
    @classmethod
    def _predictor_shape(cls, value: str | None) -> str | None:
        if value is not None and not ENTRYPOINT_PATTERN.match(value):
            raise ValueError("must look like 'package.module:Class'")
        return value


class DeploymentPatch(StrictModel):
    """What ``PATCH /v1/deployments/{name}`` may change; absent fields stay as they are.
    ``canary: null`` removes the canary."""

    model: ModelRef | None = None
    autoscaling: Autoscaling | None = None
    batching: Batching | None = None
    canary: Canary | None = None
    resources: ReplicaResources | None = None
