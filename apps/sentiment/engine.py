"""Framework-free training pieces shared by the Ray Train loop and the unit tests.

Nothing here knows about Ray or distribution: ``train.py`` decides which examples a
worker sees and wraps the model; these functions just run plain PyTorch over batches.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from .data import Example, build_vocab, encode, make_dataset, train_test_split
from .model import Batch, collate

EncodedExample = tuple[list[int], int]

TEST_FRACTION = 0.2


@dataclass(frozen=True)
class PreparedData:
    train: list[Example]
    test: list[Example]
    vocab: dict[str, int]


class EvalResult(NamedTuple):
    loss: float
    accuracy: float


def prepare_data(num_examples: int, seed: int, vocab: dict[str, int] | None = None) -> PreparedData:
    """Generate and split the dataset; build the vocabulary from the training split only.

    Pass ``vocab`` (from a checkpoint) to reuse a saved vocabulary instead of rebuilding it.
    """
    train, test = train_test_split(make_dataset(num_examples, seed), TEST_FRACTION, seed)
    if vocab is None:
        vocab = build_vocab(text for text, _ in train)
    return PreparedData(train, test, vocab)


def encode_examples(examples: Iterable[Example], vocab: dict[str, int]) -> list[EncodedExample]:
    return [(encode(text, vocab), label) for text, label in examples]


def make_batches(
    examples: Sequence[EncodedExample], batch_size: int, shuffle_seed: int | None = None
) -> list[Batch]:
    """Collated batches in order, or shuffled with ``shuffle_seed`` (reproducible per epoch)."""
    order = list(range(len(examples)))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(order)
    return [
        collate([examples[i] for i in order[start : start + batch_size]])
        for start in range(0, len(order), batch_size)
    ]


def train_one_epoch(
    model: nn.Module, optimizer: torch.optim.Optimizer, batches: Iterable[Batch]
) -> float:
    """One pass of cross-entropy training; returns the example-weighted mean loss."""
    model.train()
    total_loss, total_examples = 0.0, 0
    for ids, offsets, labels in batches:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(ids, offsets), labels)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(labels)
        total_examples += len(labels)
    return total_loss / max(total_examples, 1)


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[Batch]) -> EvalResult:
    """Mean cross-entropy and accuracy over ``batches``, with dropout off."""
    model.eval()
    total_loss, correct, total = 0.0, 0, 0
    for ids, offsets, labels in batches:
        logits = model(ids, offsets)
        total_loss += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += int((logits.argmax(dim=1) == labels).sum())
        total += len(labels)
    if total == 0:
        return EvalResult(loss=0.0, accuracy=0.0)
    return EvalResult(loss=total_loss / total, accuracy=correct / total)
