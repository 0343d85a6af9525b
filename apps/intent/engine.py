"""Framework-free training pieces shared by the Ray Train loop and the unit tests.

Nothing here knows about Ray or distribution: ``train.py`` decides which examples a
worker sees and wraps the classifier; these functions run plain PyTorch.

The frozen encoder layers run once per utterance (:func:`compute_features`); every
epoch then trains only the classifier on those cached hidden states, padded per batch.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import torch
from tokenizers import Tokenizer
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pad_sequence

from .encoder import MiniLM, mean_pool, tokenize

FEATURE_BATCH_SIZE = 128
BUCKET_BATCHES = 8

Feature = torch.Tensor  # (tokens, hidden): one utterance after the frozen layers
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (hidden, mask, labels)


class EvalResult(NamedTuple):
    loss: float
    accuracy: float


@torch.no_grad()
def compute_features(
    encoder: MiniLM, tokenizer: Tokenizer, texts: Sequence[str], stop: int, pool: bool = False
) -> list[Feature]:
    """Each text's hidden states after the encoder's first ``stop`` layers.

    With ``pool``, each text's mean-pooled states instead, as a one-token sequence (whose
    mean is itself): when no layer trains, that is all the classifier needs. Texts run
    in batches of similar length, so little time goes on padding. (``no_grad``, not
    ``inference_mode``: the results feed layers that train.)
    """
    encoder.eval()
    device = encoder.word_embeddings.weight.device
    # Real tokens only: the tokenizer pads the whole batch to its longest text.
    lengths = [sum(e.attention_mask) for e in tokenizer.encode_batch(list(texts))]
    order = sorted(range(len(texts)), key=lengths.__getitem__)
    features: list[Feature] = [torch.empty(0)] * len(texts)
    for start in range(0, len(order), FEATURE_BATCH_SIZE):
        chunk = order[start : start + FEATURE_BATCH_SIZE]
        ids, mask = tokenize(tokenizer, [texts[i] for i in chunk])
        hidden = encoder(ids.to(device), mask.to(device), stop=stop)
        if pool:
            hidden = mean_pool(hidden, mask.to(device)).unsqueeze(1)
        for row, i in enumerate(chunk):
            features[i] = hidden[row, : 1 if pool else lengths[i]].clone()
    return features


def collate(examples: Sequence[tuple[Feature, int]]) -> Batch:
    hidden = pad_sequence([feature for feature, _ in examples], batch_first=True)
    lengths = torch.tensor([len(feature) for feature, _ in examples], device=hidden.device)
    mask = torch.arange(hidden.shape[1], device=hidden.device)[None, :] < lengths[:, None]
    labels = torch.tensor([label for _, label in examples], device=hidden.device)
    return hidden, mask, labels


def make_batches(
    examples: Sequence[tuple[Feature, int]], batch_size: int, shuffle_seed: int | None = None
) -> list[Batch]:
    """Collated batches in order, or shuffled with ``shuffle_seed`` (reproducible per epoch).

    Shuffled batches are drawn from windows of ``BUCKET_BATCHES`` batches sorted by
    length, then put in random order: each batch is still a random sample, but pads
    little, which matters when transformer layers train on it.
    """
    order = list(range(len(examples)))
    if shuffle_seed is None:
        return [
            collate([examples[i] for i in order[start : start + batch_size]])
            for start in range(0, len(order), batch_size)
        ]
    rng = random.Random(shuffle_seed)
    rng.shuffle(order)
    window = batch_size * BUCKET_BATCHES
    chunks = []
    for start in range(0, len(order), window):
        by_length = sorted(order[start : start + window], key=lambda i: len(examples[i][0]))
        chunks += [by_length[i : i + batch_size] for i in range(0, len(by_length), batch_size)]
    rng.shuffle(chunks)
    return [collate([examples[i] for i in chunk]) for chunk in chunks]


def train_one_epoch(
    model: nn.Module, optimizer: torch.optim.Optimizer, batches: Iterable[Batch]
) -> float:
    """One pass of cross-entropy training; returns the example-weighted mean loss."""
    model.train()
    total_loss, total_examples = 0.0, 0
    for hidden, mask, labels in batches:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(hidden, mask), labels)
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
    for hidden, mask, labels in batches:
        logits = model(hidden, mask)
        total_loss += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += int((logits.argmax(dim=1) == labels).sum())
        total += len(labels)
    if total == 0:
        return EvalResult(loss=0.0, accuracy=0.0)
    return EvalResult(loss=total_loss / total, accuracy=correct / total)
