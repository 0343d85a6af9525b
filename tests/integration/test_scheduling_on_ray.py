"""The scheduler on a real local Ray (4 CPUs): preemption, fair share, borrowing, resize.

Every test fills the whole cluster, so each one ends by cancelling what is left: a Ray
job outlives the control plane that submitted it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from raydc.client import zip_directory
from raydc.settings import Settings
from tests.conftest import FIXTURES
from tests.integration.conftest import Api, ServerThread

TenantFactory = Callable[[str, float], Api]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # An elastic job may grow as soon as capacity is idle (test d); nothing else is elastic.
    return settings.model_copy(update={"sched_resize_gap_s": 0.0})


pytestmark = [pytest.mark.usefixtures("idle_cluster"), pytest.mark.workload]


@pytest.fixture
def tenant(api: Api, server: ServerThread) -> Iterator[TenantFactory]:
    """Create a tenant with a CPU quota; returns a client holding a member token of it."""
    clients: list[httpx.Client] = []

    def create(name: str, cpu: float) -> Api:
        created = api.http.post("/v1/tenants", json={"name": name, "quota": {"cpu": cpu}})
        assert created.status_code == 201, created.text
        body = {"tenant": name, "role": "member", "name": f"{name}-member"}
        token = api.http.post("/v1/tokens", json=body).json()["token"]
        client = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        clients.append(client)
        return Api(client)

    yield create
    for client in clients:
        client.close()


def toy(api: Api, name: str, *, cpus: float, workers: Any = 1, priority: str = "normal",
        **config: Any) -> dict[str, Any]:  # fmt: skip
    """Submit the toy train loop (uploaded by this client's tenant) with one spec."""
    ref = api.upload(zip_directory(FIXTURES / "toyjob"))
    return api.submit({
        "kind": "train", "name": name, "code": {"ref": ref}, "entrypoint": "toy:train_loop",
        "config": config, "priority": priority, "max_retries": 0,
        "resources": {"workers": workers, "cpus_per_worker": cpus},
    })  # fmt: skip


def events(api: Api, job_id: str) -> list[tuple[str, str | None]]:
    return [(e["to_status"], e["reason"]) for e in api.http.get(f"/v1/jobs/{job_id}/events").json()]


def event_time(api: Api, job_id: str, to_status: str, reason: str, nth: int = 0) -> str:
    times = [
        e["created_at"]
        for e in api.http.get(f"/v1/jobs/{job_id}/events").json()
        if (e["to_status"], e["reason"]) == (to_status, reason)
    ]
    return times[nth]  # type: ignore[no-any-return]


def wait_for_checkpoint(settings: Settings, job_id: str, timeout_s: float = 120) -> None:
    """Until the job's run has saved a checkpoint (the run is named by the job id)."""
    deadline = time.monotonic() + timeout_s
    while not any((settings.runs_dir / job_id).glob("checkpoint_*")):
        assert time.monotonic() < deadline, f"{job_id} saved no checkpoint"
        time.sleep(0.2)


def queue_reason(api: Api, job_id: str) -> str | None:
    """The job's wait reason code in the queue, or None once it is not queued."""
    for entry in api.http.get("/v1/queue").json():
        if entry["id"] == job_id:
            return entry["reason_code"]  # type: ignore[no-any-return]
    return None


def reasons_while_queued(api: Api, job_id: str, timeout_s: float = 120) -> set[str | None]:
    seen: set[str | None] = set()
    deadline = time.monotonic() + timeout_s
    while api.job(job_id)["status"] == "PENDING":
        assert time.monotonic() < deadline, f"{job_id} still pending"
        seen.add(queue_reason(api, job_id))
        time.sleep(0.1)
    return seen


def test_a_high_priority_job_preempts_a_low_one_which_resumes(api: Api, settings: Settings) -> None:
    low = toy(api, "low", cpus=4, priority="low", epochs=6, sleep_s=1.5)
    api.wait_status(low["id"], "RUNNING")
    wait_for_checkpoint(settings, low["id"])

    high = toy(api, "high", cpus=2, priority="high", epochs=1)
    assert "waiting_for_preemption" in reasons_while_queued(api, high["id"])
    assert api.wait_status(high["id"], "SUCCEEDED")["attempt"] == 1

    done = api.wait_status(low["id"], "SUCCEEDED")
    assert done["attempt"] == 2
    assert done["result"]["metrics"] == {"epoch": 6, "loss": 1 / 6, "resumed": True, "workers": 1}
    assert events(api, low["id"]) == [
        ("PENDING", "submitted"), ("STARTING", "admitted"), ("RUNNING", "ray_running"),
        ("RUNNING", "preempt_requested"), ("PREEMPTED", "preempted"), ("PENDING", "requeued"),
        ("STARTING", "admitted"), ("RUNNING", "ray_running"), ("SUCCEEDED", "completed"),
    ]  # fmt: skip
    # The high job started only once the low one had stopped, and ran first.
    assert event_time(api, low["id"], "PREEMPTED", "preempted") < event_time(
        api, high["id"], "STARTING", "admitted"
    )
    assert event_time(api, high["id"], "SUCCEEDED", "completed") < event_time(
        api, low["id"], "STARTING", "admitted", nth=1
    )


def test_two_tenants_submitting_at_once_are_interleaved(
    api: Api, server: ServerThread, tenant: TenantFactory
) -> None:
    reconciler = server.app.state.control_plane.reconciler
    reconciler.admission_paused = True  # all six are queued before one pass sees any
    team_a, team_b = tenant("team-a", 2), tenant("team-b", 2)
    a = [toy(team_a, f"a{i}", cpus=1, epochs=100, sleep_s=1)["id"] for i in range(3)]
    b = [toy(team_b, f"b{i}", cpus=1, epochs=100, sleep_s=1)["id"] for i in range(3)]
    reconciler.admission_paused = False
    reconciler.wake()

    deadline = time.monotonic() + 60
    while sum(api.job(j)["status"] != "PENDING" for j in a + b) < 4:
        assert time.monotonic() < deadline, "the first four jobs were not admitted"
        time.sleep(0.2)
    admitted = {j for j in a + b if api.job(j)["status"] != "PENDING"}
    # First come, first served would admit a0 a1 a2 b0 (team-a borrowing team-b's idle
    # quota); by dominant share the tenants take turns, oldest job of each first. (One
    # pass admits all four, and its events may share a timestamp to the microsecond,
    # so only each tenant's own order is read from them.)
    assert admitted == {a[0], b[0], a[1], b[1]}
    for first, second in ((a[0], a[1]), (b[0], b[1])):
        assert event_time(api, first, "STARTING", "admitted") <= event_time(
            api, second, "STARTING", "admitted"
        )
    for job_id in (a[2], b[2]):
        assert api.job(job_id)["status"] == "PENDING"
        assert queue_reason(api, job_id) == "quota_exhausted"


def test_a_tenant_borrows_idle_quota_until_the_lender_reclaims_it(
    api: Api, settings: Settings, tenant: TenantFactory
) -> None:
    team_a, team_b = tenant("team-a", 2), tenant("team-b", 2)
    borrower = toy(team_a, "borrower", cpus=3, epochs=6, sleep_s=1.5)  # over its quota of 2
    team_a.wait_status(borrower["id"], "RUNNING")
    wait_for_checkpoint(settings, borrower["id"])

    lender = toy(team_b, "lender", cpus=2, epochs=1)  # within its own quota
    team_b.wait_status(lender["id"], "RUNNING")
    assert events(team_a, borrower["id"])[3:6] == [
        ("RUNNING", "preempt_requested"), ("PREEMPTED", "preempted"), ("PENDING", "requeued"),
    ]  # fmt: skip
    reclaim = [e for e in team_a.http.get(f"/v1/jobs/{borrower['id']}/events").json()
               if e["reason"] == "preempt_requested"]  # fmt: skip
    assert reclaim[0]["message"] == "tenant team-b reclaimed the quota tenant team-a borrowed"
    # While the lender uses its quota, team-a has only its own 2 CPUs: the job waits.
    assert team_a.job(borrower["id"])["status"] == "PENDING"
    assert queue_reason(team_a, borrower["id"]) == "quota_exhausted"

    # Once the lender is done the borrower gets its turn back (and would resume from its
    # checkpoint, as test_a_high_priority_job_preempts_a_low_one_which_resumes shows).
    assert team_b.wait_status(lender["id"], "SUCCEEDED")["attempt"] == 1
    readmitted = team_a.wait_for(borrower["id"], lambda job: job["attempt"] == 2, timeout_s=60)
    assert readmitted["status"] in ("STARTING", "RUNNING")


def test_an_elastic_job_starts_small_and_grows_when_capacity_frees(
    api: Api, settings: Settings
) -> None:
    # The blocker runs until the elastic job has a checkpoint, then ends: timing-free.
    # (Racing a short blocker against the elastic job failed when the elastic job's run
    # started much sooner than the blocker's and finished first.)
    blocker = toy(api, "blocker", cpus=3, epochs=1000, sleep_s=1)
    elastic = toy(api, "elastic", cpus=1, workers={"min": 1, "max": 3}, epochs=12, sleep_s=2)
    api.wait_status(elastic["id"], "RUNNING")
    wait_for_checkpoint(settings, elastic["id"])
    assert api.job(elastic["id"])["attempt"] == 1  # not grown while the blocker runs
    assert api.http.post(f"/v1/jobs/{blocker['id']}/cancel").status_code < 300
    api.wait_status(blocker["id"], "CANCELLED")

    done = api.wait_status(elastic["id"], "SUCCEEDED")
    assert done["attempt"] == 2
    assert done["result"]["metrics"] == {
        "epoch": 12, "loss": 1 / 12, "resumed": True, "workers": 3,
    }  # fmt: skip
    history = api.http.get(f"/v1/jobs/{elastic['id']}/events").json()
    assert [(e["to_status"], e["reason"], e["message"]) for e in history] == [
        ("PENDING", "submitted", None),
        ("STARTING", "admitted", "1 workers"),
        ("RUNNING", "ray_running", None),
        ("RUNNING", "resize_requested", "grown on idle capacity"),
        ("PREEMPTED", "resized", "stopped to resize to 3 workers"),
        ("PENDING", "requeued", None),
        ("STARTING", "resized", "3 workers"),
        ("RUNNING", "ray_running", None),
        ("SUCCEEDED", "completed", None),
    ]
    # It grew only once the blocker had ended.
    [ended] = [
        e["created_at"]
        for e in api.http.get(f"/v1/jobs/{blocker['id']}/events").json()
        if e["to_status"] == "CANCELLED"
    ]
    assert ended < event_time(api, elastic["id"], "RUNNING", "resize_requested")
