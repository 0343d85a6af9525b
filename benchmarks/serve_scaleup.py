"""How fast a model deployment's replicas follow load, through the whole platform.

A local Ray head and a `raydc server` process pointed at it (Serve on a free port, the
deployment reconciler every 0.25 s so the control plane's replica counts are fresh); a
tenant and its member token; the app trained through ``POST /v1/jobs``; a deployment
through ``POST /v1/deployments`` with autoscaling min 1, max 2.

1. Scale up: closed-loop load from ``--clients`` connections starts; the replica counts are
   polled every 0.25 s both from ``GET /v1/deployments/{name}`` (what users see) and from
   Serve's own status (``GET /api/serve/applications/`` on the dashboard). Measured from
   the load's start: Serve's target becoming 2 (the decision), the 2nd replica RUNNING in
   Serve, and the control plane showing 2 replicas.
2. Scale down: the load stops; the same, until 1 replica.
3. Scale from zero: ``PATCH`` min 0; idle until Serve runs no replica; then one request's
   latency (cold start: a replica is started and loads the model), then a warm one.

The load generator runs on the same 2 cores as Ray, Serve and the replicas. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from _serving import APPS_DIR, BackgroundLoad, ServingBench, dump

TRAIN_CONFIG: dict[str, dict[str, Any]] = {
    "intent": {"epochs": 1},
    "sentiment": {"epochs": 1, "num_examples": 1500},
}
NAME = "scale"
POLL_S = 0.25


def texts(limit: int = 64) -> list[str]:
    rows = (APPS_DIR / "intent" / "intents.jsonl").read_text().splitlines()
    return [json.loads(row)["text"] for row in rows[:limit]]


class Watch:
    """Replica counts over time, from the control plane and from Serve, since ``t0``."""

    def __init__(self, bench: ServingBench, t0: float) -> None:
        self.bench, self.t0 = bench, t0
        self.samples: list[dict[str, Any]] = []

    def sample(self) -> dict[str, Any]:
        deployment = self.bench.member.get_deployment(NAME)
        stable = self.bench.serve_stable(NAME)
        row = {
            "t": round(time.perf_counter() - self.t0, 2),
            "api_replicas": deployment["replicas"],
            "serve_running": stable.running_replicas if stable is not None else 0,
            "serve_target": stable.target_replicas if stable is not None else None,
        }
        if not self.samples or {k: v for k, v in row.items() if k != "t"} != {
            k: v for k, v in self.samples[-1].items() if k != "t"
        }:
            self.samples.append(row)  # only changes are kept
        return row

    def until(self, done: Callable[[dict[str, Any]], bool], timeout_s: float) -> dict[str, Any]:
        deadline = time.perf_counter() + timeout_s
        while True:
            row = self.sample()
            if done(row):
                return row
            if time.perf_counter() > deadline:
                raise TimeoutError(f"still {row} after {timeout_s} s; history {self.samples}")
            time.sleep(POLL_S)

    def first(self, key: str, value: int) -> float | None:
        """When ``key`` first reached ``value`` (a sample's time)."""
        return next((row["t"] for row in self.samples if row[key] == value), None)


def throughput(load: BackgroundLoad, start: float, end: float) -> float:
    done = sum(
        1 for finished, _, status in load.answers if start <= finished < end and status == 200
    )
    return round(done / max(end - start, 1e-9), 1)


def scale_up_and_down(bench: ServingBench, url: str, clients: int, hold_s: float) -> dict[str, Any]:
    requests = [bench.request_for(url, [text]) for text in texts(clients)]
    load = BackgroundLoad(requests[0][0], [request for _, request in requests], clients)
    t0 = load.start()
    watch = Watch(bench, t0)
    try:
        watch.until(lambda r: r["serve_running"] >= 2 and r["api_replicas"] >= 2, timeout_s=180)
        two_at = time.perf_counter()
        held = []  # replicas Serve runs while the load goes on: it should keep two
        while time.perf_counter() < two_at + hold_s:
            held.append(watch.sample()["serve_running"])
            time.sleep(POLL_S)
    finally:
        load.stop()
    stopped = time.perf_counter()
    up = {
        "decision_s": watch.first("serve_target", 2),
        "serve_running_2_s": watch.first("serve_running", 2),
        "api_replicas_2_s": watch.first("api_replicas", 2),
        "one_replica_predictions_per_s": throughput(
            load, t0 + 1, t0 + (watch.first("serve_running", 2) or 1)
        ),
        "two_replicas_predictions_per_s": throughput(load, two_at, stopped),
        "min_replicas_while_loaded_after": min(held),
        "statuses": _statuses(load),
        "timeline": watch.samples,
    }
    down_watch = Watch(bench, stopped)
    down_watch.until(lambda r: r["serve_running"] <= 1 and r["api_replicas"] <= 1, timeout_s=180)
    down = {
        "decision_s": down_watch.first("serve_target", 1),
        "serve_running_1_s": down_watch.first("serve_running", 1),
        "api_replicas_1_s": down_watch.first("api_replicas", 1),
        "timeline": down_watch.samples,
    }
    return {"up": up, "down": down}


def _statuses(load: BackgroundLoad) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, _, status in load.answers:
        counts[str(status)] = counts.get(str(status), 0) + 1
    return counts


def from_zero(bench: ServingBench, url: str, downscale_delay_s: float) -> dict[str, Any]:
    patched_at = time.perf_counter()
    bench.patch(NAME, {"autoscaling": {"min_replicas": 0, "max_replicas": 2,
                                       "target_ongoing_requests": 2, "upscale_delay_s": 1,
                                       "downscale_delay_s": downscale_delay_s}})  # fmt: skip
    watch = Watch(bench, patched_at)
    watch.until(lambda r: r["serve_running"] == 0 and r["api_replicas"] == 0, timeout_s=240)
    idle_to_zero_s = round(time.perf_counter() - patched_at, 1)
    [text] = texts(1)
    headers = {"Authorization": f"Bearer {bench.token}"}
    with httpx.Client(headers=headers, timeout=180) as http:
        started = time.perf_counter()
        cold = http.post(url, json={"inputs": [text]})
        cold_s = time.perf_counter() - started
        if cold.status_code != 200:
            raise RuntimeError(f"cold request answered {cold.status_code}: {cold.text}")
        time.sleep(1)
        warm = []
        for _ in range(10):
            started = time.perf_counter()
            http.post(url, json={"inputs": [text]}).raise_for_status()
            warm.append(time.perf_counter() - started)
    return {
        "downscale_delay_s": downscale_delay_s,
        "patch_to_zero_replicas_s": idle_to_zero_s,
        "cold_request_s": round(cold_s, 2),
        "warm_request_median_ms": round(statistics.median(warm) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--app", default="intent", choices=sorted(TRAIN_CONFIG))
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--hold-s", type=float, default=5.0)
    parser.add_argument("--target-ongoing", type=float, default=2.0)
    parser.add_argument("--upscale-delay-s", type=float, default=1.0)
    parser.add_argument("--downscale-delay-s", type=float, default=5.0)
    args = parser.parse_args()
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    with (
        tempfile.TemporaryDirectory() as scratch,
        ServingBench(Path(scratch), reconcile_interval_s=POLL_S) as bench,
    ):
        trained = bench.train(args.app, TRAIN_CONFIG[args.app])
        autoscaling = {
            "min_replicas": 1, "max_replicas": 2,
            "target_ongoing_requests": args.target_ongoing,
            "upscale_delay_s": args.upscale_delay_s,
            "downscale_delay_s": args.downscale_delay_s,
        }  # fmt: skip
        spec = {
            "name": NAME, "model": trained["model"],
            "resources": {"cpus_per_replica": 1}, "autoscaling": autoscaling,
            "batching": {"max_batch_size": 8, "batch_wait_timeout_s": 0.01},
        }  # fmt: skip
        deployed = bench.deploy(spec)
        url = deployed["url"]
        bench.predict(url, texts(2))
        scaling = scale_up_and_down(bench, url, args.clients, args.hold_s)
        zero = from_zero(bench, url, args.downscale_delay_s)
    dump({
        "benchmark": "serve_scaleup",
        "app": args.app,
        "model": trained["model"],
        "clients": args.clients,
        "autoscaling": autoscaling,
        "scale_up": scaling["up"],
        "scale_down": scaling["down"],
        "from_zero": zero,
        "loadavg_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "wall_s": round(time.perf_counter() - started, 1),
    })  # fmt: skip


if __name__ == "__main__":
    main()
