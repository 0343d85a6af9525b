"""The predictor a deployment of this app serves (``predictor: intent.serve:Predictor``).

``Predictor(checkpoint_dir)`` loads one model version; ``predict(texts)`` answers one
intent name per text. A batch is tokenized once and run in a few forward passes of
texts of similar length (see ``PASS_SIZE``).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from raydc.workloads.context import load_checkpoint_dir

from .compress import load_inference_model
from .encoder import load_tokenizer, tokenize

# Inputs per forward pass. A batch is sorted by length and run in passes of this many,
# each padded only to its own longest text: for a batch of 32 chat messages that was
# ~35% faster on a 2-core CPU than one pass padded to the longest of all 32.
PASS_SIZE = 16
MAX_DEFAULT_THREADS = 4


def _thread_count(requested: int | None) -> int:
    """``requested``, else what Ray gave this process (it sets OMP_NUM_THREADS to a
    replica's CPUs), else the machine's cores up to 4: more threads than cores makes
    OpenMP spin, which slows a small model down many times over on a busy machine."""
    if requested is not None:
        return max(1, requested)
    from_env = os.environ.get("OMP_NUM_THREADS", "")
    if from_env.isdigit() and int(from_env) > 0:
        return int(from_env)
    return min(MAX_DEFAULT_THREADS, os.cpu_count() or 1)


class Predictor:
    def __init__(self, checkpoint_dir: str, num_threads: int | None = None) -> None:
        torch.set_num_threads(_thread_count(num_threads))
        state = load_checkpoint_dir(checkpoint_dir)
        self.labels: list[str] = list(state["labels"])
        self.epoch: int = state["epoch"]
        self.model = load_inference_model(checkpoint_dir, state)
        self.tokenizer = load_tokenizer()

    def predict(self, inputs: list[Any]) -> list[Any]:
        """One intent name per input string; a non-string input is a ValueError."""
        for index, text in enumerate(inputs):
            if not isinstance(text, str):
                raise ValueError(f"inputs[{index}] must be a string, got {type(text).__name__}")
        if not inputs:
            return []
        ids, mask = tokenize(self.tokenizer, inputs)
        lengths = mask.sum(dim=1)
        order = torch.argsort(lengths).tolist()
        best = [0] * len(inputs)
        with torch.inference_mode():
            for start in range(0, len(order), PASS_SIZE):
                rows = order[start : start + PASS_SIZE]
                width = int(lengths[rows].max())
                logits = self.model(ids[rows, :width], mask[rows, :width])
                for row, label in zip(rows, logits.argmax(dim=1).tolist(), strict=True):
                    best[row] = label
        return [self.labels[label] for label in best]
