"""POST /v1/jobs accepted into the queue: requests/s and latency at 32 concurrent clients.

The control plane runs as `raydc server` (SQLite, its own local Ray head) with admission
paused, so what is measured is the API and the database, not Ray. Prints JSON.
Target (issue #2): >= 500 requests/s with p99 <= 100 ms on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _harness import ADMIN_TOKEN, ServerProcess, load, post_request

SPEC = {
    "kind": "train",
    "name": "bench",
    "code": {"app": "sentiment"},
    "entrypoint": "sentiment.train:train_loop",
    "config": {"epochs": 3, "lr": 0.01},
    "resources": {"workers": {"min": 1, "max": 2}, "cpus_per_worker": 1},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup-seconds", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        server = ServerProcess(Path(scratch) / "home", RAYDC_ADMISSION_PAUSED="true")
        try:
            server.wait_cluster()
            request = post_request("/v1/jobs", SPEC, ADMIN_TOKEN)
            load(server.port, request, args.clients, args.warmup_seconds)
            result = load(server.port, request, args.clients, args.seconds)
            result["server_rss_mb"] = round(server.rss_mb(), 1)
        finally:
            server.stop()
    result.update(benchmark="submit_throughput", clients=args.clients, database="sqlite",
                  target={"requests_per_s": 500, "p99_ms": 100})  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
