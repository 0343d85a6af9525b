"""Queue-driven autoscaling: what a cluster may grow to, and asking Ray's autoscaler.

The node types and their maximum counts come from the cluster's `ray up` config
(``available_node_types``). The request itself is ``ray.autoscaler.sdk.request_resources``,
which needs a Ray driver: the control plane is not one (it talks to Ray over HTTP), so a
short job on the cluster makes the call (``python -m raydc.workloads.request_resources``).
Ray keeps the request until the next one replaces it; it is sent only when it changes.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from raydc.cluster.jobs import RayJobs
from raydc.specs.capacity import NodeType

log = logging.getLogger(__name__)
_BYTES_PER_GB = 1024**3
UNKNOWN_MEMORY_GB = 1e9  # a node type that does not declare memory: never the limit
REQUEST_ENTRYPOINT = "python -m raydc.workloads.request_resources"
ENV_REQUEST = "RAYDC_RESOURCE_REQUEST"


def node_types_from_cluster_config(path: Path) -> list[NodeType]:
    """The node types of a `ray up` config; raises ValueError naming a bad field."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: cannot read the cluster config: {error}") from error
    types = (data or {}).get("available_node_types")
    if not isinstance(types, dict) or not types:
        raise ValueError(f"{path}: 'available_node_types' is missing or empty")
    head = data.get("head_node_type")
    found = []
    for name, spec in types.items():
        where = f"{path}: available_node_types.{name}"
        resources = (spec or {}).get("resources")
        if not isinstance(resources, dict):
            raise ValueError(f"{where}.resources is missing")
        amounts: dict[str, float] = {}
        for key, value in resources.items():
            if not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{where}.resources.{key} must be a non-negative number")
            amounts[str(key)] = float(value)
        count = 1 if name == head else spec.get("max_workers", data.get("max_workers", 0))
        if not isinstance(count, int) or count < 0:
            raise ValueError(f"{where}.max_workers must be a non-negative integer")
        memory = amounts.pop("memory", None)
        found.append(
            NodeType(
                name=str(name), cpu=amounts.pop("CPU", 0.0), gpu=amounts.pop("GPU", 0.0),
                memory_gb=memory / _BYTES_PER_GB if memory is not None else UNKNOWN_MEMORY_GB,
                max_count=count, custom=tuple(sorted(amounts.items())),
            )
        )  # fmt: skip
    return found


def ray_bundle(bundle: dict[str, float]) -> dict[str, float]:
    """A scheduler bundle (cpu, gpu, memory_gb, custom) in Ray's resource names."""
    out: dict[str, float] = {}
    for key, value in bundle.items():
        if key == "cpu":
            out["CPU"] = value
        elif key == "gpu":
            out["GPU"] = value
        elif key == "memory_gb":
            out["memory"] = value * _BYTES_PER_GB
        else:
            out[key] = value
    return out


class ResourceRequests:
    """Sends the scheduler's autoscaler request when it changes, at most every min_gap_s."""

    def __init__(self, jobs: RayJobs, runtime_env: dict[str, Any], min_gap_s: float = 10.0):
        self.jobs = jobs
        self.runtime_env = runtime_env
        self.min_gap_s = min_gap_s
        self.last: list[dict[str, float]] | None = None
        self.sent_at = float("-inf")

    def send(self, bundles: list[dict[str, float]]) -> str | None:
        """Submit the request if it changed; returns the Ray submission id, if sent."""
        if bundles == self.last or time.monotonic() - self.sent_at < self.min_gap_s:
            return None
        request = [ray_bundle(b) for b in bundles]
        env = dict(self.runtime_env)
        env["env_vars"] = {**env.get("env_vars", {}), ENV_REQUEST: json.dumps(request)}
        sid = f"raydc-autoscale-{uuid.uuid4().hex[:12]}"
        self.jobs.submit(sid, REQUEST_ENTRYPOINT, env, {"raydc_autoscale": "1"})
        self.last, self.sent_at = bundles, time.monotonic()
        log.info("asked the autoscaler for %d bundles (%s)", len(request), sid)
        return sid
