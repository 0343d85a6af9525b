"""What the reconciler makes of a tune job's progress and result files, and model lineage
for train and tune jobs (no Ray: the files are written here as the workload would)."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text
from typer.testing import CliRunner

from raydc import cli, cli_base
from raydc.cluster.jobs import RayJobState
from raydc.server.control_plane import ControlPlane
from raydc.server.job_outcomes import ActiveJob, read_active
from raydc.server.services.launch import progress_path, result_path
from raydc.specs.capacity import ClusterCapacity
from raydc.specs.demand import Demand
from raydc.store import migrate
from raydc.store.db import make_engine
from raydc.store.models import JobRow
from raydc.workloads.protocol import write_result
from tests.unit.factories import ADMIN, train_spec, tune_spec
from tests.unit.run_files import run_checkpoint
from tests.unit.test_tenants import sdk_for

RUNNING = RayJobState("RUNNING", None, None, None)


def running_job(
    api: TestClient, control_plane: ControlPlane, spec: dict[str, Any],
    headers: dict[str, str] = ADMIN,
) -> ActiveJob:  # fmt: skip
    node = Demand(cpu=8, gpu=0, memory_gb=64)
    control_plane.link.capacity = ClusterCapacity(total=node, nodes=(node,))
    job_id = api.post("/v1/jobs", json=spec, headers=headers).json()["id"]
    assert control_plane.reconciler.schedule() == [job_id]
    ray_says_running(control_plane, active(control_plane, job_id))
    job = active(control_plane, job_id)
    assert job.status.value == "RUNNING"
    return job


def ray_says_running(control_plane: ControlPlane, job: ActiveJob) -> None:
    # A RUNNING report needs no cluster client (only a finished attempt's logs do).
    control_plane.reconciler.outcomes.apply(None, job, RUNNING)  # type: ignore[arg-type]


def active(control_plane: ControlPlane, job_id: str) -> ActiveJob:
    with control_plane.sessions() as session:
        return next(j for j in read_active(session) if j.id == job_id)


def trial(trial_id: str, status: str, lr: float, accuracy: float | None) -> dict[str, Any]:
    metrics = {} if accuracy is None else {"epoch": 2, "accuracy": accuracy}
    return {"id": trial_id, "status": status, "config": {"epochs": 3, "lr": lr},
            "iterations": 2 if metrics else 0, "metrics": metrics}  # fmt: skip


def test_a_running_tune_job_shows_its_trials(api: TestClient, control_plane: ControlPlane) -> None:
    job = running_job(api, control_plane, tune_spec(max_concurrent_trials=2, num_samples=3))
    progress = progress_path(control_plane.settings, job.id)

    ray_says_running(control_plane, job)  # no progress file yet
    assert api.get(f"/v1/jobs/{job.id}", headers=ADMIN).json()["result"] is None

    trials = [trial("t_0", "RUNNING", 0.01, 0.8), trial("t_1", "PENDING", 0.02, None)]
    write_result(progress, {"trials": trials, "checkpointed_at": 1_800_000_000.0})
    ray_says_running(control_plane, job)
    shown = api.get(f"/v1/jobs/{job.id}", headers=ADMIN).json()
    assert shown["status"] == "RUNNING" and shown["result"] == {"trials": trials}
    with control_plane.sessions() as session:
        row = session.get(JobRow, job.id)
        assert row is not None and row.last_checkpoint_at is not None
        assert row.last_checkpoint_at.timestamp() == 1_800_000_000.0

    trials[1] = trial("t_1", "RUNNING", 0.02, 0.7)
    write_result(progress, {"trials": trials, "checkpointed_at": None})
    ray_says_running(control_plane, job)
    assert api.get(f"/v1/jobs/{job.id}", headers=ADMIN).json()["result"]["trials"] == trials


def test_a_finished_search_registers_its_best_trial_with_lineage(
    api: TestClient, control_plane: ControlPlane, tmp_path: Path
) -> None:
    job = running_job(api, control_plane, tune_spec(name="search"))
    trials = [trial("t_0", "TERMINATED", 0.01, 0.8), trial("t_1", "TERMINATED", 0.02, 0.9)]
    best = {"id": "t_1", "config": trials[1]["config"], "metrics": trials[1]["metrics"]}
    outcome = {"status": "succeeded", "metrics": {"epoch": 2, "accuracy": 0.9},
               "checkpoint_path": run_checkpoint(control_plane.settings, job.id, "t_1", "c_1"),
               "trials": trials, "best_trial": best}  # fmt: skip
    write_result(result_path(control_plane.settings, job.id, job.sid), outcome)
    assert control_plane.reconciler.outcomes.finish_from_result(job, ray_status="SUCCEEDED")

    done = api.get(f"/v1/jobs/{job.id}", headers=ADMIN).json()
    assert done["status"] == "SUCCEEDED"
    assert done["result"]["trials"] == trials and done["result"]["best_trial"] == best
    assert done["result"]["model"] == "search:1"
    [version] = api.get("/v1/models/search/versions", headers=ADMIN).json()
    assert version["uri"] == outcome["checkpoint_path"]
    assert version["metrics"] == {"epoch": 2, "accuracy": 0.9}
    assert version["lineage"] == {"job": job.id, "kind": "tune", "trial": "t_1",
                                  "config": {"epochs": 3, "lr": 0.02},
                                  "metrics": {"epoch": 2, "accuracy": 0.9}}  # fmt: skip


def test_a_failed_search_keeps_the_trials_it_showed(
    api: TestClient, control_plane: ControlPlane
) -> None:
    job = running_job(api, control_plane, tune_spec())
    trials = [trial("t_0", "ERROR", 0.01, None)]
    write_result(progress_path(control_plane.settings, job.id), {"trials": trials})
    ray_says_running(control_plane, job)
    failed = {"status": "failed", "error": "TuneFailed: all 1 trials failed; the first: boom"}
    write_result(result_path(control_plane.settings, job.id, job.sid), failed)
    assert control_plane.reconciler.outcomes.finish_from_result(job, ray_status="FAILED")
    done = api.get(f"/v1/jobs/{job.id}", headers=ADMIN).json()
    assert done["status"] == "FAILED" and "all 1 trials failed" in done["error"]
    assert done["result"] == {"trials": trials}
    assert api.get("/v1/models", headers=ADMIN).json() == []


def test_a_train_jobs_version_records_its_config(
    api: TestClient, control_plane: ControlPlane
) -> None:
    spec = train_spec(name="plain", config={"epochs": 2, "lr": 0.01})
    job = running_job(api, control_plane, spec)
    outcome = {"status": "succeeded", "metrics": {"accuracy": 0.9},
               "checkpoint_path": run_checkpoint(control_plane.settings, job.id)}  # fmt: skip
    write_result(result_path(control_plane.settings, job.id, job.sid), outcome)
    assert control_plane.reconciler.outcomes.finish_from_result(job, ray_status="SUCCEEDED")
    [version] = api.get("/v1/models/plain/versions", headers=ADMIN).json()
    assert version["lineage"] == {"job": job.id, "kind": "train",
                                  "config": {"epochs": 2, "lr": 0.01}}  # fmt: skip


def test_versions_from_before_lineage_have_none(
    tmp_path: Path, database_url_for: Callable[..., str]
) -> None:
    engine = make_engine(database_url_for(f"sqlite:///{tmp_path / 'm.db'}", migrated=False))
    migrate.upgrade(engine, "0002")
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO tenants (name, created_at) VALUES ('a', '2026-01-01 00:00:00');"
        ))  # fmt: skip
        connection.execute(text(
            "INSERT INTO jobs (id, tenant, name, kind, status, priority, priority_rank, spec,"
            " demand_cpu, demand_gpu, demand_memory_gb, attempt, cancel_requested, created_at,"
            " updated_at) VALUES ('j1', 'a', 'n', 'train', 'SUCCEEDED', 'normal', 1, '{}',"
            " 1, 0, 0, 1, false, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
        ))  # fmt: skip
        connection.execute(text(
            "INSERT INTO models (id, tenant, name, created_at) VALUES (1, 'a', 'n', '2026-01-01')"
        ))  # fmt: skip
        connection.execute(text(
            "INSERT INTO model_versions (model_id, version, uri, metrics, job_id, created_at)"
            " VALUES (1, 1, '/c', '{}', 'j1', '2026-01-01 00:00:00')"
        ))  # fmt: skip
    migrate.upgrade(engine, "0003")
    with engine.connect() as connection:
        version = connection.execute(text("SELECT * FROM model_versions")).mappings().one()
    assert version["lineage"] is None and version["uri"] == "/c"
    migrate.downgrade(engine, "0002")
    columns = {c["name"] for c in inspect(engine).get_columns("model_versions")}
    engine.dispose()
    assert "lineage" not in columns and "uri" in columns


def test_the_cli_lists_a_searchs_trials_and_marks_the_best(
    api: TestClient, control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_base, "client", lambda: sdk_for(api))
    monkeypatch.setattr(cli_base.console, "width", 200)
    runner = CliRunner()
    job = running_job(api, control_plane, tune_spec(name="search"))
    assert "no trials yet" in runner.invoke(cli.app, ["jobs", "trials", job.id]).output

    trials = [trial("t_0", "TERMINATED", 0.01, 0.8), trial("t_1", "TERMINATED", 0.02, 0.9),
              {**trial("t_2", "ERROR", 0.03, None), "error": "RuntimeError: boom"}]  # fmt: skip
    best = {"id": "t_1", "config": trials[1]["config"], "metrics": trials[1]["metrics"]}
    outcome = {"status": "succeeded", "metrics": trials[1]["metrics"],
               "checkpoint_path": run_checkpoint(control_plane.settings, job.id),
               "trials": trials, "best_trial": best}  # fmt: skip
    write_result(result_path(control_plane.settings, job.id, job.sid), outcome)
    assert control_plane.reconciler.outcomes.finish_from_result(job, ray_status="SUCCEEDED")

    shown = runner.invoke(cli.app, ["jobs", "trials", job.id])
    assert shown.exit_code == 0, shown.output
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in shown.output.splitlines() if "t_" in line}  # fmt: skip
    # Only the searched key (lr) is a column: epochs is the same in every trial.
    assert "LR" in shown.output and "EPOCHS" not in shown.output
    assert rows["* t_1"] == ["TERMINATED", "2", "0.02", "epoch=2, accuracy=0.9"]
    assert rows["t_0"][:3] == ["TERMINATED", "2", "0.01"]
    assert rows["t_2"] == ["ERROR", "0", "0.03", "RuntimeError: boom"]
    versions = runner.invoke(cli.app, ["models", "versions", "search"])
    assert f"{job.id} (trial t_1)" in versions.output

    plain = running_job(api, control_plane, train_spec(name="plain"))
    refused = runner.invoke(cli.app, ["jobs", "trials", plain.id])
    assert refused.exit_code == 1 and "not a tune job" in refused.output
