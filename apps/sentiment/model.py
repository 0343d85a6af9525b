"""A small bag-of-n-grams classifier: mean of token embeddings -> MLP -> 3 logits."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .data import LABELS, encode

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (flat ids, offsets, labels)


class SentimentClassifier(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 64,
        hidden_dim: int = 64,
        num_classes: int = 3,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        # padding_idx=0 leaves unknown tokens out of the mean instead of diluting it.
        self.embedding = nn.EmbeddingBag(vocab_size, embed_dim, mode="mean", padding_idx=0)
        self.hidden = nn.Linear(embed_dim, hidden_dim)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden_dim, num_classes)

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        pooled = self.embedding(ids, offsets)
        return self.output(self.dropout(torch.relu(self.hidden(pooled))))


def collate(batch: Sequence[tuple[Sequence[int], int]]) -> Batch:
    """Concatenate variable-length id lists into the (ids, offsets) form EmbeddingBag takes."""
    lengths = [len(ids) for ids, _ in batch]
    offsets = torch.tensor([0, *lengths[:-1]], dtype=torch.long).cumsum(0)
    flat = torch.tensor([i for ids, _ in batch for i in ids], dtype=torch.long)
    labels = torch.tensor([label for _, label in batch], dtype=torch.long)
    return flat, offsets, labels


@torch.no_grad()
def predict(model: nn.Module, vocab: dict[str, int], texts: Sequence[str]) -> list[str]:
    """Label names for ``texts``; leaves the model in eval mode."""
    if not texts:
        return []
    model.eval()
    ids, offsets, _ = collate([(encode(text, vocab), 0) for text in texts])
    return [LABELS[i] for i in model(ids, offsets).argmax(dim=1).tolist()]
