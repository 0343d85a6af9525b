"""Serving: ``sentiment.serve:Predictor`` labels headlines with a trained checkpoint.

An input is a headline string; its prediction is the label name, ``"negative"``,
``"neutral"`` or ``"positive"``. A batch goes through the model in one forward pass.
"""

from __future__ import annotations

from typing import Any

from raydc.workloads.compress_ops import is_compressed, load_compressed
from raydc.workloads.context import load_checkpoint_dir

from .data import LABELS
from .model import predict
from .train import load_model

MAX_TEXT_CHARS = 10_000  # a headline is ~100; this only stops a pasted document


class Predictor:
    """One model version; ``predict`` takes a batch of headline strings."""

    def __init__(self, checkpoint_dir: str) -> None:
        state = load_checkpoint_dir(checkpoint_dir)
        # model.predict names classes by LABELS; a checkpoint trained with other labels
        # would be served with wrong names, so refuse it instead.
        if list(state.get("labels", LABELS)) != LABELS:
            raise ValueError(
                f"checkpoint labels {state['labels']} differ from this code's {LABELS}"
            )
        # A compressed version (kind: compress) is saved whole; a trained one as weights.
        self.model = (
            load_compressed(checkpoint_dir) if is_compressed(checkpoint_dir) else load_model(state)
        )
        self.vocab: dict[str, int] = state["vocab"]

    def predict(self, inputs: list[Any]) -> list[str]:
        # No position in the message: under Serve a batch mixes inputs of many requests,
        # so an index here would not be the caller's.
        for text in inputs:
            if not isinstance(text, str):
                raise ValueError(f"each input must be a headline string, got {type(text).__name__}")
            if len(text) > MAX_TEXT_CHARS:
                raise ValueError(
                    f"input text is {len(text)} characters long; at most {MAX_TEXT_CHARS} allowed"
                )
        return predict(self.model, self.vocab, inputs)
