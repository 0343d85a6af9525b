"""Workload traces for the scheduler's simulator: the generic CSV and the Philly CSV.

Generic: ``submit_time,duration,gpus[,cpus,memory_gb,tenant,priority]`` (seconds; only
the first three columns are required). Philly (Microsoft's 2017 GPU cluster, as in the
Pollux artifact): ``timestamp,duration,num_gpus,gpu_time,cluster``, the cluster being
the tenant. A bad row is reported with its line number, never skipped silently.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

PRIORITIES = ("low", "normal", "high", "critical")
GENERIC_REQUIRED = ("submit_time", "duration", "gpus")
PHILLY_COLUMNS = ("timestamp", "duration", "num_gpus", "gpu_time", "cluster")


@dataclass(frozen=True, slots=True)
class TraceJob:
    id: int
    submit_s: float  # seconds after the trace's first submission
    duration_s: float  # run time when given all its GPUs from start to end
    gpus: int
    cpus: float = 0.0
    memory_gb: float = 0.0
    tenant: str = "default"
    priority: str = "normal"


@dataclass
class Trace:
    jobs: list[TraceJob]
    errors: list[str] = field(default_factory=list)  # "line N: what is wrong"


class TraceFormatError(ValueError):
    """The file is not a trace at all (unknown header)."""


def _number(row: dict[str, str], column: str, line: int, *, integer: bool = False) -> float:
    text = (row.get(column) or "").strip()
    if not text:
        raise ValueError(f"line {line}: '{column}' is missing")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"line {line}: '{column}' is not a number: {text!r}") from None
    if value < 0:
        raise ValueError(f"line {line}: '{column}' is negative: {text}")
    if integer and value != int(value):
        raise ValueError(f"line {line}: '{column}' is not a whole number: {text}")
    return value


def _generic_row(row: dict[str, str], line: int) -> TraceJob:
    priority = (row.get("priority") or "normal").strip() or "normal"
    if priority not in PRIORITIES:
        raise ValueError(f"line {line}: 'priority' must be one of {', '.join(PRIORITIES)}")
    optional = {c: _number(row, c, line) for c in ("cpus", "memory_gb") if row.get(c)}
    return TraceJob(
        id=0,
        submit_s=_number(row, "submit_time", line),
        duration_s=_number(row, "duration", line),
        gpus=int(_number(row, "gpus", line, integer=True)),
        tenant=(row.get("tenant") or "default").strip() or "default",
        priority=priority,
        **optional,
    )


def _philly_row(row: dict[str, str], line: int) -> TraceJob:
    stamp = (row.get("timestamp") or "").strip()
    try:
        # Read as UTC: only differences matter, and a local zone's DST would skew them.
        moment = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(
            f"line {line}: 'timestamp' is not 'YYYY-MM-DD HH:MM:SS': {stamp!r}"
        ) from None
    submitted = moment.timestamp()
    tenant = (row.get("cluster") or "").strip()
    if not tenant:
        raise ValueError(f"line {line}: 'cluster' is missing")
    return TraceJob(
        id=0,
        submit_s=submitted,
        duration_s=_number(row, "duration", line),
        gpus=int(_number(row, "num_gpus", line, integer=True)),
        tenant=tenant,
    )


def parse_trace(lines: Iterable[str]) -> Trace:
    reader = csv.DictReader(lines)
    header = tuple(name.strip() for name in (reader.fieldnames or ()))
    if header[: len(PHILLY_COLUMNS)] == PHILLY_COLUMNS:
        parse_row = _philly_row
    elif set(GENERIC_REQUIRED) <= set(header):
        parse_row = _generic_row
    else:
        raise TraceFormatError(
            f"unknown trace header {','.join(header)!r}: expected "
            f"{','.join(GENERIC_REQUIRED)}[,cpus,memory_gb,tenant,priority] or "
            f"{','.join(PHILLY_COLUMNS)}"
        )
    jobs: list[TraceJob] = []
    errors: list[str] = []
    for row in reader:
        line = reader.line_num
        if not any((value or "").strip() for value in row.values()):
            continue  # a blank line is not a row
        try:
            jobs.append(parse_row(row, line))
        except ValueError as error:
            errors.append(str(error))
    jobs.sort(key=lambda job: job.submit_s)
    start = jobs[0].submit_s if jobs else 0.0
    ordered = [
        TraceJob(i, job.submit_s - start, job.duration_s, job.gpus, job.cpus, job.memory_gb,
                 job.tenant, job.priority)
        for i, job in enumerate(jobs)
    ]  # fmt: skip
    return Trace(jobs=ordered, errors=errors)


def load_trace(path: Path) -> Trace:
    with open(path, newline="") as handle:
        return parse_trace(handle)
