"""Ray Train entrypoint (``recsys.train:train_loop``) and checkpoint evaluation.

Each worker regenerates the same interactions and leave-one-out split from the seed,
trains on its strided shard of the training interactions (DDP averages the gradients),
and evaluates every user's held-out item, so every rank reports the same metrics. One
checkpoint is reported per epoch; after a failure, a resize or a preemption the loop
resumes from the latest one.

Config keys (all optional):

``epochs`` (5), ``lr`` (0.005, Adam), ``batch_size`` (1024 rows per worker and step),
``embed_dim`` (16), ``hidden_dim`` (32), ``dropout`` (0.0), ``num_negatives`` (4 sampled
negatives per training interaction, fresh every epoch), ``top_k`` (10: the k of
``hit_rate`` and ``ndcg``);
data: ``num_users`` (2000), ``num_items`` (1000), ``min_interactions`` (10),
``max_interactions`` (50), ``num_eval_negatives`` (99), ``seed`` (0);
``epoch_sleep_s`` (0.0)
    seconds to sleep at the start of every epoch, so a test can watch a RUNNING job;
``fail_at_epoch`` (unset)
    raise ``RuntimeError`` at the start of that (1-based) epoch unless the run resumed
    from a checkpoint.

Any other key, or a value of the wrong type or range, is an error naming the key.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import torch
from ray.train.torch import prepare_model
from torch import nn

from raydc.workloads.context import load_checkpoint_dir, load_state, report, world_rank, world_size
from raydc.workloads.loops import config_from_dict, epoch_seed, maybe_fail, shard, unwrap

from .data import DataConfig, Split, make_split
from .engine import evaluate, make_training_batches, popularity_baseline, train_one_epoch
from .model import NeuMF

_DATA_KEYS = (
    "num_users",
    "num_items",
    "min_interactions",
    "max_interactions",
    "num_eval_negatives",
    "seed",
)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = 5
    lr: float = 0.005
    batch_size: int = 1024
    embed_dim: int = 16
    hidden_dim: int = 32
    dropout: float = 0.0
    num_negatives: int = 4
    top_k: int = 10
    num_users: int = 2000
    num_items: int = 1000
    min_interactions: int = 10
    max_interactions: int = 50
    num_eval_negatives: int = 99
    seed: int = 0
    epoch_sleep_s: float = 0.0
    fail_at_epoch: int | None = None

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> TrainConfig:
        return config_from_dict(cls, config)

    def __post_init__(self) -> None:
        at_least = {
            "epochs": 1,
            "batch_size": 1,
            "embed_dim": 1,
            "hidden_dim": 2,
            "num_negatives": 1,
            "top_k": 1,
        }
        for name, low in at_least.items():
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be at least {low}, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.top_k > self.num_eval_negatives + 1:
            raise ValueError(
                f"top_k ({self.top_k}) must be at most num_eval_negatives + 1 "
                f"({self.num_eval_negatives + 1}), the number of ranked candidates"
            )
        self.data_config()  # validates the data keys, naming the one at fault

    def data_config(self) -> DataConfig:
        return DataConfig(**{key: getattr(self, key) for key in _DATA_KEYS})


def _build_model(
    config: TrainConfig, split: Split, state: dict[str, Any] | None
) -> tuple[NeuMF, dict[str, Any]]:
    if state is not None:
        # The checkpoint's shape wins over the config: its weights only fit that shape.
        model_config = dict(state["model_config"])
    else:
        model_config = {
            "num_users": split.num_users,
            "num_items": split.num_items,
            "embed_dim": config.embed_dim,
            "hidden_dim": config.hidden_dim,
            "dropout": config.dropout,
        }
    torch.manual_seed(config.seed)  # identical initial weights on every rank
    model = NeuMF(**model_config)
    if state is not None:
        model.load_state_dict(state["model"])
    return model, model_config


def seen_items_csr(split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    """Each user's training items as CSR ``(indptr, items)``: what serving leaves out."""
    users, items = np.nonzero(split.seen)  # row-major, so grouped by user
    indptr = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=split.num_users))])
    return torch.from_numpy(indptr.astype(np.int64)), torch.from_numpy(items.astype(np.int64))


def _state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    model_config: dict[str, Any],
    config: TrainConfig,
    seen: tuple[torch.Tensor, torch.Tensor],
) -> dict[str, Any]:
    return {
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "model_config": model_config,
        # Enough to regenerate the split in evaluate_checkpoint().
        "data_config": dataclasses.asdict(config.data_config()),
        "top_k": config.top_k,
        "seen_indptr": seen[0],
        "seen_items": seen[1],
    }


def train_loop(config: dict[str, Any]) -> None:
    """Train inside a Ray Train worker; see the module docstring for the config keys."""
    settings = TrainConfig.from_dict(config or {})
    state = load_state()
    split = make_split(settings.data_config())

    recommender, model_config = _build_model(settings, split, state)
    model = prepare_model(recommender)  # DDP (gloo on CPU) when there is more than one worker
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    start_epoch = 1
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = state["epoch"] + 1

    rank, size = world_rank(), world_size()
    users = shard(split.train_users, rank, size)
    items = shard(split.train_items, rank, size)
    popularity = popularity_baseline(split, settings.top_k)
    seen = seen_items_csr(split)

    for epoch in range(start_epoch, settings.epochs + 1):
        maybe_fail(settings.fail_at_epoch, epoch, resumed=state is not None)
        if settings.epoch_sleep_s > 0:
            time.sleep(settings.epoch_sleep_s)
        batches = make_training_batches(
            split,
            users,
            items,
            settings.num_negatives,
            settings.batch_size,
            epoch_seed(settings.seed, epoch, rank),
        )
        train_loss = train_one_epoch(model, optimizer, batches)
        # Evaluate the unwrapped module: a plain forward pass, no DDP collectives.
        held_out = evaluate(unwrap(model), split, settings.top_k)
        metrics = {
            "epoch": epoch,
            "train_loss": train_loss,  # this rank's shard only; the rest agree across ranks
            "hit_rate": held_out.hit_rate,
            "ndcg": held_out.ndcg,
            "popularity_hit_rate": popularity.hit_rate,
            "popularity_ndcg": popularity.ndcg,
        }
        report(metrics, state=_state(model, optimizer, epoch, model_config, settings, seen))


def load_model(state: dict[str, Any]) -> NeuMF:
    """The trained recommender from a saved state, in eval mode."""
    model = NeuMF(**state["model_config"])
    model.load_state_dict(state["model"])
    return model.eval()


def evaluate_checkpoint(checkpoint_dir: str) -> dict[str, Any]:
    """Recompute leave-one-out metrics of a saved checkpoint from scratch (no Ray needed)."""
    state = load_checkpoint_dir(checkpoint_dir)
    split = make_split(DataConfig(**state["data_config"]))
    k = int(state["top_k"])
    held_out = evaluate(load_model(state), split, k)
    return {
        "hit_rate": held_out.hit_rate,
        "ndcg": held_out.ndcg,
        "k": k,
        "epoch": state["epoch"],
        "num_users": split.num_users,
    }
