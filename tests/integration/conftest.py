"""One real local Ray head per test session, and control planes served over real HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from raydc.cluster.client import RayCluster
from raydc.cluster.local_head import LocalRayHead
from raydc.server.app import create_app
from raydc.settings import Settings
from tests.conftest import free_port

ADMIN_TOKEN = "rdc_integration-admin-token-0123456789abcdef"
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path):
            item.add_marker(pytest.mark.ray)


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    head = LocalRayHead(tmp_path_factory.mktemp("ray-head"), num_cpus=4)
    info = head.start()
    try:
        yield RayCluster(info.dashboard_url, head.token)
    finally:
        head.stop()


@pytest.fixture(scope="session")
def serve_port() -> int:
    """Serve's HTTP port for the whole session: it cannot change once Serve runs on the
    shared head, so every test that deploys to Serve must use this one."""
    return free_port()


class ServerThread:
    """The control plane under uvicorn in a thread: a real HTTP server in this process."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        if settings.public_url is None:  # what Serve ingresses call back to check tokens
            settings.public_url = f"http://127.0.0.1:{self.port}"
        self.settings = settings
        self.app = create_app(settings)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("control plane did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


@dataclass
class Api:
    http: httpx.Client

    def submit(self, spec: dict[str, Any] | str) -> dict[str, Any]:
        if isinstance(spec, str):
            response = self.http.post(
                "/v1/jobs", content=spec, headers={"content-type": "application/yaml"}
            )
        else:
            response = self.http.post("/v1/jobs", json=spec)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    def job(self, job_id: str) -> dict[str, Any]:
        try:
            response = self.http.get(f"/v1/jobs/{job_id}")
        except httpx.RemoteProtocolError:
            # The server closed its idle keep-alive connection as this poll reused it
            # (seen once, on a loaded machine): a read, so send it again.
            response = self.http.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def wait_for(
        self, job_id: str, done: Callable[[dict[str, Any]], bool], timeout_s: float = 300
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if done(job):
                return job
            if job["status"] in TERMINAL or time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} ended or timed out as {job}")
            time.sleep(0.5)

    def wait_status(self, job_id: str, status: str, timeout_s: float = 300) -> dict[str, Any]:
        return self.wait_for(job_id, lambda job: job["status"] == status, timeout_s)

    def upload(self, data: bytes) -> str:
        response = self.http.post(
            "/v1/code", content=data, headers={"content-type": "application/zip"}
        )
        assert response.status_code == 201, response.text
        return response.json()["ref"]  # type: ignore[no-any-return]


@pytest.fixture
def settings(
    tmp_path: Path, ray_head: RayCluster, serve_port: int, database_url_for: Callable[..., str]
) -> Settings:
    return Settings(
        serve_port=serve_port,
        home=tmp_path / "home",
        database_url=database_url_for(f"sqlite:///{tmp_path / 'raydc.db'}"),
        ray_address=ray_head.dashboard_url,
        ray_auth_token=ray_head.auth_token,
        admin_token=ADMIN_TOKEN,
        reconcile_interval_s=0.5,
    )


@pytest.fixture
def server(settings: Settings) -> Iterator[ServerThread]:
    running = ServerThread(settings).start()
    try:
        yield running
    finally:
        running.stop()


def client_for(server: ServerThread) -> Api:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    return Api(httpx.Client(base_url=server.url, headers=headers, timeout=30))


@pytest.fixture
def api(server: ServerThread) -> Iterator[Api]:
    client = client_for(server)
    try:
        yield client
    finally:
        client.http.close()


def holders(ray_head: RayCluster) -> list[str]:
    """Ray jobs still running, and live actors and placement groups holding CPUs."""
    busy = [
        f"job {j.submission_id}"
        for j in ray_head.jobs._client.list_jobs()
        if str(j.status) in ("PENDING", "RUNNING")
    ]
    auth = {"Authorization": f"Bearer {ray_head.auth_token}"} if ray_head.auth_token else {}
    for kind, state in (("actors", "ALIVE"), ("placement_groups", "CREATED")):
        params = {"detail": "1", "limit": "1000", "filter_keys": "state",
                  "filter_predicates": "=", "filter_values": state}  # fmt: skip
        url = f"{ray_head.dashboard_url}/api/v0/{kind}"
        rows = httpx.get(url, params=params, headers=auth, timeout=10).json()
        for row in rows["data"]["result"]["result"]:
            needs = row.get("required_resources") or {}
            bundles = row.get("bundles") or []
            cpus = needs.get("CPU", 0) + sum(
                b.get("unit_resources", {}).get("CPU", 0) for b in bundles
            )
            if cpus:
                busy.append(f"{kind} {row.get('class_name') or row.get('placement_group_id')}")
    return busy


@pytest.fixture
def idle_cluster(api: Api, ray_head: RayCluster) -> Iterator[None]:
    """Start on an idle cluster and leave one: for tests that count on all of its CPUs.

    A Ray job of an earlier test (another file, another control plane) may still hold
    CPUs, and a Ray job outlives the control plane that submitted it.
    """
    deadline = time.monotonic() + 180
    while busy := holders(ray_head):
        assert time.monotonic() < deadline, f"still holding the cluster from earlier tests: {busy}"
        time.sleep(1)
    yield
    for job in api.http.get("/v1/jobs", params={"limit": 500}).json()["items"]:
        if job["status"] not in TERMINAL:
            api.http.post(f"/v1/jobs/{job['id']}/cancel")
    for job in api.http.get("/v1/jobs", params={"limit": 500}).json()["items"]:
        if job["status"] not in TERMINAL:
            api.wait_for(job["id"], lambda j: j["status"] in TERMINAL, timeout_s=120)
