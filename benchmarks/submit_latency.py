"""Submit-to-RUNNING latency of a trivial job: raydc vs a raw Ray Jobs submission.

One local Ray head; a `raydc server` process pointed at it. Each trial submits the same
entrypoint and runtime env once through raydc (POST /v1/jobs, then GET until RUNNING)
and once straight to Ray (JobSubmissionClient.submit_job, then status until RUNNING),
alternating which goes first; each job is stopped as soon as it is seen RUNNING.
Single trials spread by ±0.3 s, so the median is taken over 9 trials by default.
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

from _harness import TOYJOB_DIR, ServerProcess
from raydc.client import Client
from raydc.cluster.client import RayCluster
from raydc.cluster.local_head import LocalRayHead
from raydc.server.services.launch import build_launch
from raydc.settings import Settings

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


def raydc_trial(client: Client, spec: dict) -> float:
    started = time.perf_counter()
    job = client.submit_job(spec)
    while client.get_job(job["id"])["status"] != "RUNNING":
        time.sleep(POLL_S)
    elapsed = time.perf_counter() - started
    client.cancel_job(job["id"])
    return elapsed


def wait_idle(client: Client) -> None:
    """Let cancelled jobs finish stopping so trials do not overlap."""
    while client.list_jobs(status="RUNNING")["total"]:
        time.sleep(0.2)
    time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=9)
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
            client = server.client()
            spec = spec_for(client.upload_code(TOYJOB_DIR))
            raydc_trial(client, spec)  # warm-up: uploads raydc and the code to Ray once
            wait_idle(client)
            raw, ours = [], []
            for trial in range(args.trials):
                order = ("raw", "raydc") if trial % 2 == 0 else ("raydc", "raw")
                for which in order:
                    if which == "raw":
                        raw.append(raw_trial(cluster, settings, spec))
                    else:
                        ours.append(raydc_trial(client, spec))
                    wait_idle(client)
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
