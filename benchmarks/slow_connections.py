"""600 connections that never finish a request, against `raydc server`: how many are
still open after 30 s and 65 s, what they cost the server in CPU, and what they do to a
well-behaved client's latency.

The server runs with its default connection limits (RAYDC_HTTP_HEADER_TIMEOUT_S=10) and
an unreachable RAYDC_RAY_ADDRESS, so no Ray is started. The 600 are a third each: idle
(connect, send nothing), half-sent (half a request's headers), and trickling (half the
headers, then one more header byte every second). Meanwhile one client sends
GET /v1/auth/whoami back to back on a keep-alive connection. Prints JSON.
Targets (issue #18): 0 open after 30 s; the client's p99 <= 2x its baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from _harness import ADMIN_TOKEN, ServerProcess

HALF_REQUEST = b"GET /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bea"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def still_open(sock: socket.socket) -> bool:
    """Drain what the server sent (a 408); False once it has closed the connection."""
    try:
        while True:
            data = sock.recv(65536, socket.MSG_DONTWAIT)
            if not data:
                return False
    except BlockingIOError:
        return True
    except OSError:
        return False


class WellBehavedClient(threading.Thread):
    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.samples: list[tuple[float, float, int]] = []  # (start, seconds, status)
        self.stopped = threading.Event()

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=30) as client:
            while not self.stopped.is_set():
                start = time.monotonic()
                try:
                    status = client.get("/v1/auth/whoami").status_code
                except httpx.HTTPError:
                    status = 0
                self.samples.append((start, time.monotonic() - start, status))

    def stats(self, since: float, until: float) -> dict[str, Any]:
        window = [s for s in self.samples if since <= s[0] < until]
        latencies = sorted(s[1] for s in window)
        if not latencies:
            return {"requests": 0}

        def pct(q: float) -> float:
            return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 2)

        errors = sum(1 for s in window if s[2] != 200)
        return {"requests": len(window), "errors": errors, "p50_ms": pct(0.5),
                "p99_ms": pct(0.99), "max_ms": round(latencies[-1] * 1000, 2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=600)
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    parser.add_argument("--header-timeout-s", type=float, default=None,
                        help="RAYDC_HTTP_HEADER_TIMEOUT_S (default: the server's, 10 s); "
                        "1000 shows the server without the deadline")  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        env = {"RAYDC_RAY_ADDRESS": "http://127.0.0.1:9"}
        if args.header_timeout_s is not None:
            env["RAYDC_HTTP_HEADER_TIMEOUT_S"] = str(args.header_timeout_s)
        server = ServerProcess(Path(scratch) / "home", **env)
        try:
            result = measure(server, args.connections, args.baseline_seconds)
        finally:
            server.stop()
    result.update(benchmark="slow_connections", connections=args.connections,
                  header_timeout_s=args.header_timeout_s or 10.0,
                  target={"open_after_30s": 0, "p99_vs_baseline": 2.0})  # fmt: skip
    print(json.dumps(result))


def measure(server: ServerProcess, connections: int, baseline_s: float) -> dict[str, Any]:
    pid = server.process.pid
    client = WellBehavedClient(server.url)
    client.start()
    time.sleep(2)  # warm up
    start = time.monotonic()
    cpu_start = cpu_seconds(pid)
    time.sleep(baseline_s)
    baseline_cpu = cpu_seconds(pid) - cpu_start
    baseline = client.stats(start, time.monotonic())

    attack_start = time.monotonic()
    cpu_attack = cpu_seconds(pid)
    kinds = ("idle", "half_sent", "trickling")
    socks: list[tuple[str, socket.socket]] = []
    for i in range(connections):
        kind = kinds[i % 3]
        sock = socket.create_connection(("127.0.0.1", server.port))
        if kind != "idle":
            sock.sendall(HALF_REQUEST)
        socks.append((kind, sock))
    opened_s = time.monotonic() - attack_start
    open_at: dict[str, dict[str, int]] = {}
    closed: set[int] = set()
    for checkpoint in (30.0, 65.0):
        while time.monotonic() - attack_start < checkpoint:
            for index, (kind, sock) in enumerate(socks):
                if index in closed:
                    continue
                if not still_open(sock):
                    closed.add(index)
                elif kind == "trickling":
                    try:
                        sock.send(b"r")
                    except OSError:
                        closed.add(index)
            time.sleep(1.0)
        counts = {kind: 0 for kind in kinds}
        for index, (kind, sock) in enumerate(socks):
            if index not in closed and still_open(sock):
                counts[kind] += 1
        open_at[f"open_after_{int(checkpoint)}s"] = {"total": sum(counts.values()), **counts}
    attack_cpu = cpu_seconds(pid) - cpu_attack
    under_attack = client.stats(attack_start, attack_start + 30)
    client.stopped.set()
    client.join(timeout=30)
    for _, sock in socks:
        sock.close()
    ratio = under_attack.get("p99_ms", 0) / baseline["p99_ms"] if baseline.get("p99_ms") else None
    return {
        **open_at,
        "seconds_to_open_all": round(opened_s, 2),
        "server_cpu_s": {"attack_65s": round(attack_cpu, 2),
                         f"idle_baseline_{int(baseline_s)}s": round(baseline_cpu, 2),
                         "baseline_scaled_to_65s": round(baseline_cpu * 65 / baseline_s, 2)},
        "client_baseline": baseline,
        "client_first_30s_of_attack": under_attack,
        "p99_vs_baseline": round(ratio, 2) if ratio else None,
    }  # fmt: skip


if __name__ == "__main__":
    main()
