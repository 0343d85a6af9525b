"""What Ray Train does on its own during a train job, told to the control plane.

Train restarts a failed worker group from the latest checkpoint by itself (up to
``max_retries`` times), and an elastic group restarts at the size the cluster can hold.
The control plane sees none of it through Ray's job status (still RUNNING), so the
driver appends each such event to the job's progress file; the reconciler copies new
ones into the job's events (``raydc jobs events``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ray.train import UserCallback

from raydc.workloads.protocol import (
    RUN_EVENT_RESIZED,
    RUN_EVENT_WORKER_FAILED,
    read_result,
    write_result,
)

_MAX_MESSAGE_CHARS = 300


class RunEvents(UserCallback):
    """Runs in the Train controller. Events of earlier attempts stay in the file, so
    their numbering (``seq``) goes on across a requeue."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.workers: int | None = None

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]],
                     checkpoint: Any) -> None:  # fmt: skip
        size = len(metrics)
        if self.workers is not None and size != self.workers:
            self._add(
                RUN_EVENT_RESIZED, f"the worker group runs {size} workers (was {self.workers})"
            )
        self.workers = size

    def after_exception(self, run_context: Any, worker_exceptions: dict[int, Exception]) -> None:
        failures = "; ".join(
            f"rank {rank}: {_first_line(error)}"
            for rank, error in sorted(worker_exceptions.items())
        )
        self._add(RUN_EVENT_WORKER_FAILED, failures or "a worker failed")

    def _add(self, reason: str, message: str) -> None:
        progress = read_result(self.path) or {}
        events = list(progress.get("events") or [])
        events.append({"seq": len(events) + 1, "reason": reason, "message": message,
                       "at": time.time()})  # fmt: skip
        write_result(self.path, {**progress, "events": events})


def _first_line(error: Exception) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    text = f"{type(error).__name__}: {lines[0] if lines else ''}"
    return text[:_MAX_MESSAGE_CHARS]
