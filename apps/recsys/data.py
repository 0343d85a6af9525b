"""Synthetic user-item interactions with a known latent-factor ground truth, and the split.

The generator is deterministic for a given configuration, so every Ray Train worker (and
every restart of one) rebuilds exactly the same interactions, split and evaluation
negatives without shipping data around.

Ground truth: every user and item has a hidden ``true_dim``-dimensional factor vector and
every item a popularity bias. A user's affinity for an item is ``signal * u·v / sqrt(d)
+ bias``; each user interacts with ``min..max`` distinct items drawn without replacement
with probability proportional to ``exp(affinity)`` (Gumbel top-k). The chosen items are
put in a random order, the user's timeline. Popularity alone therefore predicts some of
what a user picks (the bias), but most of the signal is personal (the factors), which is
what a collaborative-filtering model has to recover.

Split: leave-one-out. A user's last interaction is held out; the rest is training data.
Each held-out item is ranked against ``num_eval_negatives`` items the user never
interacted with, sampled once from the seed, so every run scores the same candidates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DataConfig:
    num_users: int = 2000
    num_items: int = 1000
    min_interactions: int = 10
    max_interactions: int = 50
    true_dim: int = 8
    signal: float = 3.0  # strength of the personal (factor) part of the affinity
    popularity_std: float = 1.0  # spread of the item popularity bias
    num_eval_negatives: int = 99
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_users", "num_items", "min_interactions", "true_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.min_interactions < 2:
            # One interaction is held out, so a user needs at least one more to train on.
            raise ValueError(f"min_interactions must be at least 2, got {self.min_interactions}")
        if self.max_interactions < self.min_interactions:
            raise ValueError(
                f"max_interactions ({self.max_interactions}) must be >= "
                f"min_interactions ({self.min_interactions})"
            )
        if self.max_interactions + self.num_eval_negatives > self.num_items:
            raise ValueError(
                f"num_items ({self.num_items}) must be >= max_interactions + "
                f"num_eval_negatives ({self.max_interactions + self.num_eval_negatives}), "
                "so every user has enough never-seen items to rank against"
            )
        if self.num_eval_negatives < 1:
            raise ValueError(
                f"num_eval_negatives must be at least 1, got {self.num_eval_negatives}"
            )


@dataclass(frozen=True)
class Interactions:
    """Every user's timeline: ``items[indptr[u]:indptr[u + 1]]`` in interaction order."""

    indptr: np.ndarray  # int64, shape (num_users + 1,)
    items: np.ndarray  # int64, shape (total interactions,)
    num_items: int

    @property
    def num_users(self) -> int:
        return len(self.indptr) - 1

    def of(self, user: int) -> np.ndarray:
        return self.items[self.indptr[user] : self.indptr[user + 1]]


@dataclass(frozen=True)
class Split:
    """Leave-one-out: training pairs, one held-out item per user and its eval negatives."""

    train_users: np.ndarray  # int64, one entry per training interaction
    train_items: np.ndarray  # int64, aligned with train_users
    test_items: np.ndarray  # int64, shape (num_users,): each user's last interaction
    eval_negatives: np.ndarray  # int64, shape (num_users, num_eval_negatives)
    seen: np.ndarray  # bool, shape (num_users, num_items): the training interactions
    num_users: int
    num_items: int

    def eval_candidates(self) -> np.ndarray:
        """Shape (num_users, 1 + negatives): the held-out item first, then its negatives."""
        return np.concatenate([self.test_items[:, None], self.eval_negatives], axis=1)

    def item_counts(self) -> np.ndarray:
        """Training interactions per item: the popularity baseline's scores."""
        return np.bincount(self.train_items, minlength=self.num_items)


def make_interactions(config: DataConfig) -> Interactions:
    """The users' timelines; identical for identical configs."""
    rng = np.random.default_rng(config.seed)
    user_factors = rng.standard_normal((config.num_users, config.true_dim))
    item_factors = rng.standard_normal((config.num_items, config.true_dim))
    item_bias = config.popularity_std * rng.standard_normal(config.num_items)
    affinity = config.signal * (user_factors @ item_factors.T) / math.sqrt(config.true_dim)
    affinity += item_bias
    counts = rng.integers(config.min_interactions, config.max_interactions + 1, config.num_users)
    # Gumbel top-k: the k largest of (logit + Gumbel noise) are a sample of k distinct
    # items without replacement, each with probability proportional to exp(logit).
    perturbed = affinity + rng.gumbel(size=affinity.shape)
    ranked = np.argsort(-perturbed, axis=1, kind="stable")
    timelines = []
    for user, count in enumerate(counts):
        chosen = ranked[user, :count].copy()
        rng.shuffle(chosen)  # the timeline order is unrelated to how liked an item is
        timelines.append(chosen)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return Interactions(indptr, np.concatenate(timelines).astype(np.int64), config.num_items)


def leave_one_out(interactions: Interactions, num_eval_negatives: int, seed: int) -> Split:
    """Hold out each user's last interaction; sample its eval negatives from unseen items."""
    num_users, num_items = interactions.num_users, interactions.num_items
    interacted = np.zeros((num_users, num_items), dtype=bool)
    seen = np.zeros((num_users, num_items), dtype=bool)
    train_users, train_items, test_items = [], [], []
    for user in range(num_users):
        timeline = interactions.of(user)
        if len(timeline) < 2:
            raise ValueError(f"user {user} has {len(timeline)} interactions; need at least 2")
        interacted[user, timeline] = True
        seen[user, timeline[:-1]] = True
        train_users.append(np.full(len(timeline) - 1, user, dtype=np.int64))
        train_items.append(timeline[:-1])
        test_items.append(timeline[-1])
    # A separate stream from the generator's, so the negatives do not shift when the
    # generator changes how many draws it makes.
    rng = np.random.default_rng([seed, 1])
    negatives = np.empty((num_users, num_eval_negatives), dtype=np.int64)
    for user in range(num_users):
        never = np.flatnonzero(~interacted[user])
        if len(never) < num_eval_negatives:
            raise ValueError(
                f"user {user} has only {len(never)} never-seen items, "
                f"fewer than num_eval_negatives={num_eval_negatives}"
            )
        negatives[user] = rng.choice(never, size=num_eval_negatives, replace=False)
    return Split(
        train_users=np.concatenate(train_users),
        train_items=np.concatenate(train_items),
        test_items=np.asarray(test_items, dtype=np.int64),
        eval_negatives=negatives,
        seen=seen,
        num_users=num_users,
        num_items=num_items,
    )


def make_split(config: DataConfig) -> Split:
    return leave_one_out(make_interactions(config), config.num_eval_negatives, config.seed)


def sample_training_negatives(
    seen: np.ndarray, users: np.ndarray, per_positive: int, seed: int
) -> np.ndarray:
    """``per_positive`` items per entry of ``users`` that the user has not interacted with.

    Shape ``(len(users), per_positive)``. Uniform over each user's unseen items (rejection
    sampling: redraw the collisions until none remain), reproducible for a given seed.
    """
    rng = np.random.default_rng(seed)
    num_items = seen.shape[1]
    rows = np.repeat(users, per_positive)
    items = rng.integers(0, num_items, size=len(rows))
    clash = seen[rows, items]
    while clash.any():
        items[clash] = rng.integers(0, num_items, size=int(clash.sum()))
        clash = seen[rows, items]
    return items.reshape(len(users), per_positive)
