from datetime import UTC, datetime, timedelta

from raydc.cluster.state import NodeInfo
from raydc.scheduler.admission import AdmissionSnapshot, PendingJob, admit_pending_jobs
from raydc.specs.capacity import capacity_of
from raydc.specs.demand import Demand
from raydc.specs.tenants import Quota

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def job(
    job_id: str, tenant: str = "a", rank: int = 1, second: int = 0, cpu: float = 1
) -> PendingJob:
    return PendingJob(job_id, tenant, rank, T0 + timedelta(seconds=second), Demand(cpu=cpu))


def snapshot(
    pending: list[PendingJob], free_cpu: float | None = 100, **quotas: Quota
) -> AdmissionSnapshot:
    return AdmissionSnapshot(
        pending=pending,
        tenant_usage={},
        tenant_quota=dict(quotas),
        free_capacity=Demand(cpu=free_cpu) if free_cpu is not None else None,
    )


def test_higher_priority_first_then_submission_order() -> None:
    pending = [job("late-high", rank=2, second=5), job("early", second=1), job("later", second=2)]
    decision = admit_pending_jobs(snapshot(pending, free_cpu=2))
    assert decision.admitted == ["late-high", "early"]
    assert "capacity" in decision.waiting["later"]


def test_a_job_over_its_tenant_quota_does_not_block_other_tenants() -> None:
    pending = [job("a1", "a", second=1, cpu=3), job("b1", "b", second=2, cpu=1)]
    decision = admit_pending_jobs(snapshot(pending, a=Quota(cpu=2)))
    assert decision.admitted == ["b1"]
    assert decision.waiting["a1"] == "tenant quota: cpu would be 3 of 2"


def test_quota_counts_running_usage() -> None:
    snap = snapshot([job("a2", "a", cpu=1)], a=Quota(cpu=2))
    snap.tenant_usage["a"] = Demand(cpu=2)
    decision = admit_pending_jobs(snap)
    assert decision.admitted == []
    assert "cpu would be 3 of 2" in decision.waiting["a2"]


def test_a_job_waiting_for_capacity_blocks_the_jobs_behind_it() -> None:
    pending = [job("big", second=1, cpu=8), job("small", second=2, cpu=1)]
    decision = admit_pending_jobs(snapshot(pending, free_cpu=4))
    assert decision.admitted == []
    assert decision.waiting["small"] == "behind job big, which waits for capacity"


def test_admission_uses_up_capacity() -> None:
    pending = [job(f"j{i}", second=i, cpu=1) for i in range(5)]
    decision = admit_pending_jobs(snapshot(pending, free_cpu=3))
    assert decision.admitted == ["j0", "j1", "j2"]


def test_nothing_is_admitted_while_the_cluster_size_is_unknown() -> None:
    decision = admit_pending_jobs(snapshot([job("x")], free_cpu=None))
    assert decision.admitted == []
    assert "cluster" in decision.waiting["x"]


def test_a_job_larger_than_the_whole_cluster_does_not_block_the_queue() -> None:
    snap = snapshot([job("huge", second=1, cpu=64), job("small", second=2)], free_cpu=4)
    snap = AdmissionSnapshot(snap.pending, {}, {}, Demand(cpu=4), total_capacity=Demand(cpu=8))
    decision = admit_pending_jobs(snap)
    assert decision.admitted == ["small"]
    assert decision.waiting["huge"].startswith("larger than the whole cluster")
    assert decision.blocked_by == {}


def test_jobs_behind_a_blocked_job_know_which_one() -> None:
    decision = admit_pending_jobs(snapshot([job("big", cpu=8), job("next", second=1)], 4))
    assert decision.blocked_by["next"].id == "big"


def test_custom_resources_must_exist_on_one_node() -> None:
    nodes = [
        NodeInfo("a", "10.0.0.1", True, True, 8, 0, 32, custom={}),
        NodeInfo("b", "10.0.0.2", False, True, 8, 1, 32, custom={"TPU": 4}),
        NodeInfo("c", "10.0.0.3", False, False, 8, 0, 32, custom={"FPGA": 1}),  # dead
    ]
    capacity = capacity_of(nodes)
    assert capacity.total == Demand(cpu=16, gpu=1, memory_gb=64)
    assert capacity.worker_fits_a_node(Demand(cpu=1), {"TPU": 4})
    assert not capacity.worker_fits_a_node(Demand(cpu=1), {"TPU": 5})
    assert not capacity.worker_fits_a_node(Demand(cpu=1), {"FPGA": 1})
    assert not capacity.worker_fits_a_node(Demand(cpu=1, gpu=1), {"TPU": 1, "X": 1})
