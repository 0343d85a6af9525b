"""Echo predictor: answers ``<version>:<input>`` and records each batch's size.

Its checkpoint dir holds ``version.txt``, and optionally ``load_s`` (seconds a load takes)
and ``predict_s`` (seconds a batch takes). Every batch appends its size to
``batches.log`` there, so a test can see what the replicas batched.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def _seconds(path: Path) -> float:
    return float(path.read_text()) if path.exists() else 0.0


class Predictor:
    def __init__(self, checkpoint_dir: str) -> None:
        self.dir = Path(checkpoint_dir)
        self.version = (self.dir / "version.txt").read_text().strip()
        self.predict_s = _seconds(self.dir / "predict_s")
        time.sleep(_seconds(self.dir / "load_s"))

    def predict(self, inputs: list[Any]) -> list[str]:
        if "bad" in inputs:
            raise ValueError("echo cannot predict 'bad'")
        if "crash" in inputs:
            raise RuntimeError("echo crashed")
        with open(self.dir / "batches.log", "a") as log:
            log.write(f"{len(inputs)} {os.getpid()}\n")
        time.sleep(self.predict_s)
        return [f"{self.version}:{item}" for item in inputs]
