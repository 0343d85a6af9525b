"""The parts of a ``tune`` job spec that describe the search: distributions, schedulers.

A search space maps a config key to exactly one distribution, written as a one-key map:

```yaml
lr: {loguniform: [0.001, 0.05]}     # lo > 0; sampled uniformly in log space
dropout: {uniform: [0.0, 0.3]}
layers: {randint: [1, 4]}           # integers lo..hi, both ends included
hidden_dim: {choice: [32, 64, 128]} # one of the values, sampled
optimizer: {grid: [adam, sgd]}      # every value, crossed with the other grid keys
```
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from raydc.specs.base import FiniteFloat, StrictInt, StrictModel

MAX_VALUES = 10_000  # of one choice or grid


class Distribution(StrictModel):
    """Exactly one of the keys below."""

    uniform: tuple[FiniteFloat, FiniteFloat] | None = None
    loguniform: tuple[FiniteFloat, FiniteFloat] | None = None
    randint: tuple[StrictInt, StrictInt] | None = None
    choice: list[Any] | None = Field(default=None, min_length=1, max_length=MAX_VALUES)
    grid: list[Any] | None = Field(default=None, min_length=1, max_length=MAX_VALUES)

    @model_validator(mode="after")
    def _exactly_one(self) -> Distribution:
        given = [name for name in DISTRIBUTIONS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(DISTRIBUTIONS)}")
        for name in ("uniform", "loguniform", "randint"):
            bounds = getattr(self, name)
            if bounds is not None and not bounds[0] < bounds[1]:
                raise ValueError(f"{name}: lo ({bounds[0]}) must be less than hi ({bounds[1]})")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError(f"loguniform: lo ({self.loguniform[0]}) must be greater than 0")
        return self

    @model_serializer(mode="wrap")
    def _only_the_given_one(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {name: value for name, value in handler(self).items() if value is not None}

    @property
    def kind(self) -> str:
        return next(name for name in DISTRIBUTIONS if getattr(self, name) is not None)


DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice", "grid")


class SearchAlgorithm(StrEnum):
    # Tune's BasicVariantGenerator: samples each key; `grid` keys are crossed exhaustively.
    RANDOM = "random"
    # The same generator, every key a `grid`: the full cross product, num_samples times.
    GRID = "grid"
    # OptunaSearch (TPE): proposes each trial from the results so far; no `grid` keys.
    OPTUNA = "optuna"


class AshaScheduler(StrictModel):
    """Asynchronous successive halving: stops a trial whose metric is in the bottom
    1/reduction_factor at a rung (after grace_period, then x reduction_factor iterations).
    An iteration is one ``report`` of the train loop (one epoch for the bundled apps)."""

    type: Literal["asha"]
    grace_period: Annotated[StrictInt, Field(ge=1)] = 1
    reduction_factor: FiniteFloat = Field(default=4.0, gt=1, le=1000)
    max_t: StrictInt | None = Field(
        default=None, ge=1, description="iterations a trial runs at most; default: config epochs"
    )


class PbtScheduler(StrictModel):
    """Population based training: every perturbation_interval iterations a trial in the
    bottom quantile continues from the checkpoint of one in the top quantile with its
    config mutated (resampled from `mutations`, or the numbers scaled by 0.8 or 1.2)."""

    type: Literal["pbt"]
    perturbation_interval: Annotated[StrictInt, Field(ge=1)] = 1
    mutations: dict[str, Distribution] = Field(min_length=1)
    quantile_fraction: FiniteFloat = Field(default=0.25, gt=0, le=0.5)
    resample_probability: FiniteFloat = Field(default=0.25, ge=0, le=1)

    @field_validator("mutations")
    @classmethod
    def _no_grid(cls, value: dict[str, Distribution]) -> dict[str, Distribution]:
        for key, distribution in value.items():
            if distribution.grid is not None:
                raise ValueError(f"'{key}': pbt cannot mutate to a grid; use choice")
        return value


class FifoScheduler(StrictModel):
    """Every trial runs to its end."""

    type: Literal["fifo"]


SchedulerSpec = Annotated[AshaScheduler | PbtScheduler | FifoScheduler, Field(discriminator="type")]
