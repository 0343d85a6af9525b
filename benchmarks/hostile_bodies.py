"""Hostile request bodies (#18): what each costs the server, and what it does to others.

Starts `raydc server` processes pointed at an unreachable Ray address (no Ray needed:
admission is paused, submissions only reach the database), once for the working tree
and once for a pre-hardening commit (``--before``, a worktree whose platform/ goes on the
server's PYTHONPATH; same venv). For each tree and each attack body: the status code,
the server's CPU seconds for it (utime+stime of /proc/<pid>/stat, all threads) and the
wall time. For the working tree: a well-behaved client's submission p99 alone, then
while an attacker sends the bodies back to back. Then POST /v1/jobs throughput
(submit_throughput's spec and load) before vs after, alternating, side by side.
Prints JSON. Targets: each attack refused in <= 1 s of server CPU; the well-behaved
p99 under attack <= 2x its baseline; throughput after >= 90% of before.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from _harness import ADMIN_TOKEN, ServerProcess, load, post_request
from submit_throughput import SPEC

TRAIN_YAML = (
    "kind: train\nname: attack\ncode: {app: sentiment}\nentrypoint: sentiment.train:train_loop\n"
)
# 9 levels of 9 aliases: a 10^9-element expansion from a few hundred bytes.
BILLION_LAUGHS = (
    TRAIN_YAML
    + "config:\n  a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n"
    + "".join(
        f"  {chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
    )
)
_SPEC_JSON = json.dumps({**SPEC, "name": "attack"})
ATTACKS: dict[str, tuple[str, str]] = {
    "billion_laughs_yaml": ("application/yaml", BILLION_LAUGHS),
    "circular_alias_yaml": ("application/yaml", TRAIN_YAML + "config: &a {x: *a}\n"),
    "deep_json_100k": ("application/json",
                       _SPEC_JSON.replace('"config": {', '"config": ' + "[" * 100_000 + "{", 1)
                       .replace('"lr": 0.01}', '"lr": 0.01}' + "]" * 100_000, 1)),
    "deep_yaml_100k": ("application/yaml",
                       TRAIN_YAML + "config: {x: " + "[" * 100_000 + "]" * 100_000 + "}\n"),
    "huge_int_json_5000_digits": ("application/json",
                                  _SPEC_JSON.replace('"epochs": 3', '"epochs": ' + "9" * 5000)),
    "huge_int_yaml_5000_digits": ("application/yaml",
                                  TRAIN_YAML + "config: {epochs: " + "9" * 5000 + "}\n"),
    # ~1 MiB (the body limit) of small YAML values: pure-Python PyYAML's worst case.
    "wide_yaml_1mib": ("application/yaml",
                       TRAIN_YAML + "config: {xs: [" + ",".join(["1"] * 500_000) + "]}\n"),
}  # fmt: skip


KEPT = ("requests_per_s", "p50_ms", "p99_ms", "statuses")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(scratch: Path, name: str, platform: str | None) -> ServerProcess:
    env = {"RAYDC_ADMISSION_PAUSED": "true", "RAYDC_JOBS_USER": "none",
           "RAYDC_RAY_ADDRESS": "http://127.0.0.1:9"}  # fmt: skip
    if platform is not None:
        env["PYTHONPATH"] = platform
    return ServerProcess(scratch / name / "home", **env)


def send(url: str, content_type: str, body: str) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "content-type": content_type}
    try:
        response = httpx.post(f"{url}/v1/jobs", content=body.encode(), headers=headers,
                              timeout=300)  # fmt: skip
    except httpx.HTTPError as error:
        return 0, repr(error)[:200]
    return response.status_code, response.text[:160]


def attack_costs(server: ServerProcess, skip: tuple[str, ...]) -> dict[str, Any]:
    costs = {}
    for name, (content_type, body) in ATTACKS.items():
        if name in skip:
            continue
        time.sleep(0.5)  # let background loops settle
        cpu, wall = cpu_s(server.process.pid), time.perf_counter()
        status, text = send(server.url, content_type, body)
        costs[name] = {
            "body_bytes": len(body.encode()),
            "status": status,
            "server_cpu_s": round(cpu_s(server.process.pid) - cpu, 3),
            "wall_s": round(time.perf_counter() - wall, 3),
            "answer": text,
        }
    return costs


def attacker(url: str, stop: Any, sent: Any, per_s: float) -> None:
    """Sends the attack bodies in turn, ``per_s`` a second (0: back to back)."""
    statuses: dict[int, int] = {}
    next_at = time.monotonic()
    while not stop.is_set():
        for content_type, body in ATTACKS.values():
            if per_s > 0:
                next_at += 1.0 / per_s
                stop.wait(max(0.0, next_at - time.monotonic()))
                if stop.is_set():
                    break
            status, _ = send(url, content_type, body)
            statuses[status] = statuses.get(status, 0) + 1
    sent.put(statuses)


def under_attack(
    server: ServerProcess, clients: int, seconds: float, per_s: float = 0.0
) -> dict[str, Any]:
    request = post_request("/v1/jobs", SPEC, ADMIN_TOKEN)
    load(server.port, request, clients, 2)  # warm-up
    baseline = load(server.port, request, clients, seconds)
    # The attacker is its own process: in this one it would take the GIL from the
    # well-behaved client and show up as the server's latency.
    stop = multiprocessing.Event()
    sent: Any = multiprocessing.Queue()
    process = multiprocessing.Process(target=attacker, args=(server.url, stop, sent, per_s))
    process.start()
    attacked = load(server.port, request, clients, seconds)
    stop.set()
    statuses = sent.get(timeout=300)
    process.join()
    return {
        "clients": clients,
        "attacks_per_s": per_s or "back to back",
        "baseline": baseline,
        "under_attack": attacked,
        "attack_statuses": statuses,
        "p99_ratio": round(attacked["p99_ms"] / baseline["p99_ms"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", type=Path, default=Path("/tmp/raydc-before"),
                        help="worktree of the pre-hardening commit (79439a5)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before-laughs", action="store_true",
                        help="also to the old tree (~2 min of CPU, 12 GB)")  # fmt: skip
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--attacks-per-s", type=float, default=0.0,
                        help="attack bodies a second; 0 = back to back")  # fmt: skip
    args = parser.parse_args()
    before_platform = str(args.before / "platform")
    result: dict[str, Any] = {"benchmark": "hostile_bodies"}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        for tree, platform in (("after", None), ("before", before_platform)):
            server = start(scratch, f"attacks-{tree}", platform)
            try:
                skip = () if tree == "after" or args.before_laughs else ("billion_laughs_yaml",)
                result[f"attacks_{tree}"] = attack_costs(server, skip)
                if tree == "after":
                    result["well_behaved_after"] = under_attack(
                        server, 4, args.seconds, args.attacks_per_s
                    )
                result[f"server_rss_mb_{tree}"] = round(server.rss_mb(), 1)
            finally:
                server.stop()
        rounds: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
        request = post_request("/v1/jobs", SPEC, ADMIN_TOKEN)
        for n in range(args.rounds):
            for tree, platform in (("before", before_platform), ("after", None)):
                server = start(scratch, f"throughput-{tree}-{n}", platform)
                try:
                    load(server.port, request, args.clients, 2)
                    rounds[tree].append(load(server.port, request, args.clients, args.seconds))
                finally:
                    server.stop()
    throughput = {
        tree: {
            "requests_per_s_median": statistics.median(r["requests_per_s"] for r in runs),
            "p99_ms_median": statistics.median(r["p99_ms"] for r in runs),
            "rounds": [{k: r[k] for k in KEPT} for r in runs],
        }
        for tree, runs in rounds.items()
    }
    after, before = (throughput[t]["requests_per_s_median"] for t in ("after", "before"))
    throughput["after_over_before"] = round(after / before, 3)
    result.update(
        submit_throughput=throughput,
        clients=args.clients,
        target={"attack_server_cpu_s": 1.0, "p99_ratio": 2.0, "after_over_before": 0.9},
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
