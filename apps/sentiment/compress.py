"""How ``kind: compress`` jobs compress this app's models (``sentiment.compress:Compression``).

The model is the whole classifier (embedding bag, hidden layer, output). Its metric is
accuracy on the held-out split, regenerated from the data config the checkpoint keeps,
as ``evaluate_checkpoint`` does. A student (``student: {embed_dim: 32, hidden_dim: 32}``,
defaults half the teacher's) is the same architecture, narrower, trained from scratch
on the teacher's soft labels. Structured pruning removes hidden neurons. The embedding
bag stays float under ``quantize``: it skips padding (unknown words), torch's int8 bag
does not.

Config keys: none.
"""

from __future__ import annotations

import random
from typing import Any

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
from raydc.workloads.loops import shard

from .engine import PreparedData, encode_examples, prepare_data
from .model import SentimentClassifier, collate
from .train import EVAL_BATCH_SIZE, TrainConfig, load_model


class Compression:
    metric_name = "accuracy"
    metric_points = 100.0
    higher_is_better = True

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        if config:
            raise ValueError(f"unknown config keys: {sorted(config)} (this app takes none)")
        self._data: PreparedData | None = None

    def data(self) -> PreparedData:
        if self._data is None:
            raise RuntimeError("load a model version first: the data depends on it")
        return self._data

    def load(self, directory: str) -> nn.Module:
        state = load_checkpoint_dir(directory)
        data_config = state.get("data_config", {})
        self._data = prepare_data(
            int(data_config.get("num_examples", TrainConfig.num_examples)),
            int(data_config.get("seed", TrainConfig.seed)),
            vocab=state["vocab"],
        )
        return load_compressed(directory) if is_compressed(directory) else load_model(state)

    def metadata(self, directory: str) -> dict[str, Any]:
        return checkpoint_metadata(directory)

    def _encoded(self, examples: list[tuple[str, int]]) -> Batch:
        ids, offsets, labels = collate(encode_examples(examples, self.data().vocab))
        return (ids, offsets), labels

    def evaluate(self, model: nn.Module) -> float:
        test = self.data().test
        correct = 0
        with torch.inference_mode():
            for start in range(0, len(test), EVAL_BATCH_SIZE):
                inputs, labels = self._encoded(test[start : start + EVAL_BATCH_SIZE])
                correct += int((model(*inputs).argmax(dim=1) == labels).sum())
        return correct / len(test)

    def example_inputs(self, batch_size: int) -> Inputs:
        test = self.data().test
        return self._encoded([test[i % len(test)] for i in range(batch_size)])[0]

    def calibration_inputs(self, batches: int) -> list[Inputs]:
        train = list(self.data().train)
        random.Random(0).shuffle(train)
        chunks = [train[i * 64 : (i + 1) * 64] for i in range(batches)]
        return [self._encoded(chunk)[0] for chunk in chunks if chunk]

    def train_batches(self, batch_size: int, seed: int, rank: int, world: int) -> list[Batch]:
        examples = shard(self.data().train, rank, world)
        order = list(range(len(examples)))
        random.Random(seed).shuffle(order)
        return [
            self._encoded([examples[i] for i in order[start : start + batch_size]])
            for start in range(0, len(order), batch_size)
        ]

    def student(self, teacher: nn.Module, options: dict[str, Any]) -> nn.Module:
        if not isinstance(teacher, SentimentClassifier):
            raise ValueError(
                f"a student is built from a trained classifier, not {type(teacher).__name__}"
            )
        check_student_options(options, ("embed_dim", "hidden_dim"))
        sizes = {
            "embed_dim": options.get("embed_dim", max(1, teacher.embedding.embedding_dim // 2)),
            "hidden_dim": options.get("hidden_dim", max(1, teacher.hidden.out_features // 2)),
        }
        for key, value in sizes.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"student option {key!r} must be a positive integer, got {value!r}"
                )
        return SentimentClassifier(teacher.embedding.num_embeddings, **sizes,
                                   num_classes=teacher.output.out_features)  # fmt: skip

    def neuron_pairs(self, model: nn.Module) -> list[tuple[nn.Module, str, str]]:
        return [(model, "hidden", "output")]

    def attention_blocks(self, model: nn.Module) -> list[AttentionHeads]:
        return []  # no attention in this model
