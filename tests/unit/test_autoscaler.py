"""Queue-driven autoscaling: node types from a `ray up` config, and the request sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from raydc.cluster.autoscaler import (
    ENV_REQUEST,
    REQUEST_ENTRYPOINT,
    ResourceRequests,
    node_types_from_cluster_config,
)
from raydc.scheduler.model import Job, Node, NodeType, PolicyConfig, Shape, Snapshot
from raydc.scheduler.policy import decide

CONFIG = """
cluster_name: gpu-cluster
max_workers: 8
head_node_type: head
available_node_types:
  head:
    resources: {CPU: 8}
  gpu-a100:
    resources: {CPU: 32, GPU: 4, memory: 274877906944, accelerator_a100: 4}
    max_workers: 4
  cpu-worker:
    resources: {CPU: 16}
"""


def test_node_types_come_from_the_ray_up_config(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(CONFIG)
    types = {t.name: t for t in node_types_from_cluster_config(path)}
    assert types["head"].max_count == 1 and types["head"].cpu == 8
    gpu = types["gpu-a100"]
    assert (gpu.cpu, gpu.gpu, gpu.memory_gb, gpu.max_count) == (32, 4, 256, 4)
    assert gpu.custom == (("accelerator_a100", 4.0),)
    assert types["cpu-worker"].max_count == 8  # the cluster-wide max_workers


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("available_node_types: {}", "available_node_types"),
        ("available_node_types: {w: {max_workers: 2}}", "available_node_types.w.resources"),
        ("available_node_types: {w: {resources: {CPU: -1}}}", "resources.CPU"),
        ("available_node_types: {w: {resources: {CPU: 1}, max_workers: x}}", "max_workers"),
    ],
)
def test_a_bad_cluster_config_names_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        node_types_from_cluster_config(path)


class RecordingJobs:
    """Stands in for Ray's job API: records what would be submitted."""

    def __init__(self) -> None:
        self.submitted: list[tuple[str, str, dict[str, Any]]] = []

    def submit(
        self, sid: str, entrypoint: str, runtime_env: dict[str, Any], metadata: dict[str, str]
    ) -> None:
        self.submitted.append((sid, entrypoint, runtime_env))


def test_a_request_is_sent_in_rays_names_only_when_it_changes() -> None:
    jobs = RecordingJobs()
    requests = ResourceRequests(jobs, {"py_modules": ["raydc"]}, min_gap_s=0)  # type: ignore[arg-type]
    bundle = {"cpu": 8.0, "gpu": 1.0, "memory_gb": 2.0, "accelerator_a100": 1.0}
    assert requests.send([bundle, bundle]) is not None
    assert requests.send([bundle, bundle]) is None  # unchanged: nothing to send
    assert requests.send([]) is not None  # the queue drained: clear the request
    (_, entrypoint, env), (_, _, cleared) = jobs.submitted
    assert entrypoint == REQUEST_ENTRYPOINT and env["py_modules"] == ["raydc"]
    sent = env["env_vars"][ENV_REQUEST]
    assert '"CPU": 8.0' in sent and '"GPU": 1.0' in sent and '"memory": 2147483648.0' in sent
    assert cleared["env_vars"][ENV_REQUEST] == "[]"


def test_the_policy_asks_for_what_runs_plus_what_waits_for_nodes() -> None:
    shape = Shape(cpu=8, gpu=1)
    nodes = [Node("n0", 32, 4, 256)]
    running = Job("r", "a", 1, 0.0, shape, 4, 4, workers=4, placement={"n0": 4}, started_at=0.0)
    waiting = Job("w", "a", 1, 1.0, shape, 8, 8)
    types = [NodeType("gpu-a100", 32, 4, 256, 4)]
    snapshot = Snapshot(10.0, nodes, [running], [waiting], config=PolicyConfig(),
                        node_types=types)  # fmt: skip
    request = decide(snapshot).scale_request
    assert request == [{"cpu": 8.0, "gpu": 1.0}] * 12
