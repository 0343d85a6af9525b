"""Entrypoint of every raydc job on the cluster: ``python -m raydc.workloads``."""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from pathlib import Path

from raydc.specs.jobs import CompressSpec, TuneSpec, parse_job_spec
from raydc.workloads.compress import run_compress
from raydc.workloads.entrypoints import EntrypointError
from raydc.workloads.protocol import (
    ENV_JOB_ID,
    ENV_JOB_SPEC,
    ENV_PARENT_MODEL_DIR,
    ENV_PROGRESS_PATH,
    ENV_RESULT_PATH,
    ENV_RUNS_DIR,
    ENV_WORKERS,
    write_result,
)
from raydc.workloads.train import run_train
from raydc.workloads.tune import TuneFailed, run_tune

_MAX_ERROR_CHARS = 4000


def _short_error(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= _MAX_ERROR_CHARS else text[:_MAX_ERROR_CHARS] + " ..."


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    job_id = os.environ[ENV_JOB_ID]
    result_path = Path(os.environ[ENV_RESULT_PATH])
    spec = parse_job_spec(json.loads(os.environ[ENV_JOB_SPEC]))
    print(f"raydc: job {job_id} ({spec.kind} '{spec.name}') starting", flush=True)
    runs_dir = Path(os.environ[ENV_RUNS_DIR])
    workers = int(os.environ[ENV_WORKERS]) if os.environ.get(ENV_WORKERS) else None
    try:
        if isinstance(spec, CompressSpec):
            outcome = run_compress(
                spec, job_id, runs_dir, os.environ[ENV_PARENT_MODEL_DIR], workers
            )
        elif isinstance(spec, TuneSpec):
            # The scheduler sized the job for all its concurrent trials; each trial
            # runs at the spec's per-trial size.
            progress = Path(os.environ[ENV_PROGRESS_PATH])
            outcome = run_tune(spec, job_id, runs_dir, progress)
        else:
            progress_file = os.environ.get(ENV_PROGRESS_PATH)
            outcome = run_train(
                spec, job_id, runs_dir, workers, Path(progress_file) if progress_file else None
            )
    except (EntrypointError, TuneFailed) as error:
        print(f"raydc: {error}", file=sys.stderr, flush=True)
        write_result(result_path, {"status": "failed", "error": str(error)})
        return 1
    except Exception as error:
        traceback.print_exc()
        write_result(result_path, {"status": "failed", "error": _short_error(error)})
        return 1
    write_result(result_path, {"status": "succeeded", **outcome})
    print(
        f"raydc: job {job_id} finished: {json.dumps(outcome['metrics'], default=str)}", flush=True
    )
    return 0


def exit_now(code: int) -> None:
    """Leave without Python's and Ray's exit handlers. The result is written by now; a
    driver whose Train run failed was seen to hang in Ray's shutdown for ten minutes,
    while its worker group kept holding the cluster's CPUs. Once the driver is gone,
    Ray removes the job's actors and placement groups itself."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
