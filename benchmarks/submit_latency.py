"""Submit-to-RUNNING latency of a trivial job: raydc vs a raw Ray Jobs submission.

One local Ray head; a `raydc server` process pointed at it. Each trial submits the same
entrypoint and runtime env once through raydc (POST /v1/jobs, then GET until RUNNING)
and once straight to Ray (JobSubmissionClient.submit_job, then status until RUNNING),
alternating which goes first; each job is stopped as soon as it is seen RUNNING.
Prints JSON. Target (issue #2): raydc median within 1.25x of raw.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from _harness import ADMIN_TOKEN, ServerProcess
from raydc.client import zip_directory
from raydc.cluster.client import RayCluster
from raydc.cluster.local_head import LocalRayHead
from raydc.server.services.launch import build_launch
from raydc.settings import Settings

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "toyjob"
POLL_S = 0.02


def spec_for(ref: str) -> dict:
    return {
        "kind": "train", "name": "latency", "code": {"ref": ref},
        "entrypoint": "toy:train_loop", "config": {"epochs": 1},
        "resources": {"workers": 1, "cpus_per_worker": 0.5}, "max_retries": 0,
    }  # fmt: skip


def raw_trial(cluster: RayCluster, settings: Settings, spec: dict) -> float:
    job_id = f"raw-{uuid.uuid4().hex[:8]}"
    request = build_launch(settings, job_id, "default", 1, spec)
    started = time.perf_counter()
    cluster.jobs.submit(request.submission_id, request.entrypoint, request.runtime_env, {})
    while cluster.jobs.state(request.submission_id).status != "RUNNING":
        time.sleep(POLL_S)
    elapsed = time.perf_counter() - started
    cluster.jobs.stop(request.submission_id)
    return elapsed


def raydc_trial(http: httpx.Client, spec: dict) -> float:
    started = time.perf_counter()
    job = http.post("/v1/jobs", json=spec).json()
    while http.get(f"/v1/jobs/{job['id']}").json()["status"] != "RUNNING":
        time.sleep(POLL_S)
    elapsed = time.perf_counter() - started
    http.post(f"/v1/jobs/{job['id']}/cancel")
    return elapsed


def wait_idle(http: httpx.Client) -> None:
    """Let cancelled jobs finish stopping so trials do not overlap."""
    while http.get("/v1/jobs", params={"status": "RUNNING"}).json()["total"]:
        time.sleep(0.2)
    time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        head = LocalRayHead(Path(scratch) / "ray", num_cpus=4)
        info = head.start()
        home = Path(scratch) / "home"
        server = ServerProcess(home, RAYDC_RAY_ADDRESS=info.dashboard_url,
                               RAYDC_RAY_AUTH_TOKEN=head.token)  # fmt: skip
        try:
            server.wait_cluster()
            cluster = RayCluster(info.dashboard_url, head.token)
            settings = Settings(home=home)  # same artifact paths as the server's
            http = httpx.Client(base_url=server.url, timeout=30,
                                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})  # fmt: skip
            data = zip_directory(FIXTURE)
            ref = http.post("/v1/code", content=data,
                            headers={"content-type": "application/zip"}).json()["ref"]  # fmt: skip
            spec = spec_for(ref)
            raydc_trial(http, spec)  # warm-up: uploads raydc and the code to Ray once
            wait_idle(http)
            raw, ours = [], []
            for trial in range(args.trials):
                order = ("raw", "raydc") if trial % 2 == 0 else ("raydc", "raw")
                for which in order:
                    if which == "raw":
                        raw.append(raw_trial(cluster, settings, spec))
                    else:
                        ours.append(raydc_trial(http, spec))
                    wait_idle(http)
                    time.sleep(1)
        finally:
            server.stop()
            head.stop()
    result = {
        "benchmark": "submit_latency",
        "trials": args.trials,
        "raw_ray_s": [round(x, 3) for x in raw],
        "raydc_s": [round(x, 3) for x in ours],
        "raw_ray_median_s": round(statistics.median(raw), 3),
        "raydc_median_s": round(statistics.median(ours), 3),
        "ratio": round(statistics.median(ours) / statistics.median(raw), 3),
        "target": {"ratio": 1.25},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
