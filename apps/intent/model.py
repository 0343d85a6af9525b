"""What trains: MiniLM's top layers, mean pooling and a small classification head.

The encoder's bottom layers stay frozen (``encoder.MiniLM``); their output is the
classifier's input. So training runs the frozen part once per example, and a
checkpoint holds only what changed: the top layers and the head.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from .encoder import EncoderConfig, EncoderLayer, MiniLM, mean_pool


class IntentClassifier(nn.Module):
    """Hidden states after the frozen layers -> top layers -> mean pool -> head -> logits.

    ``hidden_dim`` 0 makes the head one linear layer; otherwise Linear-GELU-Linear.
    """

    def __init__(
        self,
        num_classes: int,
        finetune_layers: int = 1,
        hidden_dim: int = 0,
        dropout: float = 0.1,
        encoder_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        config = EncoderConfig(**(encoder_config or {}))
        if not 0 <= finetune_layers <= config.num_layers:
            raise ValueError(
                f"finetune_layers must be between 0 and {config.num_layers}, got {finetune_layers}"
            )
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(finetune_layers))
        self.dropout = nn.Dropout(dropout)
        size = config.hidden_size
        self.head: nn.Module
        if hidden_dim == 0:
            self.head = nn.Linear(size, num_classes)
        else:
            self.head = nn.Sequential(
                nn.Linear(size, hidden_dim),
                nn.GELU(),
                nn.Dropout(dropout),
                nn.Linear(hidden_dim, num_classes),
            )

    def start_from(self, encoder: MiniLM) -> None:
        """Initialise the top layers with the pretrained encoder's top layers."""
        first = len(encoder.layers) - len(self.layers)
        for mine, pretrained in zip(self.layers, encoder.layers[first:], strict=True):
            mine.load_state_dict(pretrained.state_dict())

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            hidden = layer(hidden, mask)
        return self.head(self.dropout(mean_pool(hidden, mask)))


class IntentModel(nn.Module):
    """The whole pipeline for inference: frozen bottom layers, then the classifier.

    Takes ``encoder`` over: its top layers, which the classifier replaces, are dropped.
    """

    def __init__(self, encoder: MiniLM, classifier: IntentClassifier) -> None:
        super().__init__()
        self.frozen_layers = len(encoder.layers) - len(classifier.layers)
        encoder.layers = encoder.layers[: self.frozen_layers]
        self.encoder = encoder
        self.classifier = classifier

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(ids, mask, stop=self.frozen_layers)
        return self.classifier(hidden, mask)


class IntentStudent(nn.Module):
    """A distillation student: fewer encoder layers, and word embeddings factorized to
    rank ``rank`` (vocab x rank times rank x hidden, from the teacher's table by SVD),
    which holds the teacher's 30,522 x 384 table in a tenth of the parameters. Takes
    the same (ids, mask) as :class:`IntentModel`."""

    def __init__(self, teacher: IntentModel, layers: list[int], rank: int) -> None:
        super().__init__()
        encoder = teacher.encoder
        stack = [*encoder.layers, *teacher.classifier.layers]
        size = encoder.config.hidden_size
        self.word_embeddings = nn.Embedding(encoder.config.vocab_size, rank)
        self.word_projection = nn.Linear(rank, size, bias=False)
        self.position_embeddings = nn.Embedding(encoder.config.max_positions, size)
        self.embedding_norm = nn.LayerNorm(size, eps=encoder.config.layer_norm_eps)
        # Copies, not fresh layers of the config's size: a pruned teacher's are smaller.
        self.layers = nn.ModuleList(copy.deepcopy(stack[index]) for index in layers)
        self.head = copy.deepcopy(teacher.classifier.head)
        with torch.no_grad():
            u, s, vh = torch.linalg.svd(encoder.word_embeddings.weight, full_matrices=False)
            self.word_embeddings.weight.copy_(u[:, :rank] * s[:rank])
            self.word_projection.weight.copy_(vh[:rank].T)
            self.position_embeddings.weight.copy_(encoder.position_embeddings.weight)
            # One segment only: fold the teacher's token type 0 into the positions.
            self.position_embeddings.weight.add_(encoder.token_type_embeddings.weight[0])
            self.embedding_norm.load_state_dict(encoder.embedding_norm.state_dict())

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        words = self.word_projection(self.word_embeddings(ids))
        hidden = self.embedding_norm(words + self.position_embeddings(positions)[None])
        for layer in self.layers:
            hidden = layer(hidden, mask)
        return self.head(mean_pool(hidden, mask))
