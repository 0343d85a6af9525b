"""The reconciler's scheduling pass against a real database (no Ray calls are made)."""

import itertools
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from raydc.scheduler.policy import decide
from raydc.server.app import create_app
from raydc.server.control_plane import ControlPlane
from raydc.server.services import scheduling
from raydc.settings import Settings
from raydc.specs.capacity import ClusterCapacity
from raydc.specs.demand import Demand
from raydc.store.models import JobRow
from tests.unit.factories import ADMIN, ADMIN_TOKEN, make_tenant, make_token, train_spec


def set_cluster(control_plane: ControlPlane, cpu: float) -> None:
    node = Demand(cpu=cpu, gpu=0, memory_gb=64)
    control_plane.link.capacity = ClusterCapacity(total=node, nodes=(node,))


def statuses(control_plane: ControlPlane) -> dict[str, tuple[str, int]]:
    with control_plane.sessions() as session:
        return {j.id: (j.status, j.attempt) for j in session.scalars(select(JobRow))}


def one_cpu_job(**overrides: object) -> dict:
    return train_spec(resources={"workers": 1, "cpus_per_worker": 1}, **overrides)


def test_admits_in_priority_order_up_to_capacity(
    api: TestClient, control_plane: ControlPlane
) -> None:
    set_cluster(control_plane, cpu=2)
    first = api.post("/v1/jobs", json=one_cpu_job(), headers=ADMIN).json()["id"]
    second = api.post("/v1/jobs", json=one_cpu_job(), headers=ADMIN).json()["id"]
    urgent = api.post("/v1/jobs", json=one_cpu_job(priority="critical"), headers=ADMIN).json()
    admitted = control_plane.reconciler.schedule()
    assert admitted == [urgent["id"], first]
    state = statuses(control_plane)
    assert state[urgent["id"]] == ("STARTING", 1)
    assert state[second] == ("PENDING", 0)
    queue = api.get("/v1/queue", headers=ADMIN).json()
    assert queue[0]["id"] == second and queue[0]["reason_code"] == "cluster_full"
    assert queue[0]["reason"].startswith("cluster full: needs 1 x (cpu=1 gpu=0 memory_gb=0)")
    events = api.get(f"/v1/jobs/{first}/events", headers=ADMIN).json()
    assert [e["to_status"] for e in events] == ["PENDING", "STARTING"]


def test_a_tenant_at_its_quota_waits_while_others_run(
    api: TestClient, control_plane: ControlPlane
) -> None:
    set_cluster(control_plane, cpu=8)
    make_tenant(api, "capped", cpu=1)
    make_tenant(api, "open")
    capped, other = make_token(api, "capped"), make_token(api, "open")
    c1 = api.post("/v1/jobs", json=one_cpu_job(), headers=capped).json()["id"]
    c2 = api.post("/v1/jobs", json=one_cpu_job(), headers=capped).json()["id"]
    o1 = api.post("/v1/jobs", json=one_cpu_job(), headers=other).json()["id"]
    assert control_plane.reconciler.schedule() == [c1, o1]
    assert statuses(control_plane)[c2] == ("PENDING", 0)
    wait = control_plane.reconciler.last_queue.decisions.waiting[c2]
    assert wait.message.startswith("tenant quota exhausted: cpu would be 2 of nominal 1")
    # A second pass does not admit it either: the first job still holds the quota.
    assert control_plane.reconciler.schedule() == []


def test_the_queue_does_not_name_another_tenants_job(
    api: TestClient, control_plane: ControlPlane
) -> None:
    set_cluster(control_plane, cpu=2)
    make_tenant(api, "big")
    make_tenant(api, "small")
    big, small = make_token(api, "big"), make_token(api, "small")
    wide = train_spec(resources={"workers": 2, "cpus_per_worker": 1})
    api.post("/v1/jobs", json=one_cpu_job(), headers=small)  # runs, leaving 1 cpu
    blocker = api.post("/v1/jobs", json=wide, headers=big).json()["id"]
    waiting = api.post("/v1/jobs", json=one_cpu_job(), headers=small).json()["id"]
    control_plane.reconciler.schedule()
    [entry] = api.get("/v1/queue", headers=small).json()
    assert entry["id"] == waiting
    assert entry["reason"] == "capacity reserved for a job of another tenant"
    assert entry["reason_code"] == "reserved_for_job"
    admin_view = {e["id"]: e["reason"] for e in api.get("/v1/queue", headers=ADMIN).json()}
    assert admin_view[waiting] == f"capacity reserved for job {blocker}"


def test_a_job_larger_than_the_cluster_blocks_nobody(
    api: TestClient, control_plane: ControlPlane
) -> None:
    # Accepted while the cluster was larger; the cluster has shrunk since.
    set_cluster(control_plane, cpu=8)
    huge = train_spec(resources={"workers": 8, "cpus_per_worker": 1}, priority="high")
    huge_id = api.post("/v1/jobs", json=huge, headers=ADMIN).json()["id"]
    set_cluster(control_plane, cpu=2)
    small_id = api.post("/v1/jobs", json=one_cpu_job(), headers=ADMIN).json()["id"]
    assert control_plane.reconciler.schedule() == [small_id]
    reason = control_plane.reconciler.last_queue.decisions.waiting[huge_id].message
    assert reason.startswith("the cluster cannot hold 8 x (cpu=1")


def test_a_reclaimed_borrower_waits_until_the_lender_is_admitted(
    api: TestClient, control_plane: ControlPlane
) -> None:
    from raydc.server.job_outcomes import read_active

    set_cluster(control_plane, cpu=4)
    make_tenant(api, "lender", cpu=2)
    make_tenant(api, "borrower", cpu=2)
    lender, borrower = make_token(api, "lender"), make_token(api, "borrower")
    three = train_spec(resources={"workers": 3, "cpus_per_worker": 1})
    # Over its quota of 2 but within what the idle lender could lend: accepted, and runs.
    borrowed = api.post("/v1/jobs", json=three, headers=borrower)
    assert borrowed.status_code == 201, borrowed.text
    assert control_plane.reconciler.schedule() == [borrowed.json()["id"]]
    two = train_spec(resources={"workers": 2, "cpus_per_worker": 1})
    mine = api.post("/v1/jobs", json=two, headers=lender).json()["id"]
    assert control_plane.reconciler.schedule() == []  # the borrower must stop first
    queue = {e["id"]: e for e in api.get("/v1/queue", headers=ADMIN).json()}
    assert queue[mine]["reason_code"] == "waiting_for_preemption"
    # The borrower's Ray job stopped: it is requeued, and sits out while the lender waits.
    with control_plane.sessions() as session:
        [victim] = read_active(session)
    assert victim.stop_action == "preempt"
    control_plane.reconciler.outcomes.stopped(victim)
    assert control_plane.reconciler.schedule() == [mine]
    state = statuses(control_plane)
    assert state[victim.id] == ("PENDING", 1) and state[mine] == ("STARTING", 1)
    events = api.get(f"/v1/jobs/{victim.id}/events", headers=ADMIN).json()
    assert [e["to_status"] for e in events][-2:] == ["PREEMPTED", "PENDING"]
    assert "reclaimed" in events[-3]["message"]


def test_a_job_over_its_quota_with_nothing_to_borrow_is_refused_at_submit(
    api: TestClient, control_plane: ControlPlane
) -> None:
    set_cluster(control_plane, cpu=8)
    make_tenant(api, "alone", cpu=2)
    token = make_token(api, "alone")
    three = train_spec(resources={"workers": 3, "cpus_per_worker": 1})
    refused = api.post("/v1/jobs", json=three, headers=token)
    assert refused.status_code == 422 and "quota" in refused.text


def test_the_newest_checkpoint_time_is_read_from_the_run_directory(tmp_path: Path) -> None:
    from raydc.server.job_outcomes import latest_checkpoint_at

    assert latest_checkpoint_at(tmp_path / "missing") is None
    run = tmp_path / "job-1"
    (run / "checkpoint_2026-11-27_22-35-06.663028").mkdir(parents=True)
    newer = run / "checkpoint_2026-11-27_22-35-07.671977"
    newer.mkdir()
    stray = run / "checkpoint_not_a_dir"
    stray.write_text("x")
    os.utime(newer, (1_800_000_000, 1_800_000_000))
    os.utime(stray, (1_900_000_000, 1_900_000_000))  # a file, not a checkpoint: ignored
    assert latest_checkpoint_at(run) == datetime.fromtimestamp(1_800_000_000, UTC)


def test_a_cancel_during_a_scheduling_pass_is_not_overwritten(
    tmp_path: Path, database_url_for: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pass reads the queue, a cancel arrives before it writes. Either the cancel
    waits for the pass (and asks the admitted job to stop) or the pass skips the job;
    never may the pass write STARTING over CANCELLED (seen on Postgres in CI)."""
    settings = Settings(
        home=tmp_path / "home", admin_token=ADMIN_TOKEN,
        database_url=database_url_for(f"sqlite:///{tmp_path / 'raydc.db'}"),
    )  # fmt: skip
    read_done, cancel_done = threading.Event(), threading.Event()

    def slow_decide(snapshot: Any) -> Any:
        read_done.set()
        cancel_done.wait(timeout=1.5)  # with the rows locked, the cancel cannot finish
        return decide(snapshot)

    monkeypatch.setattr(scheduling, "decide", slow_decide)
    with TestClient(create_app(settings, run_reconciler=False)) as api:
        control_plane: ControlPlane = api.app.state.control_plane  # type: ignore[attr-defined]
        set_cluster(control_plane, cpu=2)
        job = api.post("/v1/jobs", json=one_cpu_job(), headers=ADMIN).json()["id"]
        cancelled: list[int] = []

        def cancel() -> None:
            assert read_done.wait(timeout=30)
            cancelled.append(api.post(f"/v1/jobs/{job}/cancel", headers=ADMIN).status_code)
            cancel_done.set()

        canceller = threading.Thread(target=cancel)
        canceller.start()
        control_plane.reconciler.schedule()
        canceller.join(timeout=60)
        assert cancelled == [202]
        with control_plane.sessions() as session:
            row = session.get(JobRow, job)
            assert row is not None
            final = (row.status, row.cancel_requested)
        assert final in {("CANCELLED", False), ("STARTING", True)}
        events = api.get(f"/v1/jobs/{job}/events", headers=ADMIN).json()
        for before, after in itertools.pairwise(events):
            assert after["from_status"] == before["to_status"], events
