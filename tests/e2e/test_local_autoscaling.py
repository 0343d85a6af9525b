"""`raydc cluster up cluster_configs/local-autoscaling.yaml`: a cluster that autoscales
on this machine (Ray's fake_multinode provider, autoscaler v2) with a control plane
pointed at it, driven over REST like any user would.

- a job too big for the head waits in the queue, its demand reaches the autoscaler, a
  worker node is launched, the job runs there and succeeds; once the queue is empty the
  idle node is removed;
- a 2-worker STRICT_SPREAD job runs its workers on two different nodes;
- the control plane runs against that cluster without starting a Ray of its own.

Losing a node is tested on a cluster without an autoscaler (test_node_loss.py): here the
autoscaler replaces a lost node within seconds (benchmarks/cluster_elastic.py times it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from raydc.client import Client
from raydc.cluster.local_head import LocalRayHead
from tests.conftest import FIXTURES, REPO, free_port
from tests.e2e.server_process import processes_under

pytestmark = pytest.mark.e2e

CONFIG = REPO / "cluster_configs" / "local-autoscaling.yaml"
RAYDC = str(Path(sys.executable).parent / "raydc")
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


@dataclass
class LocalCluster:
    home: Path
    url: str
    admin: Client
    member: Client
    dashboard_url: str
    gcs_address: str
    ray_token: str

    def nodes(self) -> list[dict[str, Any]]:
        return list(self.admin.cluster()["nodes"])

    def actors(self) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.dashboard_url}/api/v0/actors",
            params={"detail": "1", "limit": "1000"},
            headers={"Authorization": f"Bearer {self.ray_token}"},
            timeout=10,
        )
        response.raise_for_status()
        return list(response.json()["data"]["result"]["result"])


def cli(home: Path, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAYDC_")}
    env.update(RAYDC_HOME=str(home), RAYDC_PORT=str(PORT), RAYDC_RECONCILE_INTERVAL_S="0.5")
    return subprocess.run(
        [RAYDC, *args], env=env, capture_output=True, text=True, timeout=timeout_s
    )


PORT = free_port()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    home = tmp_path_factory.mktemp("raydc-home")
    started = cli(home, "cluster", "up", str(CONFIG))
    state = home / "clusters" / "raydc-local"
    head = LocalRayHead(state / "ray")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        url = f"http://127.0.0.1:{PORT}"
        token_path = state / "control-plane" / "admin_token"
        assert f"control plane: {url}" in started.stdout
        assert f"admin token:   {token_path}" in started.stdout
        admin = Client(url, token_path.read_text().strip())
        admin.create_tenant("team-scale", quota={"cpu": 8})
        member = Client(url, admin.create_token("team-scale", "member", "e2e")["token"])
        info = head.recorded()
        assert info is not None
        yield LocalCluster(
            home, url, admin, member, info.dashboard_url, info.gcs_address, head.token
        )
    finally:
        stopped = cli(home, "cluster", "down", str(CONFIG))
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    # Down stops the head and every node the autoscaler started, and nothing else.
    assert processes_under(head.temp_dir) == []


def toy_job(name: str, **resources: Any) -> dict[str, Any]:
    return {
        "kind": "train", "name": name, "code": {"app": "placeholder"},
        "entrypoint": "toy:train_loop", "config": {"epochs": 3, "sleep_s": 2},
        "resources": resources, "max_retries": 0,
    }  # fmt: skip


def submit(cluster: LocalCluster, spec: dict[str, Any]) -> str:
    spec["code"] = {"ref": cluster.member.upload_code(FIXTURES / "toyjob")}
    return str(cluster.member.submit_job(spec)["id"])


def wait_until(what: str, check: Callable[[], Any], timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")


def workers_alive(cluster: LocalCluster) -> list[dict[str, Any]]:
    return [n for n in cluster.nodes() if n["alive"] and not n["is_head"]]


def test_config_on_disk_is_what_the_head_runs(cluster: LocalCluster) -> None:
    """The head runs the checked-in config, with only the head's address filled in."""
    rendered = yaml.safe_load(
        (cluster.home / "clusters" / "raydc-local" / "ray" / "autoscaling.yaml").read_text()
    )
    source = yaml.safe_load(CONFIG.read_text())
    assert rendered["available_node_types"] == source["available_node_types"]
    gcs_port = cluster.gcs_address.rsplit(":", 1)[1]
    assert rendered["provider"]["gcs_address"].endswith(f":{gcs_port}")
    # The control plane was pointed at this cluster: it started no Ray head of its own.
    assert not (cluster.home / "clusters" / "raydc-local" / "control-plane" / "ray").exists()


def test_a_job_too_big_for_the_head_scales_the_cluster_up_then_down(
    cluster: LocalCluster,
) -> None:
    assert workers_alive(cluster) == [], "the cluster starts with its head alone"
    head_cpu = next(n["cpu"] for n in cluster.nodes() if n["is_head"])
    assert head_cpu < 2

    submitted = time.monotonic()
    job_id = submit(cluster, toy_job("scale-up", workers=1, cpus_per_worker=2))
    queued = cluster.member.get_job(job_id)
    assert queued["status"] == "PENDING"
    launched = wait_until("a worker node", lambda: workers_alive(cluster), timeout_s=240)
    assert launched[0]["cpu"] == 2  # the config's cpu-2 node type
    running = wait_until(
        "the job to run",
        lambda: cluster.member.get_job(job_id)["status"] in ("RUNNING", *TERMINAL),
        timeout_s=240,
    )
    assert running
    print(f"scale-up: job RUNNING {time.monotonic() - submitted:.1f}s after submission")
    done = cluster.member.wait(job_id, timeout_s=300, poll_s=1)
    assert done["status"] == "SUCCEEDED", done["error"]
    assert done["result"]["metrics"]["epoch"] == 3

    # The queue is empty: the request is withdrawn and the idle node goes (idle timeout
    # 0.5 min in the config).
    wait_until("the idle worker node to be removed",
               lambda: not workers_alive(cluster), timeout_s=240)  # fmt: skip
    assert cluster.admin.cluster()["pending_demand"]["cpu"] == 0


def test_a_strict_spread_gang_runs_on_two_nodes(cluster: LocalCluster) -> None:
    job_id = submit(
        cluster,
        toy_job("spread", workers=2, cpus_per_worker=1, placement="STRICT_SPREAD"),
    )
    done = cluster.member.wait(job_id, timeout_s=400, poll_s=1)
    assert done["status"] == "SUCCEEDED", done["error"]
    assert done["result"]["metrics"]["workers"] == 2
    # Ray's record of the job's training workers (kept after they exit): the gang's two
    # workers share one placement group, on two different nodes.
    gangs: dict[str, list[str]] = {}
    for actor in cluster.actors():
        if actor["class_name"] == "RayTrainWorker" and actor.get("placement_group_id"):
            gangs.setdefault(actor["placement_group_id"], []).append(actor["node_id"])
    pairs = [nodes for nodes in gangs.values() if len(nodes) == 2]
    assert len(pairs) == 1, gangs
    assert len(set(pairs[0])) == 2, f"both workers on one node: {pairs[0]}"
