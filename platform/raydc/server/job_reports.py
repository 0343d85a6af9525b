"""What a job writes for the control plane, checked before anything of it is believed.

A job is a tenant's code: its result and progress files are untrusted input, like a
request body. They are read with a size limit, validated against a schema, and a
checkpoint a result names must lie inside that job's own run directory (symbolic links
followed), so a tenant can never register, and then deploy, another tenant's checkpoint.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from raydc.workloads.protocol import RUN_EVENT_REASONS

# A tune job's result carries every trial; a search of 10,000 trials fits easily.
MAX_REPORT_BYTES = 8 * 1024 * 1024
MAX_ERROR_CHARS = 8000
MAX_METRICS = 256
MAX_EVENT_MESSAGE_CHARS = 2000


class UntrustedReport(ValueError):
    """A job wrote something the control plane refuses to believe; says what, for the
    job's error."""


class _Report(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ResultFile(_Report):
    """``result-<sid>.json``: how the job's entrypoint says the attempt ended."""

    status: Literal["succeeded", "failed"]
    error: str | None = Field(default=None, max_length=MAX_ERROR_CHARS)
    metrics: dict[str, Any] = Field(default_factory=dict, max_length=MAX_METRICS)
    checkpoint_path: str | None = Field(default=None, max_length=4096)
    report: dict[str, Any] | None = None  # a compress job's parent/child measurements
    trials: list[dict[str, Any]] | None = None  # a tune job's
    best_trial: dict[str, Any] | None = None


class RunEvent(_Report):
    seq: int | None = None
    reason: Literal[RUN_EVENT_REASONS]  # type: ignore[valid-type]
    message: str = Field(default="", max_length=MAX_EVENT_MESSAGE_CHARS)
    at: float | None = None


class ProgressFile(BaseModel):
    """``progress.json``: a train job's run events, a tune job's trials so far."""

    model_config = ConfigDict(extra="ignore")

    events: list[RunEvent] = Field(default_factory=list)
    trials: list[dict[str, Any]] | None = None
    checkpointed_at: float | None = None


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a job may report")


def _read_json(path: Path, what: str) -> dict[str, Any] | None:
    """The file's JSON object, None if there is no file; UntrustedReport if it is too
    big, not JSON, or not an object."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_REPORT_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise UntrustedReport(f"the job's {what} cannot be read: {error}") from error
    if len(raw) > MAX_REPORT_BYTES:
        raise UntrustedReport(f"the job's {what} is over {MAX_REPORT_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise UntrustedReport(f"the job's {what} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise UntrustedReport(f"the job's {what} is not a JSON object")
    return data


def _first_error(error: ValidationError) -> str:
    item = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in item["loc"]) or "(top level)"
    return f"{where}: {item['msg']}"


def read_result_file(path: Path) -> ResultFile | None:
    data = _read_json(path, "result file")
    if data is None:
        return None
    try:
        return ResultFile.model_validate(data)
    except ValidationError as error:
        raise UntrustedReport(
            f"the job's result file is malformed: {_first_error(error)}"
        ) from error


def read_progress_file(path: Path) -> ProgressFile | None:
    """The progress file, or None when it is missing or cannot be believed: progress is
    informational, so a bad one is ignored (the result file decides the outcome)."""
    try:
        data = _read_json(path, "progress file")
        return ProgressFile.model_validate(data) if data is not None else None
    except (UntrustedReport, ValidationError):
        return None


def own_checkpoint(reported: str, runs_dir: Path, job_id: str) -> str:
    """The reported checkpoint, resolved, if it is a directory inside this job's own run
    directory; UntrustedReport otherwise. The run directory itself must not be a link:
    ``runs/<job>`` pointing at another job's directory would pass a plain prefix test."""
    own = runs_dir.resolve() / job_id
    if own.is_symlink() or not own.is_dir():
        raise UntrustedReport(f"the job's run directory {own} is missing or a link")
    try:
        resolved = Path(reported).resolve(strict=True)
    except (OSError, RuntimeError) as error:
        raise UntrustedReport(f"the reported checkpoint {reported!r} does not exist") from error
    if not resolved.is_relative_to(own):
        raise UntrustedReport(
            f"the reported checkpoint {reported!r} is outside the job's run directory {own}"
        )
    if not resolved.is_dir():
        raise UntrustedReport(f"the reported checkpoint {reported!r} is not a directory")
    return str(resolved)


def finite_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics as stored: JSON numbers only where they are finite (json.loads above
    already refused NaN and Infinity; a float overflow like 1e999 still parses to inf)."""
    return {
        str(key)[:200]: value
        for key, value in metrics.items()
        if not (isinstance(value, float) and not math.isfinite(value))
    }


@dataclass(frozen=True)
class DirectorySize:
    bytes: int
    files: int


def directory_size(path: Path) -> DirectorySize:
    """What a job's run directory holds on disk (links not followed)."""
    total = files = 0
    if not path.is_dir() or path.is_symlink():
        return DirectorySize(0, 0)
    for entry in path.rglob("*"):
        try:
            info = entry.lstat()
        except OSError:
            continue
        if not entry.is_symlink() and entry.is_file():
            total += info.st_size
            files += 1
    return DirectorySize(total, files)
