"""What the control plane and a job's entrypoint tell each other.

The control plane passes the job through environment variables of the Ray runtime env;
the entrypoint writes its outcome to a result file in the artifact store, which the
control plane reads when Ray reports the job finished. No database access from inside
the cluster.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ENV_JOB_ID = "RAYDC_JOB_ID"
ENV_JOB_SPEC = "RAYDC_JOB_SPEC"
ENV_RESULT_PATH = "RAYDC_RESULT_PATH"
ENV_RUNS_DIR = "RAYDC_RUNS_DIR"
# Workers the scheduler gave this run; the job runs at exactly this size until the
# scheduler resizes it (stop, then resume from the checkpoint at the new size).
ENV_WORKERS = "RAYDC_WORKERS"
# A tune job's progress file: the driver rewrites it as trials start, report and end,
# and the reconciler copies it into the job's result while the job runs.
ENV_PROGRESS_PATH = "RAYDC_PROGRESS_PATH"
# Set on the workers of a Train run that must start from a given checkpoint directory
# (a tune trial resumed, or continuing from another trial's checkpoint under PBT).
ENV_INITIAL_CHECKPOINT = "RAYDC_INITIAL_CHECKPOINT"

# A compress job's parent: the registered version's checkpoint directory.
ENV_PARENT_MODEL_DIR = "RAYDC_PARENT_MODEL_DIR"

ENTRYPOINT = "python -m raydc.workloads"
# Events a train job's driver appends to its progress file ({"events": [...]}): what Ray
# Train did on its own while Ray still reports the job RUNNING.
RUN_EVENT_WORKER_FAILED = "worker_failed"
RUN_EVENT_RESIZED = "resized_by_ray"
RUN_EVENT_REASONS = (RUN_EVENT_WORKER_FAILED, RUN_EVENT_RESIZED)


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Atomically replace the result file, so a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(result, default=str))
    os.replace(temporary, path)


def read_result(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
