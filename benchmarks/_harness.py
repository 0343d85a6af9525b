"""Shared benchmark plumbing: start `raydc server` as a process, drive it with raw HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from raydc.client import Client
from raydc.cluster.jobs_user import first_unreachable, resolve_jobs_user
from raydc.cluster.local_head import free_port

RAYDC = str(Path(sys.executable).parent / "raydc")
ADMIN_TOKEN = "rdc_benchmark-admin-token-0123456789abcdef"
TOYJOB_DIR = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "toyjob"


class ServerProcess:
    def __init__(self, home: Path, **env_overrides: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAYDC_")}
        env.update(RAYDC_HOME=str(home), RAYDC_PORT=str(self.port), RAYDC_ADMIN_TOKEN=ADMIN_TOKEN,
                   RAYDC_LOG_LEVEL="WARNING", **env_overrides)  # fmt: skip
        self.log_path = home.parent / f"server-{self.port}.log"
        home.mkdir(parents=True, exist_ok=True)
        # As root the server's local head runs jobs as an unprivileged user, which must
        # pass through the benchmark's temp dirs (mkdtemp makes them 0700).
        jobs_user = resolve_jobs_user(env.get("RAYDC_JOBS_USER", "auto"))
        if jobs_user is not None:
            while (blocked := first_unreachable(home, jobs_user)) is not None:
                blocked.chmod(blocked.stat().st_mode | 0o001)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([RAYDC, "server"], stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + 120
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(self.log_path.read_text())
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.2)

    def wait_cluster(self, timeout_s: float = 120) -> None:
        """Wait until the control plane reaches Ray (starting a head costs CPU for a while)."""
        client = self.client()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            info = client.cluster()
            if info["connected"] and info["nodes"]:
                time.sleep(5)  # let the freshly started Ray processes settle
                return
            time.sleep(0.5)
        raise RuntimeError("control plane never reached Ray")

    def client(self) -> Client:
        """The SDK, as the admin, with a long timeout (listing 10,000 jobs is slow)."""
        return Client(self.url, ADMIN_TOKEN, timeout_s=120)

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.process.kill()


async def _client_loop(
    port: int, request: bytes, deadline: float, latencies: list[float], statuses: dict[int, int]
) -> None:
    """One keep-alive HTTP/1.1 connection sending the same request back to back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


def post_request(path: str, body: dict[str, Any], token: str) -> bytes:
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


def load(port: int, request: bytes, clients: int, seconds: float) -> dict[str, Any]:
    """Closed-loop load from ``clients`` concurrent connections for ``seconds``."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def run() -> None:
        deadline = time.perf_counter() + seconds
        await asyncio.gather(
            *(_client_loop(port, request, deadline, latencies, statuses) for _ in range(clients))
        )

    started = time.perf_counter()
    asyncio.run(run())
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return {
        "requests": len(latencies),
        "seconds": round(elapsed, 2),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(pct(0.50), 2),
        "p99_ms": round(pct(0.99), 2),
        "max_ms": round(latencies[-1] * 1000, 2),
        "statuses": statuses,
    }
