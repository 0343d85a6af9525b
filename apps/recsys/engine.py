"""Framework-free training and evaluation pieces shared by the Ray Train loop and the tests.

Nothing here knows about Ray or distribution: ``train.py`` decides which interactions a
worker sees and wraps the model; these functions run plain PyTorch over tensors.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .data import Split, sample_training_negatives
from .metrics import RankMetrics, rank_metrics

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (users, items, labels 0/1)

EVAL_USERS_PER_PASS = 1024


def make_training_batches(
    split: Split,
    users: np.ndarray,
    items: np.ndarray,
    num_negatives: int,
    batch_size: int,
    seed: int,
) -> list[Batch]:
    """The positives ``(users, items)`` plus ``num_negatives`` fresh negatives each, shuffled.

    The negatives and the order both come from ``seed``, so an epoch re-run after a
    restart sees exactly the same batches.
    """
    negatives = sample_training_negatives(split.seen, users, num_negatives, seed)
    all_users = np.concatenate([users, np.repeat(users, num_negatives)])
    all_items = np.concatenate([items, negatives.reshape(-1)])
    labels = np.concatenate([np.ones(len(users)), np.zeros(negatives.size)]).astype(np.float32)
    order = np.random.default_rng([seed, 2]).permutation(len(all_users))
    user_t = torch.from_numpy(all_users[order])
    item_t = torch.from_numpy(all_items[order])
    label_t = torch.from_numpy(labels[order])
    return [
        (
            user_t[start : start + batch_size],
            item_t[start : start + batch_size],
            label_t[start : start + batch_size],
        )
        for start in range(0, len(order), batch_size)
    ]


def train_one_epoch(
    model: nn.Module, optimizer: torch.optim.Optimizer, batches: Iterable[Batch]
) -> float:
    """One pass of binary cross-entropy training; returns the row-weighted mean loss."""
    model.train()
    total_loss, total_rows = 0.0, 0
    for users, items, labels in batches:
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(users, items), labels)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(labels)
        total_rows += len(labels)
    return total_loss / max(total_rows, 1)


@torch.no_grad()
def candidate_scores(model: nn.Module, split: Split) -> np.ndarray:
    """The model's logits for every user's evaluation candidates (held-out item first)."""
    model.eval()
    candidates = torch.from_numpy(split.eval_candidates())
    users = torch.arange(split.num_users)[:, None].expand_as(candidates)
    chunks = [
        model(
            users[start : start + EVAL_USERS_PER_PASS],
            candidates[start : start + EVAL_USERS_PER_PASS],
        )
        for start in range(0, split.num_users, EVAL_USERS_PER_PASS)
    ]
    return torch.cat(chunks).numpy()


def evaluate(model: nn.Module, split: Split, k: int = 10) -> RankMetrics:
    """Leave-one-out hit rate and NDCG at ``k`` against the sampled negatives."""
    return rank_metrics(candidate_scores(model, split), k)


def popularity_baseline(split: Split, k: int = 10) -> RankMetrics:
    """Rank every user's candidates by how often the item occurs in the training data."""
    return rank_metrics(split.item_counts()[split.eval_candidates()], k)


def random_baseline(split: Split, k: int = 10) -> RankMetrics:
    """A scorer with no information: every candidate tied, so the expected random rank."""
    return rank_metrics(np.zeros(split.eval_candidates().shape), k)
