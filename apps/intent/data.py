"""The dataset this app ships: ``intents.jsonl``, one utterance per line.

Each line is ``{"text": ..., "intent": ..., "split": "train" | "test"}``. The file is
made by ``generate_data.py`` (see there for provenance); the split is part of the file,
so every run, every worker and every checkpoint evaluation uses the same held-out set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DATA_FILE = Path(__file__).resolve().parent / "intents.jsonl"

Example = tuple[str, int]  # (utterance, label index)


@dataclass(frozen=True)
class Dataset:
    labels: list[str]  # label index -> intent name, sorted by name
    train: list[Example]
    test: list[Example]


def read_rows(path: Path = DATA_FILE) -> list[dict[str, str]]:
    rows = []
    with path.open() as lines:
        for number, line in enumerate(lines, start=1):
            row = json.loads(line)
            if set(row) != {"text", "intent", "split"} or row["split"] not in ("train", "test"):
                raise ValueError(f"{path}:{number}: expected text, intent and split, got {row}")
            rows.append(row)
    return rows


def load_dataset(path: Path = DATA_FILE, labels: list[str] | None = None) -> Dataset:
    """The train and test splits; ``labels`` (from a checkpoint) fixes the label indices."""
    rows = read_rows(path)
    labels = labels or sorted({row["intent"] for row in rows})
    index = {label: i for i, label in enumerate(labels)}
    unknown = {row["intent"] for row in rows} - set(index)
    if unknown:
        raise ValueError(f"{path}: intents not among the labels: {sorted(unknown)}")
    splits: dict[str, list[Example]] = {"train": [], "test": []}
    for row in rows:
        splits[row["split"]].append((row["text"], index[row["intent"]]))
    return Dataset(labels=list(labels), train=splits["train"], test=splits["test"])
