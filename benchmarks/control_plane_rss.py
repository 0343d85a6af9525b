"""Control-plane memory with 10,000 jobs in the database.

`raydc server` (SQLite, its own 2-CPU local Ray head) gets one long job that fills the
cluster and 9,999 more that queue behind it, so every reconcile pass runs admission over
the whole queue. After the queue, cluster, list and metrics endpoints have been read,
the server process's RSS (and its peak) is read from /proc. Ray's own processes are not
counted: they are the cluster, not the control plane. Prints JSON.
Target (issue #2): <= 300 MB.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import httpx

from _harness import ADMIN_TOKEN, TOYJOB_DIR, ServerProcess, load, post_request


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        server = ServerProcess(Path(scratch) / "home", RAYDC_LOCAL_RAY_NUM_CPUS="2")
        try:
            server.wait_cluster()
            rss_idle = server.rss_mb()
            client = server.client()
            ref = client.upload_code(TOYJOB_DIR)
            spec = {
                "kind": "train", "name": "rss", "code": {"ref": ref},
                "entrypoint": "toy:train_loop", "config": {"epochs": 10_000, "sleep_s": 1},
                "resources": {"workers": 1, "cpus_per_worker": 2}, "max_retries": 0,
            }  # fmt: skip
            request = post_request("/v1/jobs", spec, ADMIN_TOKEN)
            submitted = 0
            while submitted < args.jobs:
                burst = load(server.port, request, clients=16, seconds=2)
                submitted += burst["requests"]
            total = client.list_jobs(limit=1)["total"]
            time.sleep(15)  # several reconcile passes over the full queue
            queue = client.queue()
            for offset in range(0, 2000, 500):
                client.list_jobs(limit=500, offset=offset)
            client.cluster()
            auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            httpx.get(f"{server.url}/metrics", headers=auth, timeout=60).raise_for_status()
            time.sleep(3)
            result = {
                "benchmark": "control_plane_rss",
                "jobs_in_db": total,
                "queued": len(queue),
                "rss_idle_mb": round(rss_idle, 1),
                "rss_mb": round(server.rss_mb(), 1),
                "peak_rss_mb": round(peak_rss_mb(server.process.pid), 1),
                "target": {"rss_mb": 300},
            }
        finally:
            server.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
