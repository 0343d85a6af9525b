"""Two control plane processes on one database and one Ray cluster (as in the Kubernetes
Deployment with 2 replicas): jobs submitted through either run exactly once, and when the
replica holding the reconciler lease is killed, the other takes over and finishes them."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlalchemy import select

from raydc.client import zip_directory
from raydc.cluster.client import RayCluster
from raydc.store.db import make_engine
from raydc.store.models import JobEventRow, JobRow, LeaseRow
from tests.conftest import FIXTURES
from tests.e2e.server_process import Server
from tests.integration.conftest import ADMIN_TOKEN, TERMINAL

JOBS = 6


def leader(database_url: str) -> str | None:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(
                select(LeaseRow.holder).where(LeaseRow.name == "jobs")
            ).scalar_one()
    finally:
        engine.dispose()


def test_two_replicas_run_each_job_once_across_a_leader_crash(
    tmp_path: Path, ray_head: RayCluster, database_url_for: Callable[..., str]
) -> None:
    database = database_url_for(f"sqlite:///{tmp_path / 'shared.db'}")
    shared = {
        "RAYDC_DATABASE_URL": database,
        "RAYDC_RAY_ADDRESS": ray_head.dashboard_url,
        "RAYDC_RAY_AUTH_TOKEN": ray_head.auth_token or "",
        "RAYDC_ADMIN_TOKEN": ADMIN_TOKEN,
        # Replicas share the artifact store (in Kubernetes: one ReadWriteMany volume).
        "RAYDC_ARTIFACT_DIR": str(tmp_path / "artifacts"),
        "RAYDC_LEADER_LEASE_S": "3",
    }
    servers = [Server(tmp_path / "a", **shared)]
    servers[0].wait_healthy()  # the first migrates the SQLite file; then the second joins
    servers.append(Server(tmp_path / "b", **shared))
    servers[1].wait_healthy()
    clients = [
        httpx.Client(base_url=s.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                     timeout=30)
        for s in servers
    ]  # fmt: skip
    try:
        bundle = zip_directory(FIXTURES / "toyjob")
        uploaded = clients[0].post(
            "/v1/code", content=bundle, headers={"content-type": "application/zip"}
        )
        ref = uploaded.json()["ref"]
        ids = []
        for n in range(JOBS):  # alternately through each replica
            response = clients[n % 2].post("/v1/jobs", json={
                "kind": "train", "name": f"replica-{n}", "code": {"ref": ref},
                "entrypoint": "toy:train_loop", "config": {"epochs": 3, "sleep_s": 1},
                "resources": {"workers": 1, "cpus_per_worker": 1}, "max_retries": 0,
            })  # fmt: skip
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
        # Both replicas see every job, whichever took it.
        for client in clients:
            page = client.get("/v1/jobs", params={"limit": 100}).json()
            listed = {j["id"] for j in page["items"]}
            assert set(ids) <= listed

        # Kill the lease holder once work is under way.
        deadline = time.monotonic() + 180
        while not any(clients[0].get(f"/v1/jobs/{i}").json()["status"] == "RUNNING" for i in ids):
            assert time.monotonic() < deadline, "no job started"
            time.sleep(0.5)
        holder = leader(database)
        assert holder is not None
        homes = [str(s.home.resolve()) for s in servers]
        assert holder.endswith(homes[0]) or holder.endswith(homes[1]), holder
        killed = 0 if holder.endswith(homes[0]) else 1
        servers[killed].process.send_signal(signal.SIGKILL)
        servers[killed].process.wait(timeout=30)
        survivor = clients[1 - killed]

        deadline = time.monotonic() + 420
        while True:
            jobs = [survivor.get(f"/v1/jobs/{i}").json() for i in ids]
            if all(j["status"] in TERMINAL for j in jobs):
                break
            assert time.monotonic() < deadline, jobs
            time.sleep(1)
        assert [j["status"] for j in jobs] == ["SUCCEEDED"] * JOBS, jobs
        assert (leader(database) or "").endswith(str(servers[1 - killed].home.resolve()))
    finally:
        for client in clients:
            client.close()
        for server in servers:
            if server.process.poll() is None:
                server.process.terminate()
                server.process.wait(timeout=60)

    engine = make_engine(database)
    try:
        with engine.connect() as connection:
            admitted = Counter(
                connection.execute(
                    select(JobEventRow.job_id).where(JobEventRow.to_status == "STARTING")
                ).scalars()
            )
            attempts = dict(connection.execute(select(JobRow.id, JobRow.attempt)).tuples().all())
    finally:
        engine.dispose()
    assert admitted == dict.fromkeys(ids, 1)
    assert attempts == dict.fromkeys(ids, 1)
