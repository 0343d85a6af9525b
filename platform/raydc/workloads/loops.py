"""What every app's train loop needs besides Ray Train: a strict config, a data shard per
rank, a reproducible shuffle, the model without its DDP wrapper, and an injected failure
for recovery tests. The apps under apps/ all use these; so can yours.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from torch import nn
from torch.nn.parallel import DistributedDataParallel

C = TypeVar("C")
S = TypeVar("S")


def config_from_dict(cls: type[C], config: Mapping[str, Any]) -> C:
    """Build the frozen dataclass ``cls`` from a job's ``config``, strictly.

    Unknown keys are an error (a typo like ``epoch: 5`` must not fall back to a default).
    An ``int`` field takes an int, or a whole float as a search space may give
    (``hidden_dim: 128.0``); a ``float`` field takes any number; ``bool`` is never a
    number; ``X | None`` also takes None. Every error names the key.
    """
    fields = {field.name: field for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(config) - set(fields)
    if unknown:
        raise ValueError(f"unknown config keys: {sorted(unknown)}")
    hints = get_type_hints(cls)
    return cls(**{key: _coerce(key, hints[key], value) for key, value in config.items()})


def _coerce(key: str, annotation: Any, value: Any) -> Any:
    kinds = [annotation]
    if get_origin(annotation) in (Union, types.UnionType):
        kinds = list(get_args(annotation))
    if value is None and type(None) in kinds:
        return None
    if int in kinds:
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            raise ValueError(f"config key {key!r} must be a whole number, got {value!r}")
        return int(value)
    if float in kinds:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"config key {key!r} must be a number, got {value!r}")
        return float(value)
    return value


def shard(examples: S, rank: int, size: int) -> S:
    """Every ``size``-th item starting at ``rank``, the same count on every rank.

    DDP all-reduces gradients at every step, so ranks with different batch counts would
    wait on each other forever; dropping the last ``len % size`` items prevents that.
    Works on lists and numpy arrays alike (a slice of each).
    """
    usable = len(examples) - len(examples) % size  # type: ignore[arg-type]
    return examples[rank:usable:size]  # type: ignore[index]


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """A new shuffle every epoch and rank, yet the same one when an epoch is re-run after
    a restart, so a resumed run retraces the run it replaces."""
    return seed * 1_000_000 + epoch * 1_000 + rank


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP wrapper (what a checkpoint or an evaluation wants)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def maybe_fail(fail_at_epoch: int | None, epoch: int, resumed: bool) -> None:
    """Raise at the start of ``fail_at_epoch`` unless the run resumed from a checkpoint.

    Only a fresh attempt fails, so the retry that resumes completes: the recovery path
    the platform's tests exercise.
    """
    if fail_at_epoch == epoch and not resumed:
        raise RuntimeError(f"fail_at_epoch={epoch}: injected failure before training epoch {epoch}")
