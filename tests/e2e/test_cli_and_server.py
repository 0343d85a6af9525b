"""`raydc server` as a process (owning its local Ray head), driven by the `raydc` CLI."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from raydc.cluster.local_head import LocalRayHead
from tests.conftest import FIXTURES, free_port

pytestmark = pytest.mark.e2e
RAYDC = str(Path(sys.executable).parent / "raydc")


class Server:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home.parent / "server.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAYDC_")}
        env.update(RAYDC_HOME=str(home), RAYDC_PORT=str(self.port), RAYDC_LOCAL_RAY_NUM_CPUS="2",
                   RAYDC_RECONCILE_INTERVAL_S="0.5")  # fmt: skip
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen([RAYDC, "server"], stdout=log, stderr=log, env=env)

    def wait_healthy(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"server not healthy:\n{self.log.read_text()}")

    def cli(
        self, *args: str, token: str, timeout_s: float = 300
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "RAYDC_URL": self.url, "RAYDC_TOKEN": token, "COLUMNS": "200"}
        return subprocess.run(
            [RAYDC, *args], env=env, capture_output=True, text=True, timeout=timeout_s
        )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path / "home")
    running.wait_healthy()
    yield running
    if running.process.poll() is None:
        running.process.kill()
        running.process.wait()


def processes_under(directory: Path) -> list[str]:
    found = subprocess.run(["pgrep", "-af", str(directory)], capture_output=True, text=True)
    return [line for line in found.stdout.splitlines() if "pgrep" not in line]


def test_a_user_session_through_the_cli(server: Server, tmp_path: Path) -> None:
    banner = server.log.read_text()
    token_path = server.home / "admin_token"
    assert f"http://127.0.0.1:{server.port}" in banner and str(token_path) in banner
    admin = token_path.read_text().strip()
    assert admin not in banner

    created = server.cli("tenants", "create", "team-e2e", "--cpu", "2", token=admin)
    assert created.returncode == 0, created.stderr
    minted = server.cli("tokens", "create", "--tenant", "team-e2e", "--role", "member",
                        token=admin)  # fmt: skip
    assert minted.returncode == 0, minted.stderr
    member = minted.stdout.strip().splitlines()[-1]
    assert member.startswith("rdc_")

    spec = tmp_path / "toy.yaml"
    spec.write_text(
        "kind: train\nname: e2e-toy\ncode: {app: placeholder}\nentrypoint: toy:train_loop\n"
        "config: {epochs: 2}\nresources: {workers: 1, cpus_per_worker: 1}\nmax_retries: 0\n"
    )
    too_big = tmp_path / "big.yaml"
    too_big.write_text(spec.read_text().replace("workers: 1,", "workers: 3,"))
    refused = server.cli("submit", str(too_big), "-w", str(FIXTURES / "toyjob"), token=member)
    assert refused.returncode == 1
    assert "resources: the job can never run in tenant 'team-e2e'" in refused.stderr

    run = server.cli("submit", str(spec), "-w", str(FIXTURES / "toyjob"), "--follow",
                     token=member, timeout_s=400)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    job_id = re.search(r"submitted (\S+)", run.stdout).group(1)  # type: ignore[union-attr]
    assert "SUCCEEDED" in run.stdout and "e2e-toy:1" in run.stdout

    listed = server.cli("jobs", "list", token=member)
    assert job_id in listed.stdout and "SUCCEEDED" in listed.stdout
    logs = server.cli("jobs", "logs", job_id, token=member)
    assert f"raydc: job {job_id} finished" in logs.stdout
    models = server.cli("models", "list", token=member)
    assert "e2e-toy" in models.stdout
    events = server.cli("jobs", "events", job_id, token=member)
    assert "RUNNING" in events.stdout and "SUCCEEDED" in events.stdout
    viewer_denied = server.cli("tenants", "list", token=member)
    assert viewer_denied.returncode == 1 and "403" in viewer_denied.stderr

    # SIGTERM: the server stops, and takes its own Ray head down with it.
    ray_temp_dir = LocalRayHead(server.home / "ray").temp_dir
    assert processes_under(ray_temp_dir)
    server.process.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal.
    assert server.process.wait(timeout=90) in (0, -signal.SIGTERM)
    assert not (server.home / "ray" / "head.json").exists()
    assert processes_under(ray_temp_dir) == []
