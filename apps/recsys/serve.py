"""Serving: ``recsys.serve:Predictor`` ranks items for users with a trained checkpoint.

An input is ``{"user": 7}`` with optional ``"k"`` (how many items, default the
checkpoint's ``top_k``), ``"candidates"`` (item ids to rank; default the whole catalog)
and ``"exclude_seen"`` (default true: leave out the items the user interacted with in the
training data; only applies when ranking the whole catalog). The prediction is
``{"items": [...], "scores": [...]}``, best first, scores the model's probability that the
user interacts with the item.

A batch is scored in one forward pass: every user in it against the whole catalog.
"""

from __future__ import annotations

from typing import Any

import torch

from raydc.workloads.compress_ops import is_compressed, load_compressed
from raydc.workloads.context import load_checkpoint_dir

from .train import load_model

_KEYS = {"user", "k", "candidates", "exclude_seen"}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Request:
    """One validated input."""

    def __init__(self, raw: Any, num_users: int, num_items: int, default_k: int) -> None:
        if not isinstance(raw, dict):
            raise ValueError(
                'each input must be an object like {"user": 3, "k": 10}, '
                f"got {type(raw).__name__}"
            )
        unknown = set(raw) - _KEYS
        if unknown:
            raise ValueError(f"unknown input fields {sorted(unknown)}; allowed: {sorted(_KEYS)}")
        if "user" not in raw:
            raise ValueError("missing field 'user' (a user id)")
        user = raw["user"]
        if not _is_int(user) or not 0 <= user < num_users:
            raise ValueError(f"'user' must be an integer in [0, {num_users}), got {user!r}")
        k = raw.get("k", default_k)
        if not _is_int(k) or not 1 <= k <= num_items:
            raise ValueError(f"'k' must be an integer in [1, {num_items}], got {k!r}")
        exclude_seen = raw.get("exclude_seen", True)
        if not isinstance(exclude_seen, bool):
            raise ValueError(f"'exclude_seen' must be true or false, got {exclude_seen!r}")
        candidates = raw.get("candidates")
        if candidates is not None:
            if not isinstance(candidates, list) or not candidates:
                raise ValueError("'candidates' must be a non-empty list of item ids")
            bad = [c for c in candidates if not _is_int(c) or not 0 <= c < num_items]
            if bad:
                raise ValueError(
                    f"'candidates' must be item ids in [0, {num_items}); bad: {bad[:5]!r}"
                )
            if len(set(candidates)) != len(candidates):
                raise ValueError("'candidates' must not repeat an item id")
        self.user: int = user
        self.k: int = k
        self.exclude_seen = exclude_seen
        self.candidates: list[int] | None = candidates


class Predictor:
    """One model version; ``predict`` takes a batch of inputs (see the module docstring)."""

    def __init__(self, checkpoint_dir: str) -> None:
        state = load_checkpoint_dir(checkpoint_dir)
        compressed = is_compressed(checkpoint_dir)
        self.model = load_compressed(checkpoint_dir) if compressed else load_model(state)
        # score_all reads float weights directly; an int8 model scores the pairs instead.
        self.pairwise = any(
            type(module).__module__.startswith("torch.ao.nn.quantized")
            for module in self.model.modules()
        )
        self.num_users = self.model.num_users
        self.num_items = self.model.num_items
        self.default_k = int(state.get("top_k", 10))
        # The training interactions as a dense mask: 2 MB for 2,000 users x 1,000 items,
        # and one indexing op per batch instead of a Python loop over users.
        indptr, items = state["seen_indptr"], state["seen_items"]
        counts = indptr[1:] - indptr[:-1]
        self.seen = torch.zeros(self.num_users, self.num_items, dtype=torch.bool)
        self.seen[torch.arange(self.num_users).repeat_interleave(counts), items] = True

    @torch.no_grad()
    def predict(self, inputs: list[Any]) -> list[dict[str, list[Any]]]:
        requests = [_Request(raw, self.num_users, self.num_items, self.default_k) for raw in inputs]
        if not requests:
            return []
        users = torch.tensor([request.user for request in requests])
        probabilities = torch.sigmoid(self._score_all(users))  # one pass for the batch
        return [
            self._top_k(request, row, self.seen[request.user])
            for request, row in zip(requests, probabilities, strict=True)
        ]

    def _score_all(self, users: torch.Tensor) -> torch.Tensor:
        if not self.pairwise:
            return self.model.score_all(users)  # type: ignore[no-any-return]
        items = torch.arange(self.num_items)
        return self.model(  # type: ignore[no-any-return]
            users[:, None].expand(-1, self.num_items), items[None, :].expand(len(users), -1)
        )

    @staticmethod
    def _top_k(request: _Request, scores: torch.Tensor, seen: torch.Tensor) -> dict[str, list[Any]]:
        if request.candidates is not None:
            candidates = torch.tensor(request.candidates)
            scores = scores[candidates]
        else:
            candidates = torch.arange(len(scores))
            if request.exclude_seen:
                candidates, scores = candidates[~seen], scores[~seen]
        top = torch.topk(scores, min(request.k, len(scores)))
        return {
            "items": candidates[top.indices].tolist(),
            "scores": [round(score, 6) for score in top.values.tolist()],
        }
