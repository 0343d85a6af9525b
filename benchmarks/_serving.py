"""Plumbing shared by the serving benchmarks: a local Ray head, a `raydc server` process
pointed at it with Serve on a free port, a tenant with a member token, a model version
trained through the REST API, and deployments created through it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml

from _harness import ServerProcess, post_request
from raydc.client import Client
from raydc.cluster.local_head import LocalRayHead, free_port
from raydc.cluster.serve import STABLE, DeploymentState, RayServe

APPS_DIR = Path(__file__).resolve().parents[1] / "apps"
TENANT = "bench"
# Logical CPUs of the Ray head: a training job and two model replicas fit.
# The machine has 2 physical cores whatever Ray is told.
HEAD_CPUS = 4
# Ray starts its workers (Serve's proxy, controller and replicas) at this niceness. The
# load generator runs at the same, or on 2 cores it would take CPU from the system it
# measures before any of Serve's processes got a turn.
RAY_WORKER_NICENESS = 15


class ServingBench:
    """Everything a serving benchmark needs, started in ``__enter__``, stopped in ``__exit__``."""

    def __init__(self, scratch: Path, reconcile_interval_s: float = 2.0) -> None:
        self.scratch = scratch
        self.reconcile_interval_s = reconcile_interval_s

    def __enter__(self) -> ServingBench:
        self.head = LocalRayHead(self.scratch / "ray", num_cpus=HEAD_CPUS)
        info = self.head.start()
        self.head_pid, self.dashboard_url = info.pid, info.dashboard_url
        try:
            self.server = ServerProcess(
                self.scratch / "home",
                RAYDC_RAY_ADDRESS=info.dashboard_url,
                RAYDC_RAY_AUTH_TOKEN=self.head.token,
                RAYDC_SERVE_PORT=str(free_port()),
                RAYDC_DEPLOY_RECONCILE_INTERVAL_S=str(self.reconcile_interval_s),
            )
        except BaseException:
            self.head.stop()
            raise
        try:
            self.server.wait_cluster()
            admin = self.server.client()
            admin.create_tenant(TENANT, quota={})
            self.token = admin.create_token(TENANT, "member", "bench")["token"]
        except BaseException:
            self.server.stop()
            self.head.stop()
            raise
        self.member = Client(self.server.url, self.token, timeout_s=120)
        self.serve = RayServe(info.dashboard_url, self.head.token)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.stop()
        self.head.stop()  # Serve and every replica go with the head

    def train(self, app: str, config: dict[str, Any], timeout_s: float = 300) -> dict[str, Any]:
        """Train ``app`` from its train.yaml with ``config`` merged in, on one worker;
        returns ``{"model": "name:N", "checkpoint_dir": ..., "train_s": ...}``."""
        spec = yaml.safe_load((APPS_DIR / app / "train.yaml").read_text())
        spec["config"] = {**(spec.get("config") or {}), **config}
        spec["resources"] = {**spec["resources"], "workers": 1}
        spec["max_retries"] = 0
        started = time.perf_counter()
        job = self.member.submit_job(spec)
        done = self.member.wait(job["id"], timeout_s=timeout_s, poll_s=0.5)
        train_s = time.perf_counter() - started
        if done["status"] != "SUCCEEDED":
            logs = self.member.job_logs(job["id"])[-3000:]
            raise RuntimeError(f"training {app} ended {done['status']}: {done['error']}\n{logs}")
        name = spec["name"]
        version = next(
            v for v in self.member.model_versions(name) if v["job_id"] == job["id"]
        )  # fmt: skip
        return {
            "model": f"{name}:{version['version']}",
            "checkpoint_dir": version["uri"],
            "train_s": round(train_s, 1),
        }

    def deploy(self, spec: dict[str, Any], timeout_s: float = 300) -> dict[str, Any]:
        self.member.create_deployment(spec)
        return self.member.wait_deployment(spec["name"], timeout_s=timeout_s, poll_s=0.25)

    def patch(self, name: str, changes: dict[str, Any], timeout_s: float = 300) -> dict[str, Any]:
        self.member.patch_deployment(name, changes)
        return self.member.wait_deployment(name, timeout_s=timeout_s, poll_s=0.25)

    def serve_stable(self, name: str) -> DeploymentState | None:
        """The deployment's stable model as Serve reports it (None: Serve has no such app)."""
        app = self.serve.status().get(f"{TENANT}.{name}")
        return app.deployments.get(STABLE) if app is not None else None

    def predict(self, url: str, inputs: list[Any], timeout_s: float = 120) -> dict[str, Any]:
        response = httpx.post(
            url,
            json={"inputs": inputs},
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=timeout_s,
        )
        if response.status_code != 200:
            raise RuntimeError(f"predict answered {response.status_code}: {response.text}")
        body: dict[str, Any] = response.json()
        return body

    def request_for(self, url: str, inputs: list[Any]) -> tuple[int, bytes]:
        """(port, raw HTTP request bytes) for the load generator."""
        parts = urlsplit(url)
        if parts.port is None:
            raise ValueError(f"deployment url without a port: {url}")
        return parts.port, post_request(parts.path, {"inputs": inputs}, self.token)

    def cpu_by_role(self) -> dict[str, float]:
        """CPU seconds so far of the Ray head's processes and the control plane, by role."""
        return cpu_by_role([self.head_pid, self.server.process.pid])

    def serve_metrics(self) -> str:
        """The head node's Prometheus text (Ray and Serve metrics), '' if unreachable."""
        headers = {"Authorization": f"Bearer {self.head.token}"}
        try:
            nodes = httpx.get(
                f"{self.dashboard_url}/nodes", params={"view": "summary"}, headers=headers,
                timeout=10,
            ).json()  # fmt: skip
            summary = nodes["data"]["summary"][0]
            port = summary["raylet"]["metricsExportPort"]
            ip = summary["raylet"].get("nodeManagerAddress", "127.0.0.1")
            return httpx.get(f"http://{ip}:{port}/metrics", timeout=10).text
        except (httpx.HTTPError, KeyError, IndexError, ValueError):
            return ""


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    return children


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _role(pid: int) -> str:
    """What a process of the benchmark's cluster is, for the CPU breakdown."""
    command = (
        Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    )
    # A replica's title is "ray::ServeReplica:<app>:<deployment>", or while it handles
    # an actor call "ray::<app>:<deployment>.<method>".
    if ":Stable" in command or ":Canary" in command:
        return "model_replicas"  # Stable is also the ingress: HTTP, token check, batching
    if "ProxyActor" in command or "HAProxyManager" in command or "/haproxy " in command:
        return "proxy"
    if "raydc.server" in command or "raydc server" in command:
        return "control_plane"
    return "ray_other"  # controller, raylet, GCS, dashboard, agents


def cpu_by_role(roots: list[int]) -> dict[str, float]:
    """CPU seconds used so far by every process under ``roots``, summed by role."""
    children, stack = _children(), list(roots)
    totals: dict[str, float] = {}
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            role = _role(pid)
            totals[role] = totals.get(role, 0.0) + _cpu_s(pid)
        except OSError:
            continue  # gone meanwhile
    return totals


def counter_increase(before: str, after: str, name: str, labels: str) -> float:
    """How much a Prometheus counter grew between two scrapes, summed over its series
    whose labels contain ``labels``; a series new in ``after`` (a replica started since)
    counts from 0."""
    old = _series(before, name, labels)
    return sum(value - old.get(key, 0.0) for key, value in _series(after, name, labels).items())


def _series(metrics: str, name: str, labels: str) -> dict[str, float]:
    found = {}
    for line in metrics.splitlines():
        match = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", line)
        if match and labels in (match.group(1) or ""):
            found[match.group(1) or ""] = float(match.group(2))
    return found


class BackgroundLoad:
    """Closed-loop load from ``clients`` keep-alive connections, on a thread, until ``stop()``;
    client ``i`` sends ``requests[i % len(requests)]``. Records each answer as (finish time,
    latency, status)."""

    def __init__(self, port: int, requests: list[bytes], clients: int) -> None:
        self.port, self.requests, self.clients = port, requests, clients
        self.answers: list[tuple[float, float, int]] = []
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="bench-load", daemon=True)
        self.started_at = 0.0
        self.cpu_s = 0.0  # the load generator's own CPU time

    def _run(self) -> None:
        run_at_worker_niceness()
        started = time.thread_time()

        async def run() -> None:
            await asyncio.gather(
                *(self._client(self.requests[i % len(self.requests)]) for i in range(self.clients))
            )

        asyncio.run(run())
        self.cpu_s = time.thread_time() - started

    async def _client(self, request: bytes) -> None:
        """One keep-alive connection, opened again when the server closes it (HAProxy's
        old process closes its connections after a reload, as a new replica joins); a
        request lost with its connection counts as status 0."""
        while not self._stopping:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            try:
                close = False
                while not self._stopping and not close:
                    started = time.perf_counter()
                    writer.write(request)
                    try:
                        status, close = await read_response(reader)
                    except (asyncio.IncompleteReadError, ConnectionError):
                        status, close = 0, True
                    finished = time.perf_counter()
                    self.answers.append((finished, finished - started, status))
            finally:
                writer.close()

    def start(self) -> float:
        self.started_at = time.perf_counter()
        self._thread.start()
        return self.started_at

    def stop(self) -> None:
        self._stopping = True
        self._thread.join(timeout=120)


def run_at_worker_niceness() -> None:
    """This thread (only: Linux niceness is per thread) at Ray's worker niceness."""
    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), RAY_WORKER_NICENESS)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """One HTTP/1.1 response with a Content-Length: its status, and whether the server
    closes the connection after it."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length, close = 0, False
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
        elif name.strip().lower() == b"connection":
            close = value.strip().lower() == b"close"
    await reader.readexactly(length)
    return status, close


def dump(result: dict[str, Any]) -> None:
    print(json.dumps(result))
