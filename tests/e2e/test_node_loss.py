"""A node dies under an elastic train job, on a two-raylet cluster with no autoscaler.

A Ray head of 1 CPU and a second node of 1 CPU (`ray start --address=...` in its own
process group) on this machine, and a `raydc server` pointed at the head, not starting
its own. An elastic job (workers min 1, max 2, STRICT_SPREAD) runs one worker on each
node; the second node's whole process group is killed, as a machine dies. Ray Train
restarts the group from the last registered checkpoint on the node that is left, the
job finishes with the right final epoch, and its events record the failure and the
resize. Nothing can replace the node here, so the group must shrink.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from raydc.client import Client
from raydc.cluster.local_head import LocalRayHead, free_port
from raydc.cluster.state import list_nodes
from tests.conftest import FIXTURES
from tests.e2e.server_process import Server

pytestmark = pytest.mark.e2e

RAY = str(Path(sys.executable).parent / "ray")


@dataclass
class TwoNodes:
    head: LocalRayHead
    dashboard_url: str
    worker: subprocess.Popen[bytes]
    server: Server
    member: Client

    def alive_nodes(self) -> int:
        return sum(n.alive for n in list_nodes(self.dashboard_url, self.head.token))

    def train_workers(self) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.dashboard_url}/api/v0/actors",
            params={"detail": "1", "limit": "1000"},
            headers={"Authorization": f"Bearer {self.head.token}"},
            timeout=10,
        )
        response.raise_for_status()
        return [a for a in response.json()["data"]["result"]["result"]
                if a["class_name"] == "RayTrainWorker" and a["state"] == "ALIVE"]  # fmt: skip


def wait_until(what: str, check: Callable[[], Any], timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")


def kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoNodes]:
    scratch = tmp_path_factory.mktemp("two-nodes")
    head = LocalRayHead(scratch / "ray", num_cpus=1)
    info = head.start()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(head.token_path)}
    env.pop("RAY_AUTH_TOKEN", None)
    with open(scratch / "worker-node.log", "wb") as log:
        worker = subprocess.Popen(
            [RAY, "start", f"--address={info.gcs_address}", "--num-cpus=1", "--block",
             "--disable-usage-stats", f"--dashboard-agent-listen-port={free_port()}",
             f"--dashboard-agent-grpc-port={free_port()}", f"--metrics-export-port={free_port()}"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    server: Server | None = None
    try:
        nodes = TwoNodes(head, info.dashboard_url, worker, None, None)  # type: ignore[arg-type]
        wait_until("the second node", lambda: nodes.alive_nodes() == 2, timeout_s=120)
        server = Server(scratch / "home", RAYDC_RAY_ADDRESS=info.dashboard_url,
                        RAYDC_RAY_AUTH_TOKEN=head.token)  # fmt: skip
        server.wait_healthy()
        admin = Client(server.url, (scratch / "home" / "admin_token").read_text().strip())
        admin.create_tenant("team-loss", quota={"cpu": 2})
        nodes.server = server
        nodes.member = Client(server.url, admin.create_token("team-loss", "member", "e2e")["token"])
        yield nodes
    finally:
        if server is not None and server.process.poll() is None:
            server.process.terminate()
            server.process.wait(timeout=60)
        kill_group(worker)
        head.stop()


def test_an_elastic_job_shrinks_onto_the_node_left_and_finishes(cluster: TwoNodes) -> None:
    # The control plane runs against this cluster: it started no Ray of its own.
    assert not (cluster.server.home / "ray" / "head.json").exists()
    spec = {
        "kind": "train", "name": "elastic", "entrypoint": "toy:train_loop",
        "code": {"ref": cluster.member.upload_code(FIXTURES / "toyjob")},
        "config": {"epochs": 12, "sleep_s": 3}, "max_retries": 3,
        "resources": {"workers": {"min": 1, "max": 2}, "cpus_per_worker": 1,
                      "placement": "STRICT_SPREAD"},
    }  # fmt: skip
    job_id = cluster.member.submit_job(spec)["id"]
    wait_until("a worker on each node",
               lambda: len({a["node_id"] for a in cluster.train_workers()}) == 2, 300)  # fmt: skip
    run_dir = cluster.server.home / "artifacts" / "runs" / job_id

    def registered_epoch() -> int:
        """The newest checkpoint Ray Train has registered: one only written to disk when
        the group fails is not what a restart resumes from."""
        try:
            snapshot = json.loads((run_dir / "checkpoint_manager_snapshot.json").read_text())
        except (OSError, ValueError):
            return 0
        latest = snapshot.get("latest_checkpoint_result") or {}
        return int((latest.get("metrics") or {}).get("epoch") or 0)

    wait_until("a registered checkpoint", lambda: registered_epoch() >= 2, timeout_s=180)
    lost_at = time.monotonic()
    kill_group(cluster.worker)  # the second node's raylet and every worker on it

    def shrunk() -> list[dict[str, Any]]:
        events = cluster.member.job_events(job_id)
        reasons = {e["reason"] for e in events}
        return events if {"worker_failed", "resized_by_ray"} <= reasons else []

    events = wait_until("the failure and the resize in the job's events", shrunk, 300)
    print(f"node loss: training resumed on 1 worker {time.monotonic() - lost_at:.1f}s after")
    done = cluster.member.wait(job_id, timeout_s=400, poll_s=1)
    assert done["status"] == "SUCCEEDED", done["error"]
    metrics = done["result"]["metrics"]
    assert metrics["epoch"] == 12
    assert metrics["resumed"] is True  # from the checkpoint, not from epoch 0
    assert metrics["workers"] == 1  # on the node that is left
    failed = next(e for e in events if e["reason"] == "worker_failed")
    resized = next(e for e in events if e["reason"] == "resized_by_ray")
    assert failed["message"].startswith("rank ")
    assert resized["message"] == "the worker group runs 1 workers (was 2)"
    assert failed["to_status"] == resized["to_status"] == "RUNNING"
    assert cluster.alive_nodes() == 1
