"""Ray Train entrypoint (``sentiment.train:train_loop``) and checkpoint evaluation.

Each worker regenerates the same dataset from the seed, trains on its strided shard of
the training split (DDP averages the gradients) and evaluates on the whole held-out split,
so every rank reports the same accuracy. One checkpoint is reported per epoch; after a
failure, a resize or a preemption the loop resumes from the latest one.

Config keys (all optional):

``epochs`` (3), ``lr`` (0.01, Adam), ``batch_size`` (64, per worker), ``embed_dim`` (64),
``hidden_dim`` (64), ``dropout`` (0.1), ``num_examples`` (6000), ``seed`` (0),
``epoch_sleep_s`` (0.0)
    seconds to sleep at the start of every epoch, so a test can watch a RUNNING job;
``fail_at_epoch`` (unset)
    raise ``RuntimeError`` at the start of that (1-based) epoch unless the run resumed
    from a checkpoint. With 2 or more, the first attempt fails after checkpointing and the
    retry resumes and finishes; with 1 there is never a checkpoint, so every attempt fails
    (useful to exhaust ``max_retries``).

Any other key is an error.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch
from ray.train.torch import prepare_model
from torch import nn

from raydc.workloads.context import load_checkpoint_dir, load_state, report, world_rank, world_size
from raydc.workloads.loops import config_from_dict, epoch_seed, maybe_fail, shard, unwrap

from .data import LABELS
from .engine import (
    PreparedData,
    encode_examples,
    evaluate,
    make_batches,
    prepare_data,
    train_one_epoch,
)
from .model import Batch, SentimentClassifier

EVAL_BATCH_SIZE = 512


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = 3
    lr: float = 0.01
    batch_size: int = 64
    embed_dim: int = 64
    hidden_dim: int = 64
    dropout: float = 0.1
    num_examples: int = 6000
    seed: int = 0
    epoch_sleep_s: float = 0.0
    fail_at_epoch: int | None = None

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> TrainConfig:
        return config_from_dict(cls, config)


def _build_model(
    config: TrainConfig, data: PreparedData, state: dict[str, Any] | None
) -> tuple[SentimentClassifier, dict[str, Any]]:
    if state is not None:
        # The checkpoint's shape wins over the config: its weights only fit that shape.
        model_config = dict(state["model_config"])
    else:
        model_config = {
            "vocab_size": len(data.vocab),
            "embed_dim": config.embed_dim,
            "hidden_dim": config.hidden_dim,
            "dropout": config.dropout,
        }
    torch.manual_seed(config.seed)  # identical initial weights on every rank
    model = SentimentClassifier(**model_config)
    if state is not None:
        model.load_state_dict(state["model"])
    return model, model_config


def _state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    data: PreparedData,
    model_config: dict[str, Any],
    config: TrainConfig,
) -> dict[str, Any]:
    return {
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "vocab": data.vocab,
        "model_config": model_config,
        "labels": LABELS,
        # Enough to regenerate the held-out split in evaluate_checkpoint().
        "data_config": {"num_examples": config.num_examples, "seed": config.seed},
    }


def _run_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_batches: list[Batch],
    test_batches: list[Batch],
    epoch: int,
) -> dict[str, Any]:
    train_loss = train_one_epoch(model, optimizer, train_batches)
    # Evaluate the unwrapped module: a plain forward pass, no DDP collectives.
    held_out = evaluate(unwrap(model), test_batches)
    # train_loss is this rank's shard only; accuracy and val_loss agree across ranks.
    return {
        "epoch": epoch,
        "train_loss": train_loss,
        "accuracy": held_out.accuracy,
        "val_loss": held_out.loss,
    }


def train_loop(config: dict[str, Any]) -> None:
    """Train inside a Ray Train worker; see the module docstring for the config keys."""
    settings = TrainConfig.from_dict(config or {})
    state = load_state()
    data = prepare_data(
        settings.num_examples, settings.seed, state["vocab"] if state is not None else None
    )

    classifier, model_config = _build_model(settings, data, state)
    model = prepare_model(classifier)  # DDP (gloo on CPU) when there is more than one worker
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    start_epoch = 1
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = state["epoch"] + 1

    rank = world_rank()
    train_examples = encode_examples(shard(data.train, rank, world_size()), data.vocab)
    test_batches = make_batches(encode_examples(data.test, data.vocab), EVAL_BATCH_SIZE)

    for epoch in range(start_epoch, settings.epochs + 1):
        maybe_fail(settings.fail_at_epoch, epoch, resumed=state is not None)
        if settings.epoch_sleep_s > 0:
            time.sleep(settings.epoch_sleep_s)
        train_batches = make_batches(
            train_examples, settings.batch_size, epoch_seed(settings.seed, epoch, rank)
        )
        metrics = _run_epoch(model, optimizer, train_batches, test_batches, epoch)
        report(metrics, state=_state(model, optimizer, epoch, data, model_config, settings))


def load_model(state: dict[str, Any]) -> SentimentClassifier:
    """The trained classifier from a saved state, in eval mode."""
    model = SentimentClassifier(**state["model_config"])
    model.load_state_dict(state["model"])
    return model.eval()


def evaluate_checkpoint(checkpoint_dir: str) -> dict[str, Any]:
    """Recompute held-out accuracy of a saved checkpoint from scratch (no Ray needed).

    The held-out split is regenerated from the data config stored with the checkpoint,
    and encoded with the checkpoint's own vocabulary.
    """
    state = load_checkpoint_dir(checkpoint_dir)
    data_config = state.get("data_config", {})
    data = prepare_data(
        int(data_config.get("num_examples", TrainConfig.num_examples)),
        int(data_config.get("seed", TrainConfig.seed)),
        vocab=state["vocab"],
    )
    test_batches = make_batches(encode_examples(data.test, data.vocab), EVAL_BATCH_SIZE)
    held_out = evaluate(load_model(state), test_batches)
    return {
        "accuracy": held_out.accuracy,
        "val_loss": held_out.loss,
        "epoch": state["epoch"],
        "num_test_examples": len(data.test),
    }
