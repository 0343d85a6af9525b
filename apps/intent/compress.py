"""How ``kind: compress`` jobs compress this app's models (``intent.compress:Compression``).

The model compressed is the whole inference pipeline, frozen encoder included
(embeddings, six MiniLM layers, the classifier): that is what a replica runs and
holds in memory. Its metric is accuracy on the held-out split. A student
(``student: {layers: 1, embedding_rank: 96}``, the defaults) keeps ``layers`` of the teacher's six,
evenly spaced and initialised from them, and the word embeddings factorized by SVD to
``embedding_rank`` (the table is half of MiniLM's weights). Structured pruning removes
feed-forward neurons (``target: neurons``) or attention heads (``target: heads``).

Config keys (all optional): ``eval_batch_size`` (256).
"""

from __future__ import annotations

import dataclasses
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
from raydc.workloads.loops import config_from_dict, shard

from .data import Dataset, load_dataset
from .encoder import EncoderLayer, load_tokenizer, tokenize
from .model import IntentModel, IntentStudent
from .train import load_model

# Measured (benchmarks/compress_intent.py): 4.6x fewer parameters, 5x faster at batch 1.
DEFAULT_STUDENT_LAYERS = 1
DEFAULT_EMBEDDING_RANK = 96


@dataclasses.dataclass(frozen=True)
class CompressConfig:
    eval_batch_size: int = 256

    def __post_init__(self) -> None:
        if self.eval_batch_size < 1:
            raise ValueError(
                f"config key 'eval_batch_size' is out of range: {self.eval_batch_size}"
            )


def load_inference_model(directory: str, state: dict[str, Any]) -> nn.Module:
    """A version's whole model in eval mode: a compressed one as saved, a trained one
    rebuilt from its checkpoint's ``state`` and the pretrained encoder."""
    return load_compressed(directory) if is_compressed(directory) else load_model(state)


class Compression:
    metric_name = "accuracy"
    metric_points = 100.0
    higher_is_better = True

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = config_from_dict(CompressConfig, config or {})
        self.tokenizer = load_tokenizer()
        self._data: Dataset | None = None

    def data(self) -> Dataset:
        if self._data is None:
            self._data = load_dataset()
        return self._data

    def load(self, directory: str) -> nn.Module:
        state = load_checkpoint_dir(directory)
        model = load_inference_model(directory, state)
        labels = state["labels"]
        if labels != self.data().labels:
            # The label order fixes what each logit means; this app's data sorts them.
            self._data = load_dataset(labels=labels)
        return model

    def metadata(self, directory: str) -> dict[str, Any]:
        return checkpoint_metadata(directory)

    def _inputs(self, texts: list[str]) -> Inputs:
        return tokenize(self.tokenizer, texts)

    def evaluate(self, model: nn.Module) -> float:
        test = self.data().test
        correct = 0
        size = self.config.eval_batch_size
        with torch.inference_mode():
            for start in range(0, len(test), size):
                chunk = test[start : start + size]
                logits = model(*self._inputs([text for text, _ in chunk]))
                truth = torch.tensor([label for _, label in chunk])
                correct += int((logits.argmax(dim=1) == truth).sum())
        return correct / len(test)

    def example_inputs(self, batch_size: int) -> Inputs:
        texts = [text for text, _ in self.data().test]
        return self._inputs([texts[i % len(texts)] for i in range(batch_size)])

    def calibration_inputs(self, batches: int) -> list[Inputs]:
        texts = [text for text, _ in self.data().train]
        random.Random(0).shuffle(texts)
        chunks = [texts[i * 32 : (i + 1) * 32] for i in range(batches)]
        return [self._inputs(chunk) for chunk in chunks if chunk]

    def train_batches(self, batch_size: int, seed: int, rank: int, world: int) -> list[Batch]:
        examples = shard(self.data().train, rank, world)
        order = list(range(len(examples)))
        random.Random(seed).shuffle(order)
        batches = []
        for start in range(0, len(order), batch_size):
            chunk = [examples[i] for i in order[start : start + batch_size]]
            labels = torch.tensor([label for _, label in chunk])
            batches.append((self._inputs([text for text, _ in chunk]), labels))
        return batches

    def student(self, teacher: nn.Module, options: dict[str, Any]) -> nn.Module:
        if not isinstance(teacher, IntentModel):
            raise ValueError(
                f"a student is built from a trained intent model, not {type(teacher).__name__}"
            )
        check_student_options(options, ("layers", "embedding_rank"))
        total = len(teacher.encoder.layers) + len(teacher.classifier.layers)
        layers = options.get("layers", DEFAULT_STUDENT_LAYERS)
        if not isinstance(layers, int) or not 1 <= layers <= total:
            raise ValueError(f"student option 'layers' must be 1..{total}, got {layers!r}")
        hidden = teacher.encoder.config.hidden_size
        rank = options.get("embedding_rank", DEFAULT_EMBEDDING_RANK)
        if not isinstance(rank, int) or not 1 <= rank <= hidden:
            raise ValueError(f"student option 'embedding_rank' must be 1..{hidden}, got {rank!r}")
        # Evenly spaced, ending at the top layer: 2 of 6 keeps layers 3 and 6.
        chosen = [round((i + 1) * total / layers) - 1 for i in range(layers)]
        return IntentStudent(teacher, chosen, rank)

    def neuron_pairs(self, model: nn.Module) -> list[tuple[nn.Module, str, str]]:
        layers = [m for m in model.modules() if isinstance(m, EncoderLayer)]
        return [(layer, "ffn_in", "ffn_out") for layer in layers]

    def attention_blocks(self, model: nn.Module) -> list[AttentionHeads]:
        return [
            AttentionHeads(layer, "query", "key", "value", "attention_out")
            for layer in model.modules() if isinstance(layer, EncoderLayer)
        ]  # fmt: skip
