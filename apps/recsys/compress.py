"""How ``kind: compress`` jobs compress this app's models (``recsys.compress:Compression``).

The model is NeuMF; its metric is the leave-one-out hit rate at the checkpoint's
``top_k`` (the split regenerated from the data config the checkpoint keeps). It scores
(user, item) pairs, one logit each, so fine-tuning and distillation use binary
cross-entropy on interactions and sampled negatives (4 per positive), as training does.
A student (``student: {embed_dim: 8, hidden_dim: 16}``, defaults half the teacher's) is
a narrower NeuMF trained on the teacher's probabilities. Structured pruning removes
neurons of the MLP branch's first layer. Timing feeds a batch of users against 100
candidate items each (the evaluation's shape).

Config keys: ``num_negatives`` (4).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch import nn

from raydc.workloads.compress_ops import (
    AttentionHeads,
    Batch,
    Inputs,
    check_student_options,
    checkpoint_metadata,
    is_compressed,
    load_compressed,
)
from raydc.workloads.context import load_checkpoint_dir
from raydc.workloads.loops import config_from_dict, shard

from .data import DataConfig, Split, make_split
from .engine import evaluate, make_training_batches
from .model import NeuMF
from .train import load_model


@dataclasses.dataclass(frozen=True)
class CompressConfig:
    num_negatives: int = 4

    def __post_init__(self) -> None:
        if self.num_negatives < 1:
            raise ValueError(f"config key 'num_negatives' is out of range: {self.num_negatives}")


class Compression:
    metric_name = "hit_rate"
    metric_points = 100.0
    higher_is_better = True

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = config_from_dict(CompressConfig, config or {})
        self._split: Split | None = None
        self.top_k = 10

    def split(self) -> Split:
        if self._split is None:
            raise RuntimeError("load a model version first: the data depends on it")
        return self._split

    def load(self, directory: str) -> nn.Module:
        state = load_checkpoint_dir(directory)
        self._split = make_split(DataConfig(**state["data_config"]))
        self.top_k = int(state.get("top_k", 10))
        return load_compressed(directory) if is_compressed(directory) else load_model(state)

    def metadata(self, directory: str) -> dict[str, Any]:
        return checkpoint_metadata(directory)

    def evaluate(self, model: nn.Module) -> float:
        return float(evaluate(model, self.split(), self.top_k).hit_rate)

    def example_inputs(self, batch_size: int) -> Inputs:
        candidates = torch.from_numpy(self.split().eval_candidates()[:batch_size])
        users = torch.arange(len(candidates))[:, None].expand_as(candidates)
        return users, candidates

    def calibration_inputs(self, batches: int) -> list[Inputs]:
        return [inputs for inputs, _ in self.train_batches(256, seed=0, rank=0, world=1)[:batches]]

    def train_batches(self, batch_size: int, seed: int, rank: int, world: int) -> list[Batch]:
        split = self.split()
        users = shard(split.train_users, rank, world)
        items = shard(split.train_items, rank, world)
        batches = make_training_batches(
            split, np.asarray(users), np.asarray(items), self.config.num_negatives, batch_size, seed
        )
        return [((u, i), labels) for u, i, labels in batches]

    def student(self, teacher: nn.Module, options: dict[str, Any]) -> nn.Module:
        if not isinstance(teacher, NeuMF):
            raise ValueError(
                f"a student is built from a trained NeuMF, not {type(teacher).__name__}"
            )
        check_student_options(options, ("embed_dim", "hidden_dim"))
        sizes = {
            "embed_dim": options.get("embed_dim", max(1, teacher.embed_dim // 2)),
            "hidden_dim": options.get("hidden_dim", max(2, teacher.mlp_in.out_features // 2)),
        }
        for key, value in sizes.items():
            if not isinstance(value, int) or value < 2:
                raise ValueError(
                    f"student option {key!r} must be an integer of at least 2, got {value!r}"
                )
        return NeuMF(teacher.num_users, teacher.num_items, **sizes)

    def neuron_pairs(self, model: nn.Module) -> list[tuple[nn.Module, str, str]]:
        return [(model, "mlp_in", "mlp_hidden")]

    def attention_blocks(self, model: nn.Module) -> list[AttentionHeads]:
        return []  # no attention in this model
