"""A hostile tenant's job, on the control plane's own local Ray head, looks for the
control plane's secrets and for another tenant's objects everywhere a job can: its
environment, the state directory, /proc, Ray's job API with the Ray token it can read,
and raydc's API with every token-shaped string it found. Nothing may turn up.

As root (CI) the head and its jobs run as the unprivileged jobs user: that is what keeps
the state directory and the server's /proc closed to them (SECURITY.md).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from pathlib import Path

import httpx
import pytest

from raydc.client import zip_directory
from raydc.cluster.local_head import LocalRayHead
from tests.conftest import FIXTURES
from tests.e2e.server_process import Server

pytestmark = pytest.mark.e2e


def wait_done(http: httpx.Client, job_id: str, timeout_s: float = 240) -> dict:
    deadline = time.monotonic() + timeout_s
    while (job := http.get(f"/v1/jobs/{job_id}").json())["status"] not in (
        "SUCCEEDED", "FAILED", "CANCELLED"
    ):  # fmt: skip
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
    return job


@pytest.mark.skipif(os.geteuid() != 0, reason="the jobs user is switched to only as root")
def test_a_hostile_job_finds_no_secret_and_no_other_tenant(tmp_path: Path) -> None:
    home = tmp_path / "home"
    admin_token = "rdc_" + secrets.token_urlsafe(32)
    database_url = f"sqlite:///{home / 'raydc.db'}"
    server_secret = "server-only-" + secrets.token_hex(16)
    server = Server(home, RAYDC_ADMIN_TOKEN=admin_token, RAYDC_DATABASE_URL=database_url,
                    AWS_SECRET_ACCESS_KEY=server_secret)  # fmt: skip
    try:
        server.wait_healthy()
        admin = httpx.Client(base_url=server.url, timeout=30,
                             headers={"Authorization": f"Bearer {admin_token}"})  # fmt: skip
        tokens = {}
        for tenant in ("victim", "mallory"):
            assert admin.post("/v1/tenants", json={"name": tenant}).status_code == 201
            made = admin.post("/v1/tokens", json={"tenant": tenant, "role": "member",
                                                  "name": tenant})  # fmt: skip
            tokens[tenant] = made.json()["token"]
        victim, mallory = (
            httpx.Client(base_url=server.url, timeout=30,
                         headers={"Authorization": f"Bearer {tokens[who]}"})
            for who in ("victim", "mallory")
        )  # fmt: skip
        victim_job = victim.post("/v1/jobs", json={
            "kind": "train", "name": "victim-private-model", "code": {"app": "sentiment"},
            "entrypoint": "sentiment.train:train_loop", "config": {"epochs": 1},
            "max_retries": 0,
        })  # fmt: skip
        assert victim_job.status_code == 201, victim_job.text
        victim_id = victim_job.json()["id"]
        head = LocalRayHead(home / "ray").recorded()
        deadline = time.monotonic() + 120
        while head is None:
            assert time.monotonic() < deadline
            time.sleep(0.5)
            head = LocalRayHead(home / "ray").recorded()

        code = mallory.post("/v1/code", content=zip_directory(FIXTURES / "attacker"),
                            headers={"content-type": "application/zip"})  # fmt: skip
        assert code.status_code == 201, code.text
        attack = mallory.post("/v1/jobs", json={
            "kind": "train", "name": "attack", "code": {"ref": code.json()["ref"]},
            "entrypoint": "attack:train_loop", "max_retries": 0,
            "config": {"server_home": str(home), "raydc_url": server.url,
                       "ray_dashboard": head.dashboard_url},
        })  # fmt: skip
        assert attack.status_code == 201, attack.text
        attack_id = attack.json()["id"]
        job = wait_done(mallory, attack_id)
        assert job["status"] == "SUCCEEDED", job["error"]
        wait_done(victim, victim_id)

        report_path = home / "artifacts" / "runs" / attack_id / "attack-report.json"
        text = report_path.read_text()
        found = json.loads(text)
        # It really looked: it ran as the jobs user, read /proc, and asked Ray's job API.
        assert found["env"].get("USER") == "nobody", found["env"]
        assert found["ray"]["jobs"]["status"] == 200
        for secret in (admin_token, database_url, server_secret):
            assert secret not in text
        assert not any(name.startswith("RAYDC_ADMIN") or name == "RAYDC_DATABASE_URL"
                       for name in found["env"])  # fmt: skip
        listing = found["files"].pop("home_listing")
        assert "Permission denied" in listing, listing
        assert all(value is None for value in found["files"].values()), found["files"]
        assert found["proc"] == {}, "read the server's environment in /proc"
        # Through raydc, no token it found (nor Ray's, nor none) opens anything.
        assert len(found["raydc"]) >= 8
        for route, answer in found["raydc"].items():
            assert answer["status"] in (401, 403), (route, answer)
            assert victim_id not in answer["body"]
    finally:
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=90)
