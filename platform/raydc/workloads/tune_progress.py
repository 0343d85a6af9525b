"""A tune job's progress file: every trial's config, status and latest metrics.

The Tune driver rewrites it (atomically) whenever a trial changes; the control plane
shows it as the running job's result and keeps the final one in the job's result.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial
from ray.tune.result import AUTO_RESULT_KEYS

from raydc.workloads.protocol import write_result

# What Tune adds to every result besides AUTO_RESULT_KEYS; the rest is the user's.
_TUNE_KEYS = {*AUTO_RESULT_KEYS, "done", "trial_id", "experiment_tag", "should_checkpoint"}
_MAX_ERROR_CHARS = 500


def plain(value: Any) -> Any:
    """A JSON-ready copy: numpy scalars (what samplers return) as Python numbers, NaN and
    infinities (what a diverging trial reports) as None."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


def user_metrics(result: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics the train loop reported, without the ones Tune fills in."""
    return {k: plain(v) for k, v in result.items() if k not in _TUNE_KEYS}


def trial_error(trial: Trial) -> str | None:
    """The last line of a failed trial's error (the exception), shortened."""
    if trial.status != Trial.ERROR:
        return None
    try:
        text = Path(trial.error_file).read_text() if trial.error_file else ""
    except OSError:
        text = ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    message = lines[-1].strip() if lines else "the trial failed"
    return message[:_MAX_ERROR_CHARS]


def trial_summary(trial: Trial) -> dict[str, Any]:
    result = trial.last_result or {}
    summary = {
        "id": trial.trial_id,
        "status": trial.status,
        "config": plain(trial.config),
        "iterations": int(result.get("training_iteration") or 0),
        "metrics": user_metrics(result),
    }
    error = trial_error(trial)
    if error is not None:
        summary["error"] = error
    return summary


class ProgressFile(Callback):
    """Writes the progress file when anything in it changed, at most once per step of
    Tune's control loop (statuses are settled by then)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.checkpointed_at: float | None = None
        self._written: dict[str, Any] | None = None

    def on_checkpoint(self, iteration: int, trials: list[Trial], trial: Trial,
                      checkpoint: Any, **info: Any) -> None:  # fmt: skip
        self.checkpointed_at = time.time()

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        self.write(trials)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self.write(trials)

    def write(self, trials: list[Trial]) -> None:
        progress = {
            "trials": [trial_summary(t) for t in trials],
            "checkpointed_at": self.checkpointed_at,
        }
        if progress != self._written:
            write_result(self.path, progress)
            self._written = progress

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment; a resumed search rewrites the file.
        return {**self.__dict__, "_written": None}
