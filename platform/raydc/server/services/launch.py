"""What Ray is asked to run for one attempt of a job: entrypoint and runtime env."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import raydc
from raydc.cluster.jobs import submission_id
from raydc.server.services.code import bundle_dir
from raydc.settings import Settings
from raydc.workloads import protocol

# raydc travels with every job, so a cluster needs only Ray and torch installed and its
# workloads always match the control plane's version.
RAYDC_PACKAGE_DIR = Path(raydc.__file__).resolve().parent


@dataclass(frozen=True)
class LaunchRequest:
    submission_id: str
    entrypoint: str
    runtime_env: dict[str, Any]
    metadata: dict[str, str]
    result_path: Path


def result_path(settings: Settings, job_id: str, sid: str) -> Path:
    return settings.jobs_dir / job_id / f"result-{sid}.json"


def logs_path(settings: Settings, job_id: str, sid: str) -> Path:
    return settings.jobs_dir / job_id / f"logs-{sid}.txt"


def progress_path(settings: Settings, job_id: str) -> Path:
    """A tune job's trials so far; one file for every attempt, as the search resumes."""
    return settings.jobs_dir / job_id / "progress.json"


def build_launch(
    settings: Settings,
    job_id: str,
    tenant: str,
    attempt: int,
    spec: dict[str, Any],
    workers: int | None = None,
    parent_dir: str | None = None,
) -> LaunchRequest:
    sid = submission_id(job_id, attempt)
    code = spec["code"]
    py_modules = [str(RAYDC_PACKAGE_DIR)]
    runtime_env: dict[str, Any] = {"excludes": ["__pycache__", "*.pyc", ".git"]}
    if code.get("app"):
        py_modules.append(str(settings.apps_dir / code["app"]))
    else:
        runtime_env["working_dir"] = str(bundle_dir(settings.code_dir, code["ref"]))
    result = result_path(settings, job_id, sid)
    runtime_env["py_modules"] = py_modules
    runtime_env["env_vars"] = {
        **spec.get("env", {}),
        protocol.ENV_JOB_ID: job_id,
        # The spec without `env`: those values are already set, and may be secrets that
        # should not be copied into one more variable that Ray's dashboard shows.
        protocol.ENV_JOB_SPEC: json.dumps({k: v for k, v in spec.items() if k != "env"}),
        protocol.ENV_RESULT_PATH: str(result),
        protocol.ENV_RUNS_DIR: str(settings.runs_dir),
        protocol.ENV_PROGRESS_PATH: str(progress_path(settings, job_id)),
        "HF_HUB_OFFLINE": "1",
    }
    if workers is not None:
        runtime_env["env_vars"][protocol.ENV_WORKERS] = str(workers)
    if parent_dir is not None:
        runtime_env["env_vars"][protocol.ENV_PARENT_MODEL_DIR] = parent_dir
    return LaunchRequest(
        submission_id=sid,
        entrypoint=protocol.ENTRYPOINT,
        runtime_env=runtime_env,
        metadata={"raydc_job_id": job_id, "raydc_tenant": tenant, "raydc_attempt": str(attempt)},
        result_path=result,
    )
