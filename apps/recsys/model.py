"""NeuMF (He et al., 2017): a generalised matrix factorisation branch and an MLP branch.

Both branches embed the user and the item; GMF multiplies the two embeddings element by
element (a learned dot product), the MLP reads their concatenation. One linear layer over
both branches gives the logit that the user interacts with the item.
"""

from __future__ import annotations

import torch
from torch import nn


class NeuMF(nn.Module):
    def __init__(
        self,
        num_users: int,
        num_items: int,
        embed_dim: int = 16,
        hidden_dim: int = 32,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_users = num_users
        self.num_items = num_items
        self.gmf_user = nn.Embedding(num_users, embed_dim)
        self.gmf_item = nn.Embedding(num_items, embed_dim)
        self.mlp_user = nn.Embedding(num_users, embed_dim)
        self.mlp_item = nn.Embedding(num_items, embed_dim)
        self.mlp = nn.Sequential(
            nn.Linear(2 * embed_dim, hidden_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, hidden_dim // 2),
            nn.ReLU(),
        )
        self.output = nn.Linear(embed_dim + hidden_dim // 2, 1)
        for embedding in (self.gmf_user, self.gmf_item, self.mlp_user, self.mlp_item):
            nn.init.normal_(embedding.weight, std=0.1)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits for aligned ``users`` and ``items`` of any (equal) shape."""
        gmf = self.gmf_user(users) * self.gmf_item(items)
        mlp = self.mlp(torch.cat([self.mlp_user(users), self.mlp_item(items)], dim=-1))
        return self.output(torch.cat([gmf, mlp], dim=-1)).squeeze(-1)

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        """Logits of every item for each of ``users``: shape ``(len(users), num_items)``.

        One forward pass: the users are broadcast against the whole item table.
        """
        all_items = torch.arange(self.num_items, device=users.device)
        return self(users[:, None].expand(-1, self.num_items), all_items.expand(len(users), -1))
