"""Scale-up and node-loss recovery on the local autoscaling cluster (issue #6).

`raydc cluster up cluster_configs/local-autoscaling.yaml` (a Ray head of 1 CPU whose
autoscaler starts `cpu-2` worker nodes as raylets on this machine, and a control plane
pointed at it), a tenant and a member token, then over REST:

1. scale-up: a job of one 2-CPU worker (more than the head has) is submitted; reported:
   seconds until a worker node is alive, until the job is RUNNING, and, after it ends,
   until the idle node is gone (idle timeout 30 s in the config);
2. node loss: an elastic job (workers min 1, max 2, STRICT_SPREAD, 3 s epochs) runs on the
   head and a worker node; once Ray Train has registered a checkpoint, that node's
   raylet and workers are killed; reported: seconds from the kill until raydc records
   the failure, and until the first checkpoint written after the kill (training
   resumed), and the final epoch and ``resumed`` flag.

The toy train loop is tests/fixtures/toyjob. Everything shares the 2 cores. Prints JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from raydc.client import Client
from raydc.cluster import launcher
from raydc.cluster.local_head import FAKE_HEAD_NODE_ID, LocalRayHead, free_port
from raydc.settings import Settings

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "cluster_configs" / "local-autoscaling.yaml"
TOYJOB = REPO / "tests" / "fixtures" / "toyjob"
RAYDC = str(Path(sys.executable).parent / "raydc")


def wait_until(what: str, check: Callable[[], Any], timeout_s: float, poll_s: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll_s)
    raise RuntimeError(f"timed out after {timeout_s:g}s waiting for {what}")


class Bench:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RAYDC_")}
        self.env.update(RAYDC_HOME=str(home), RAYDC_PORT=str(self.port),
                        RAYDC_RECONCILE_INTERVAL_S="0.5")  # fmt: skip
        self.state = home / "clusters" / "raydc-local"

    def up(self) -> None:
        started = subprocess.run([RAYDC, "cluster", "up", str(CONFIG)], env=self.env,
                                 capture_output=True, text=True, timeout=300)  # fmt: skip
        if started.returncode != 0:
            raise RuntimeError(started.stdout + started.stderr)
        url = f"http://127.0.0.1:{self.port}"
        admin = Client(url, (self.state / "control-plane" / "admin_token").read_text().strip())
        admin.create_tenant("bench", quota={"cpu": 8})
        self.admin = admin
        self.member = Client(url, admin.create_token("bench", "member", "bench")["token"])
        self.local = launcher.LocalCluster(
            launcher.load_config(CONFIG), Settings(home=self.home, port=self.port)
        )
        info = LocalRayHead(self.state / "ray").recorded()
        assert info is not None
        self.dashboard_url = info.dashboard_url
        self.ray_token = LocalRayHead(self.state / "ray").token

    def down(self) -> None:
        subprocess.run([RAYDC, "cluster", "down", str(CONFIG)], env=self.env, timeout=300)

    def submit(self, name: str, config: dict[str, Any], **resources: Any) -> str:
        spec = {"kind": "train", "name": name, "code": {"ref": self.member.upload_code(TOYJOB)},
                "entrypoint": "toy:train_loop", "config": config, "resources": resources,
                "max_retries": 3}  # fmt: skip
        return str(self.member.submit_job(spec)["id"])

    def workers_alive(self) -> list[dict[str, Any]]:
        return [n for n in self.admin.cluster()["nodes"] if n["alive"] and not n["is_head"]]

    def train_workers(self) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.dashboard_url}/api/v0/actors",
            params={"detail": "1", "limit": "1000"},
            headers={"Authorization": f"Bearer {self.ray_token}"},
            timeout=10,
        )
        return [a for a in response.json()["data"]["result"]["result"]
                if a["class_name"] == "RayTrainWorker" and a["state"] == "ALIVE"]  # fmt: skip

    def run_dir(self, job_id: str) -> Path:
        return self.state / "control-plane" / "artifacts" / "runs" / job_id


def scale_up(bench: Bench) -> dict[str, Any]:
    wait_until("an idle cluster", lambda: not bench.workers_alive(), timeout_s=240)
    submitted = time.monotonic()
    job_id = bench.submit("scale-up", {"epochs": 3, "sleep_s": 2}, workers=1, cpus_per_worker=2)
    wait_until("a worker node", bench.workers_alive, timeout_s=300)
    node_s = time.monotonic() - submitted
    wait_until("RUNNING", lambda: bench.member.get_job(job_id)["status"] == "RUNNING", 300)
    running_s = time.monotonic() - submitted
    done = bench.member.wait(job_id, timeout_s=300, poll_s=0.25)
    ended = time.monotonic()
    wait_until("the idle node to go", lambda: not bench.workers_alive(), timeout_s=300, poll_s=1)
    return {
        "status": done["status"],
        "node_alive_s": round(node_s, 1),
        "job_running_s": round(running_s, 1),
        "idle_node_removed_s": round(time.monotonic() - ended, 1),
    }


def node_loss(bench: Bench) -> dict[str, Any]:
    warm = bench.submit("warm-up", {"epochs": 1}, workers=1, cpus_per_worker=2)
    bench.member.wait(warm, timeout_s=400, poll_s=0.5)
    job_id = bench.submit("elastic", {"epochs": 12, "sleep_s": 3}, workers={"min": 1, "max": 2},
                          cpus_per_worker=1, placement="STRICT_SPREAD")  # fmt: skip
    workers = wait_until(
        "2 workers on 2 nodes",
        lambda: (w := bench.train_workers()) and len({a["node_id"] for a in w}) == 2 and w,
        timeout_s=300,
    )
    snapshot = bench.run_dir(job_id) / "checkpoint_manager_snapshot.json"

    def registered_epoch() -> int:
        try:
            latest = json.loads(snapshot.read_text()).get("latest_checkpoint_result") or {}
        except (OSError, ValueError):
            return 0
        return int((latest.get("metrics") or {}).get("epoch") or 0)

    wait_until("a registered checkpoint", lambda: registered_epoch() >= 2, timeout_s=180)
    doomed = next(a["node_id"] for a in workers if a["node_id"] != FAKE_HEAD_NODE_ID)
    killed_at_wall, killed_at = time.time(), time.monotonic()
    killed = bench.local.kill_node(doomed)

    def failure_recorded() -> bool:
        return any(e["reason"] == "worker_failed" for e in bench.member.job_events(job_id))

    wait_until("the failure in the job's events", failure_recorded, timeout_s=300)
    recorded_s = time.monotonic() - killed_at

    def new_checkpoint() -> bool:
        return any(p.stat().st_mtime > killed_at_wall
                   for p in bench.run_dir(job_id).glob("checkpoint_*"))  # fmt: skip

    wait_until("a checkpoint after the kill", new_checkpoint, timeout_s=300)
    resumed_s = time.monotonic() - killed_at
    done = bench.member.wait(job_id, timeout_s=400, poll_s=0.5)
    events = [(e["reason"], e["message"]) for e in bench.member.job_events(job_id)
              if e["reason"] in ("worker_failed", "resized_by_ray")]  # fmt: skip
    return {
        "status": done["status"],
        "processes_killed": killed,
        "failure_recorded_s": round(recorded_s, 1),
        "training_resumed_s": round(resumed_s, 1),
        "final_metrics": done["result"]["metrics"] if done["result"] else None,
        "events": events,
    }


def main() -> None:
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch:
        bench = Bench(Path(scratch) / "home")
        bench.up()
        try:
            up = scale_up(bench)
            loss = node_loss(bench)
        finally:
            bench.down()
    print(json.dumps({
        "benchmark": "cluster_elastic",
        "config": str(CONFIG.relative_to(REPO)),
        "scale_up": up,
        "node_loss": loss,
        "loadavg_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "wall_s": round(time.perf_counter() - started, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
