"""Ranking metrics for leave-one-out evaluation: hit rate and NDCG at k.

Each row of a score matrix ranks one user's candidates: column 0 is the held-out item,
the other columns are sampled items the user never interacted with. Ties are broken at
random *in expectation*: a held-out item tied with ``e`` negatives and beaten by ``g`` is
equally likely to sit at any rank ``g .. g + e``. So a constant scorer (every candidate
tied) scores exactly the random baseline, ``hit_rate@k = k / candidates``, and a
popularity scorer gains nothing from the many ties among rarely bought items.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class RankMetrics(NamedTuple):
    hit_rate: float
    ndcg: float


def _discount_prefix(k: int) -> np.ndarray:
    """``prefix[j]`` = sum of ``1 / log2(rank + 2)`` over ranks ``0 .. j - 1`` (``j <= k``)."""
    return np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))])


def per_user_metrics(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Expected hit@k and NDCG@k of the held-out item (column 0) in every row."""
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError(f"scores must have shape (users, 1 + negatives), got {scores.shape}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    positive = scores[:, :1]
    negatives = scores[:, 1:]
    beaten_by = (negatives > positive).sum(axis=1)
    tied_with = (negatives == positive).sum(axis=1)
    # The held-out item's rank is uniform over [first, last) (0-based); clip to the top k.
    first = np.minimum(beaten_by, k)
    last = np.minimum(beaten_by + tied_with + 1, k)
    positions = tied_with + 1
    hits = (last - first) / positions
    prefix = _discount_prefix(k)
    ndcg = (prefix[last] - prefix[first]) / positions
    return hits, ndcg


def rank_metrics(scores: np.ndarray, k: int = 10) -> RankMetrics:
    """Mean expected hit rate and NDCG at ``k`` over all rows."""
    hits, ndcg = per_user_metrics(np.asarray(scores, dtype=np.float64), k)
    return RankMetrics(hit_rate=float(hits.mean()), ndcg=float(ndcg.mean()))
