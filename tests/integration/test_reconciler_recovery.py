"""The reconciler's crash windows and error paths, one pass at a time, on a real Ray."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest

from raydc.client import zip_directory
from raydc.cluster.client import RayCluster
from raydc.cluster.jobs import RayJobState
from raydc.security.rbac import Principal
from raydc.server.control_plane import ControlPlane
from raydc.server.job_outcomes import read_active
from raydc.server.services import jobs
from raydc.server.services.code import bundle_dir, store_code
from raydc.server.services.launch import build_launch, result_path
from raydc.settings import Settings
from raydc.specs.jobs import parse_job_spec
from raydc.specs.tenants import Role
from raydc.store.models import JobRow
from raydc.workloads.protocol import write_result
from tests.conftest import FIXTURES
from tests.unit.run_files import run_checkpoint

ADMIN = Principal(token_id="test", tenant="default", role=Role.ADMIN, name="test")


@pytest.fixture
def plane(settings: Settings) -> Iterator[ControlPlane]:
    """A control plane whose reconciler is driven by hand (its loop is not started)."""
    cp = ControlPlane.create(settings)
    cp.link.connect()
    cp.link.refresh_nodes_if_due(every_s=60)
    try:
        yield cp
    finally:
        cp.shutdown()


def cluster_of(cp: ControlPlane) -> RayCluster:
    assert cp.link.cluster is not None
    return cp.link.cluster


def submit(cp: ControlPlane, ref: str, **config: Any) -> str:
    spec = parse_job_spec({
        "kind": "train", "name": "recovery", "code": {"ref": ref},
        "entrypoint": "toy:train_loop", "config": {"epochs": 1, **config},
        "resources": {"workers": 1, "cpus_per_worker": 0.5}, "max_retries": 0,
    })  # fmt: skip
    with cp.tx() as session:
        [job] = jobs.insert_submissions(
            session, [jobs.Submission(ADMIN, spec)], cp.submit_context()
        )
        assert isinstance(job, JobRow)
        return job.id


def upload_toy(cp: ControlPlane) -> str:
    with cp.tx() as session:
        return store_code(session, "default", zip_directory(FIXTURES / "toyjob"),
                          cp.settings.code_dir, cp.settings.max_code_unpacked_bytes)  # fmt: skip


def job(cp: ControlPlane, job_id: str) -> JobRow:
    with cp.sessions() as session:
        row = session.get(JobRow, job_id)
        assert row is not None
        return row


def sync_until(cp: ControlPlane, job_id: str, status: str, timeout_s: float = 180) -> JobRow:
    deadline = time.monotonic() + timeout_s
    while (row := job(cp, job_id)).status != status:
        assert time.monotonic() < deadline, f"{job_id} stuck in {row.status}"
        cp.reconciler.sync_active(cluster_of(cp))
        time.sleep(0.3)
    return row


def test_cancel_before_the_job_reached_ray(plane: ControlPlane) -> None:
    job_id = submit(plane, upload_toy(plane))
    assert plane.reconciler.schedule() == [job_id]
    with plane.tx() as session:
        jobs.cancel_job(session, ADMIN, job_id)
    plane.reconciler.launch_admitted(cluster_of(plane))
    assert job(plane, job_id).status == "CANCELLED"


def test_cancel_after_a_crash_between_submit_and_record(plane: ControlPlane) -> None:
    job_id = submit(plane, upload_toy(plane), epochs=100, sleep_s=1)
    plane.reconciler.schedule()
    row = job(plane, job_id)
    # The crash: Ray accepted the job, the control plane never recorded it.
    launch = build_launch(plane.settings, job_id, row.tenant, row.attempt, row.spec)
    cluster_of(plane).jobs.submit(launch.submission_id, launch.entrypoint, launch.runtime_env, {})
    with plane.tx() as session:
        jobs.cancel_job(session, ADMIN, job_id)
    plane.reconciler.launch_admitted(cluster_of(plane))
    assert job(plane, job_id).submitted_at is not None  # stopped on Ray, not forgotten
    sync_until(plane, job_id, "CANCELLED")
    assert cluster_of(plane).jobs.state(launch.submission_id).status == "STOPPED"


def test_resubmit_after_a_crash_attaches_to_the_running_job(plane: ControlPlane) -> None:
    job_id = submit(plane, upload_toy(plane))
    plane.reconciler.schedule()
    row = job(plane, job_id)
    launch = build_launch(plane.settings, job_id, row.tenant, row.attempt, row.spec)
    cluster_of(plane).jobs.submit(launch.submission_id, launch.entrypoint, launch.runtime_env, {})
    plane.reconciler.launch_admitted(cluster_of(plane))  # "already exists": attach
    done = sync_until(plane, job_id, "SUCCEEDED")
    assert done.result is not None and done.result["model"] == "recovery:1"
    ray_jobs = cluster_of(plane).jobs._client.list_jobs()
    assert [j.submission_id for j in ray_jobs].count(launch.submission_id) == 1


def test_a_job_ray_forgot_is_finished_from_its_result(plane: ControlPlane) -> None:
    """Ray lost the job (head restarted) after it had finished: keep its result."""
    job_id = submit(plane, upload_toy(plane))
    plane.reconciler.schedule()
    with plane.tx() as session:  # as if submitted and seen running before the restart
        row = session.get(JobRow, job_id)
        assert row is not None
        row.submitted_at = row.created_at
    checkpoint = run_checkpoint(plane.settings, job_id)  # inside the job's own run dir
    outcome = {"status": "succeeded", "metrics": {"epoch": 1}, "checkpoint_path": checkpoint}
    write_result(result_path(plane.settings, job_id, job_id), outcome)
    plane.reconciler.sync_active(cluster_of(plane))
    done = job(plane, job_id)
    assert done.status == "SUCCEEDED" and done.attempt == 1
    assert done.result == {"metrics": {"epoch": 1}, "checkpoint_path": checkpoint,
                           "model": "recovery:1"}  # fmt: skip


def test_a_job_ray_forgot_without_a_result_is_requeued(plane: ControlPlane) -> None:
    job_id = submit(plane, upload_toy(plane))
    plane.reconciler.schedule()
    with plane.tx() as session:
        row = session.get(JobRow, job_id)
        assert row is not None
        row.submitted_at = row.created_at
    plane.reconciler.sync_active(cluster_of(plane))
    row = job(plane, job_id)
    assert (row.status, row.attempt) == ("PENDING", 1)
    with plane.sessions() as session:
        events = [e.to_status for e in jobs.job_events(session, ADMIN, job_id)]
    assert events == ["PENDING", "STARTING", "PREEMPTED", "PENDING"]


def test_one_bad_launch_does_not_hold_up_the_others(plane: ControlPlane) -> None:
    good_ref = upload_toy(plane)
    bad_ref = plane.settings.code_dir.parent / "elsewhere"
    shutil.copytree(FIXTURES / "toyjob", bad_ref)
    (bad_ref / "extra.py").write_text("# makes it a different bundle\n")
    with plane.tx() as session:
        other = store_code(session, "default", zip_directory(bad_ref), plane.settings.code_dir,
                           plane.settings.max_code_unpacked_bytes)  # fmt: skip
    broken = submit(plane, other)
    shutil.rmtree(bundle_dir(plane.settings.code_dir, other))  # its code vanished
    fine = submit(plane, good_ref)
    plane.reconciler.schedule()
    plane.reconciler.launch_admitted(cluster_of(plane))
    failed = job(plane, broken)
    assert failed.status == "FAILED" and failed.termination_reason == "submission_failed"
    assert job(plane, fine).submitted_at is not None
    sync_until(plane, fine, "SUCCEEDED")


def test_ray_ending_a_job_without_a_result_or_message_still_ends_it(plane: ControlPlane) -> None:
    """Ray can report FAILED with no message before raydc's entrypoint ever ran."""
    job_id = submit(plane, upload_toy(plane))
    plane.reconciler.schedule()
    with plane.sessions() as session:
        [active] = read_active(session)
    plane.reconciler.outcomes.apply(cluster_of(plane), active, RayJobState("FAILED", None, 1, 2))
    ended = job(plane, job_id)
    assert (ended.status, ended.termination_reason) == ("FAILED", "submission_failed")
    assert ended.error == "Ray reports the job FAILED"
