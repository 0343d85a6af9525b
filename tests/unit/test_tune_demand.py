"""A tune job is scheduled as one fixed-size job: every concurrent trial at its size."""

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from raydc.scheduler.model import Strategy
from raydc.server.control_plane import ControlPlane
from raydc.server.services.scheduling import job_of_row
from raydc.specs.capacity import ClusterCapacity
from raydc.specs.demand import Demand, worker_range
from raydc.store.models import JobRow
from tests.unit.factories import ADMIN, make_tenant, make_token, train_spec, tune_spec


def two_by_two(**overrides: Any) -> dict[str, Any]:
    """Two concurrent trials of two 1-CPU workers: 4 CPUs in all."""
    resources = {"workers": 2, "cpus_per_worker": 1, "placement": "SPREAD"}
    return tune_spec(resources=resources, max_concurrent_trials=2, num_samples=8, **overrides)


def set_cluster(control_plane: ControlPlane, cpu: float) -> None:
    node = Demand(cpu=cpu, gpu=0, memory_gb=64)
    control_plane.link.capacity = ClusterCapacity(total=node, nodes=(node,))


def row(control_plane: ControlPlane, job_id: str) -> JobRow:
    with control_plane.sessions() as session:
        found = session.scalar(select(JobRow).where(JobRow.id == job_id))
        assert found is not None
        session.expunge(found)
        return found


def test_worker_range_of_each_kind() -> None:
    assert worker_range(train_spec(resources={"workers": 3})) == (3, 3)
    assert worker_range(train_spec(resources={"workers": {"min": 1, "max": 4}})) == (1, 4)
    assert worker_range(tune_spec(resources={"workers": 2}, max_concurrent_trials=3)) == (6, 6)
    fixed_range = {"workers": {"min": 2, "max": 2}}
    assert worker_range(tune_spec(resources=fixed_range, max_concurrent_trials=2)) == (4, 4)
    assert worker_range(tune_spec()) == (1, 1)  # one trial at a time, one worker


def test_a_tune_job_demands_all_its_concurrent_trials(
    api: TestClient, control_plane: ControlPlane
) -> None:
    response = api.post("/v1/jobs", json=two_by_two(), headers=ADMIN)
    assert response.status_code == 201, response.text
    job = row(control_plane, response.json()["id"])
    assert (job.kind, job.demand_cpu, job.demand_gpu) == ("tune", 4, 0)
    policy_view = job_of_row(job)
    assert (policy_view.min_workers, policy_view.max_workers) == (4, 4)
    assert policy_view.shape.cpu == 1 and policy_view.strategy is Strategy.SPREAD


def test_it_is_admitted_whole_and_fills_the_cluster(
    api: TestClient, control_plane: ControlPlane
) -> None:
    set_cluster(control_plane, cpu=4)
    search = api.post("/v1/jobs", json=two_by_two(), headers=ADMIN).json()["id"]
    one_cpu = train_spec(resources={"workers": 1, "cpus_per_worker": 1})
    later = api.post("/v1/jobs", json=one_cpu, headers=ADMIN).json()["id"]
    assert control_plane.reconciler.schedule() == [search]
    admitted = row(control_plane, search)
    assert (admitted.status, admitted.workers) == ("STARTING", 4)
    wait = control_plane.reconciler.last_queue.decisions.waiting[later]
    assert wait.code == "cluster_full"


def test_one_that_could_never_run_is_refused_at_submit(
    api: TestClient, control_plane: ControlPlane
) -> None:
    set_cluster(control_plane, cpu=3)
    response = api.post("/v1/jobs", json=two_by_two(), headers=ADMIN)
    assert response.status_code == 422
    [detail] = response.json()["detail"]
    assert detail["loc"] == ["body", "resources"] and "cpu=4" in detail["msg"]

    make_tenant(api, "small", cpu=2)
    response = api.post("/v1/jobs", json=two_by_two(), headers=make_token(api, "small"))
    assert response.status_code == 422
    assert "cpu=4 at its minimum size, over the quota limit of 2" in response.text
    fits = tune_spec(resources={"workers": 2, "cpus_per_worker": 1}, max_concurrent_trials=1)
    assert api.post("/v1/jobs", json=fits, headers=make_token(api, "small")).status_code == 201
