"""The job spec users submit (YAML or JSON): one shape per kind, discriminated by ``kind``."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)

from raydc.specs.base import MAX_AMOUNT, Amount, FiniteFloat, StrictInt, StrictModel
from raydc.specs.compression import MODEL_REF_PATTERN, CompressStep, Gate, check_steps
from raydc.specs.limits import MAX_DEPTH, check_plain_data
from raydc.specs.tuning import (
    AshaScheduler,
    Distribution,
    FifoScheduler,
    PbtScheduler,
    SchedulerSpec,
    SearchAlgorithm,
)

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
ENTRYPOINT_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
CODE_REF_PATTERN = r"^sha256:[0-9a-f]{64}$"
# Variables raydc itself sets for a job (workloads/protocol.py) and Ray's own: a job
# must not override the platform's protocol.
RESERVED_ENV_PREFIXES = ("RAYDC_", "RAY_")
MAX_ENV_VARS = 256
MAX_ENV_VALUE_CHARS = 32 * 1024


def _not_reserved(name: str) -> str:
    if name.upper().startswith(RESERVED_ENV_PREFIXES):
        raise ValueError(f"{name!r}: names starting with RAYDC_ or RAY_ are raydc's and Ray's")
    return name


EnvName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=128),
    AfterValidator(_not_reserved),
]
EnvValue = Annotated[str, StringConstraints(max_length=MAX_ENV_VALUE_CHARS, pattern=r"^[^\x00]*$")]


def bounded_data(value: dict[str, Any]) -> dict[str, Any]:
    """Free-form data (``config``) is stored and echoed: small, plain JSON data only."""
    check_plain_data(value, max_depth=MAX_DEPTH - 1)  # one level down in the body
    return value


FreeForm = Annotated[dict[str, Any], AfterValidator(bounded_data)]


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Higher runs first."""
        return _PRIORITY_RANK[self]


_PRIORITY_RANK = {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2, Priority.CRITICAL: 3}


class WorkerRange(StrictModel):
    min: Annotated[StrictInt, Field(ge=1)]
    max: Annotated[StrictInt, Field(ge=1)]

    @model_validator(mode="after")
    def _min_le_max(self) -> WorkerRange:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


class PlacementStrategy(StrEnum):
    """How a job's workers spread over nodes: Ray's placement group strategies."""

    PACK = "PACK"  # as few nodes as possible
    SPREAD = "SPREAD"  # over as many nodes as possible, several per node if need be
    STRICT_PACK = "STRICT_PACK"  # all on one node
    STRICT_SPREAD = "STRICT_SPREAD"  # each on a different node


class Resources(StrictModel):
    workers: StrictInt | WorkerRange = Field(
        default=1, description="a count, or {min, max} (elastic)"
    )
    placement: PlacementStrategy = PlacementStrategy.PACK
    cpus_per_worker: Amount = 1.0
    gpus_per_worker: Amount = 0.0
    memory_gb_per_worker: Amount = 0.0
    custom: dict[str, FiniteFloat] = Field(
        default_factory=dict, max_length=64, description="custom Ray resources"
    )

    @field_validator("workers")
    @classmethod
    def _positive_workers(cls, value: int | WorkerRange) -> int | WorkerRange:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be at least 1")
        return value

    @field_validator("custom")
    @classmethod
    def _non_negative_custom(cls, value: dict[str, float]) -> dict[str, float]:
        for name, amount in value.items():
            if amount < 0:
                raise ValueError(f"{name} must not be negative")
            if amount > MAX_AMOUNT:
                raise ValueError(f"{name} must be at most {MAX_AMOUNT:g}")
        return value

    @property
    def min_workers(self) -> int:
        return self.workers if isinstance(self.workers, int) else self.workers.min

    @property
    def max_workers(self) -> int:
        return self.workers if isinstance(self.workers, int) else self.workers.max

    @property
    def is_elastic(self) -> bool:
        return isinstance(self.workers, WorkerRange) and self.workers.min != self.workers.max


class CodeSource(StrictModel):
    """Exactly one of: a bundled app from apps/, or an uploaded bundle from POST /v1/code."""

    app: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    ref: str | None = Field(default=None, pattern=CODE_REF_PATTERN)

    @model_validator(mode="after")
    def _exactly_one(self) -> CodeSource:
        if (self.app is None) == (self.ref is None):
            raise ValueError("give exactly one of 'app' or 'ref'")
        return self


class CheckpointSpec(StrictModel):
    num_to_keep: Annotated[StrictInt, Field(ge=1, le=1000)] = 2


class JobSpecBase(StrictModel):
    name: str = Field(pattern=NAME_PATTERN, description="lowercase letters, digits and '-'")
    code: CodeSource
    entrypoint: str = Field(description="module.path:function inside the code")
    config: FreeForm = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    priority: Priority = Priority.NORMAL
    max_retries: Annotated[StrictInt, Field(ge=0, le=100)] = 2
    env: dict[EnvName, EnvValue] = Field(
        default_factory=dict, max_length=MAX_ENV_VARS, description="extra environment variables"
    )

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint_shape(cls, value: str) -> str:
        if not ENTRYPOINT_PATTERN.match(value):
            raise ValueError("must look like 'package.module:function'")
        return value


class TrainSpec(JobSpecBase):
    kind: Literal["train"]
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec)


class TrialResources(Resources):
    """What one trial of a tune job runs on: a Ray Train run of a fixed size."""

    @field_validator("workers")
    @classmethod
    def _fixed_size(cls, value: int | WorkerRange) -> int | WorkerRange:
        # The scheduler holds max_concurrent_trials x workers for the whole search, and
        # Tune packs trials into exactly that: a trial cannot grow into more.
        if isinstance(value, WorkerRange) and value.min != value.max:
            raise ValueError("a tune trial runs at a fixed size: give a count, not a range")
        return value


class TuneSpec(JobSpecBase):
    """A hyperparameter search over the train loop ``entrypoint``: each trial runs it as a
    Ray Train run of ``resources``, with ``config`` updated by the trial's sample of
    ``search_space``; at most ``max_concurrent_trials`` trials run at once."""

    kind: Literal["tune"]
    resources: TrialResources = Field(default_factory=TrialResources)
    metric: str = Field(min_length=1, description="the reported metric the search optimizes")
    mode: Literal["max", "min"]
    # Field order matters: each validator below reads the fields declared before it.
    search: SearchAlgorithm = SearchAlgorithm.RANDOM
    search_space: dict[str, Distribution] = Field(min_length=1)
    scheduler: SchedulerSpec = Field(default_factory=lambda: FifoScheduler(type="fifo"))
    num_samples: Annotated[StrictInt, Field(ge=1, le=10_000)] = Field(
        default=1, description="trials (x the grid size)"
    )
    max_concurrent_trials: Annotated[StrictInt, Field(ge=1, le=1_000)] = 1
    time_budget_s: FiniteFloat | None = Field(
        default=None, gt=0, description="then stop every trial"
    )
    seed: StrictInt | None = Field(
        default=None, ge=0, description="the search's random seed: the same seed, the same trials"
    )
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec, description="per trial")

    @field_validator("search_space")
    @classmethod
    def _searchable(cls, value: dict[str, Distribution], info: ValidationInfo) -> Any:
        search = info.data.get("search")
        for key, distribution in value.items():
            if search is SearchAlgorithm.OPTUNA and distribution.grid is not None:
                raise ValueError(f"'{key}': optuna cannot search a grid; use choice")
            if search is SearchAlgorithm.GRID and distribution.grid is None:
                raise ValueError(f"'{key}': search 'grid' needs every key to be a grid")
        return value

    @field_validator("scheduler")
    @classmethod
    def _schedulable(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, PbtScheduler) and info.data.get("search") not in (
            None, SearchAlgorithm.RANDOM,
        ):  # fmt: skip
            raise ValueError("pbt explores by mutating its population: use search 'random'")
        if isinstance(value, AshaScheduler) and value.max_t is None:
            epochs = (info.data.get("config") or {}).get("epochs")
            searched = "epochs" in (info.data.get("search_space") or {})
            if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1 or searched:
                raise ValueError(
                    "asha needs max_t (iterations a trial runs at most): config has no fixed "
                    "integer 'epochs' to take it from"
                )
            return value.model_copy(update={"max_t": epochs})
        return value

    @property
    def total_workers(self) -> int:
        """Workers the whole search holds: every concurrent trial at its size."""
        return self.max_concurrent_trials * self.resources.min_workers


class CompressSpec(JobSpecBase):
    """Compress a registered version of one of the tenant's models (see
    ``specs.compression``). ``entrypoint`` names the app's compression interface
    (``intent.compress:Compression``), called with ``config``; the child is registered
    as the next version of the parent's model. ``resources`` size a distill step's
    Ray Train run; every other step runs in one worker of that size."""

    kind: Literal["compress"]
    model: str = Field(
        pattern=MODEL_REF_PATTERN, description="name:version, or name for its latest version"
    )
    steps: list[CompressStep] = Field(min_length=1, max_length=16)
    gate: Gate = Field(default_factory=Gate)
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec, description="distill")

    @field_validator("steps")
    @classmethod
    def _quantize_last(cls, value: list[Any]) -> list[Any]:
        return check_steps(value)


AnyJobSpec = TrainSpec | TuneSpec | CompressSpec
JobSpec = Annotated[AnyJobSpec, Field(discriminator="kind")]
JOB_SPEC_ADAPTER: TypeAdapter[AnyJobSpec] = TypeAdapter(JobSpec)
JOB_KINDS = ("train", "tune", "compress")


def parse_job_spec(data: Any) -> AnyJobSpec:
    """Validate a decoded spec; raises pydantic.ValidationError naming each bad field."""
    return JOB_SPEC_ADAPTER.validate_python(data)
