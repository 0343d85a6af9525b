"""The control plane is killed (SIGKILL) while a job runs on its own local Ray head.

The head lives in its own process group, so it outlives the crash; the next start
adopts it instead of starting a second one, and the job finishes exactly once.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from raydc.client import zip_directory
from raydc.cluster.local_head import LocalRayHead
from tests.conftest import FIXTURES
from tests.e2e.server_process import Server, processes_under

pytestmark = pytest.mark.e2e


def test_sigkill_while_a_job_runs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = Server(home)
    first.wait_healthy()
    headers = {"Authorization": f"Bearer {(home / 'admin_token').read_text().strip()}"}
    http = httpx.Client(base_url=first.url, headers=headers, timeout=30)
    ref = http.post("/v1/code", content=zip_directory(FIXTURES / "toyjob"),
                    headers={"content-type": "application/zip"}).json()["ref"]  # fmt: skip
    job_id = http.post("/v1/jobs", json={
        "kind": "train", "name": "crash", "code": {"ref": ref}, "entrypoint": "toy:train_loop",
        "config": {"epochs": 5, "sleep_s": 2}, "resources": {"workers": 1}, "max_retries": 0,
    }).json()["id"]  # fmt: skip
    deadline = time.monotonic() + 180
    while http.get(f"/v1/jobs/{job_id}").json()["status"] != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    head = LocalRayHead(home / "ray").recorded()
    assert head is not None

    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=30)
    second = Server(home, port=first.port)
    try:
        second.wait_healthy()
        deadline = time.monotonic() + 300
        while (job := http.get(f"/v1/jobs/{job_id}").json())["status"] not in (
            "SUCCEEDED", "FAILED", "CANCELLED"
        ):  # fmt: skip
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert job["status"] == "SUCCEEDED", job
        assert job["attempt"] == 1 and job["result"]["metrics"]["epoch"] == 5
        events = [e["to_status"] for e in http.get(f"/v1/jobs/{job_id}/events").json()]
        assert events == ["PENDING", "STARTING", "RUNNING", "SUCCEEDED"]
        assert "re-attached to the local Ray head" in second.log.read_text()
        assert LocalRayHead(home / "ray").recorded() == head  # the same head, adopted
    finally:
        second.process.send_signal(signal.SIGTERM)
        second.process.wait(timeout=90)
    assert processes_under(LocalRayHead(home / "ray").temp_dir) == []
