"""`raydc server` as a process (owning its local Ray head), driven by the `raydc` CLI."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from raydc.cluster.local_head import LocalRayHead
from tests.conftest import FIXTURES
from tests.e2e.server_process import Server, processes_under

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path / "home")
    running.wait_healthy()
    yield running
    if running.process.poll() is None:
        running.process.kill()
        running.process.wait()


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
    shown = server.cli("models", "show", "e2e-toy:1", token=member)
    assert shown.returncode == 0, shown.stderr
    assert f"e2e-toy:1  READY  made by train {job_id}" in shown.stdout
    assert "metrics: " in shown.stdout
    unversioned = server.cli("models", "show", "e2e-toy", token=member)
    assert unversioned.returncode == 1 and "give NAME:VERSION" in unversioned.stderr
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
