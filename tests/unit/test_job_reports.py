"""Nothing a job reports is trusted: its result file is read with a size limit and a
schema, and the checkpoint it names must be inside its own run directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from raydc.server.control_plane import ControlPlane
from raydc.server.job_reports import (
    MAX_REPORT_BYTES,
    UntrustedReport,
    own_checkpoint,
    read_progress_file,
    read_result_file,
)
from raydc.server.services.launch import progress_path, result_path
from raydc.store.models import JobRow
from raydc.workloads.protocol import write_result
from tests.unit.factories import ADMIN, make_tenant, make_token, train_spec
from tests.unit.run_files import run_checkpoint
from tests.unit.test_tune_outcomes import running_job


def test_a_checkpoint_inside_the_run_directory_is_its_resolved_path(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    (runs / "job-a" / "ckpt").mkdir(parents=True)
    (runs / "job-a" / "x").mkdir()
    assert own_checkpoint(str(runs / "job-a" / "x" / ".." / "ckpt"), runs, "job-a") == str(
        (runs / "job-a" / "ckpt").resolve()
    )


@pytest.mark.parametrize("how", ["outside", "sibling", "link", "linked-run-dir", "missing", "file"])
def test_a_checkpoint_elsewhere_is_refused(tmp_path: Path, how: str) -> None:
    runs = tmp_path / "runs"
    other = runs / "job-b" / "ckpt"  # another tenant's job, next door
    other.mkdir(parents=True)
    own = runs / "job-a"
    own.mkdir()
    reported = {
        "outside": str(tmp_path),
        "sibling": str(own / ".." / "job-b" / "ckpt"),
        "link": str(own / "ckpt"),
        "linked-run-dir": str(runs / "job-c" / "ckpt"),
        "missing": str(own / "nothing"),
        "file": str(own / "state.pt"),
    }[how]
    if how == "link":
        os.symlink(other, own / "ckpt")
    job = "job-a"
    if how == "linked-run-dir":
        os.symlink(runs / "job-b", runs / "job-c")  # the job's own dir is a link
        job = "job-c"
    (own / "state.pt").write_bytes(b"x")
    with pytest.raises(UntrustedReport):
        own_checkpoint(reported, runs, job)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"[1, 2]", "not a JSON object"),
        (b'{"status": "succeeded", "metrics": {"a": NaN}}', "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b'{"status": "won"}', "status"),
        (b'{"status": "succeeded", "checkpoint_path": 7}', "checkpoint_path"),
        (b'{"status": "succeeded", "surprise": 1}', "surprise"),
        (b"[" * 100_000, "not valid JSON"),
    ],
)
def test_a_malformed_result_file_is_refused(tmp_path: Path, content: bytes, says: str) -> None:
    path = tmp_path / "result.json"
    path.write_bytes(content)
    with pytest.raises(UntrustedReport, match=says):
        read_result_file(path)


def test_a_result_file_over_the_limit_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    with open(path, "wb") as handle:
        handle.write(b'{"status": "succeeded", "error": "')
        handle.truncate(MAX_REPORT_BYTES * 4)
    with pytest.raises(UntrustedReport, match="over"):
        read_result_file(path)


def test_a_progress_file_with_a_made_up_event_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    path.write_text(json.dumps({"events": [{"reason": "x" * 500, "message": "m"}]}))
    assert read_progress_file(path) is None
    path.write_text(json.dumps({"events": [{"seq": 1, "reason": "worker_failed",
                                            "message": "rank 0: boom", "at": 1.0}]}))  # fmt: skip
    progress = read_progress_file(path)
    assert progress is not None and progress.events[0].reason == "worker_failed"


def test_a_job_reporting_another_tenants_checkpoint_fails_and_registers_nothing(
    api: TestClient, control_plane: ControlPlane
) -> None:
    make_tenant(api, "victim")
    make_tenant(api, "mallory")
    victim = make_token(api, "victim")
    mallory = make_token(api, "mallory")
    settings = control_plane.settings
    theirs = running_job(api, control_plane, train_spec(name="secret-model"), victim)
    their_checkpoint = run_checkpoint(settings, theirs.id)
    for linked in (False, True):
        ours = running_job(api, control_plane, train_spec(name="stolen"), mallory)
        reported = their_checkpoint
        own = settings.runs_dir / ours.id
        own.mkdir(parents=True, exist_ok=True)
        if linked:  # a link in the attacker's own run directory to the victim's checkpoint
            os.symlink(their_checkpoint, own / "checkpoint_000000")
            reported = str(own / "checkpoint_000000")
        result = {"status": "succeeded", "metrics": {}, "checkpoint_path": reported}
        write_result(result_path(settings, ours.id, ours.sid), result)
        assert control_plane.reconciler.outcomes.finish_from_result(ours, "SUCCEEDED")
        job = api.get(f"/v1/jobs/{ours.id}", headers=mallory).json()
        assert job["status"] == "FAILED", job
        assert job["termination_reason"] == "invalid_result"
        assert "outside the job's run directory" in job["error"]
        assert api.get("/v1/models", headers=mallory).json() == []
        assert api.get("/v1/models", headers=ADMIN).json() == []


def test_a_finished_job_records_what_its_run_directory_holds(
    api: TestClient, control_plane: ControlPlane
) -> None:
    job = running_job(api, control_plane, train_spec(name="sized"))
    checkpoint = run_checkpoint(control_plane.settings, job.id)
    (Path(checkpoint) / "weights.bin").write_bytes(b"w" * 10_000)
    result = {"status": "succeeded", "metrics": {"a": 1}, "checkpoint_path": checkpoint}
    write_result(result_path(control_plane.settings, job.id, job.sid), result)
    write_result(progress_path(control_plane.settings, job.id), {"events": []})
    assert control_plane.reconciler.outcomes.finish_from_result(job, "SUCCEEDED")
    with control_plane.sessions() as session:
        row = session.get(JobRow, job.id)
        assert row is not None and row.status == "SUCCEEDED"
        assert row.artifact_bytes == 10_000 + len(b"state")
