"""The scheduling policy on hand-built snapshots: every rule, one scenario each."""

from __future__ import annotations

from dataclasses import replace

from raydc.scheduler.model import (
    Job,
    Node,
    NodeType,
    PolicyConfig,
    Shape,
    Snapshot,
    Strategy,
    Tenant,
    WaitCode,
)
from raydc.scheduler.policy import decide

NOW = 100_000.0
CPU1 = Shape(cpu=1)
GPU1 = Shape(cpu=1, gpu=1)


def job(
    job_id: str,
    *,
    tenant: str = "a",
    priority: int = 1,
    at: float = 0.0,
    shape: Shape = CPU1,
    workers: int | tuple[int, int] = 1,
    strategy: Strategy = Strategy.PACK,
    **running: object,
) -> Job:
    low, high = (workers, workers) if isinstance(workers, int) else workers
    made = Job(job_id, tenant, priority, NOW - 10_000 + at, shape, low, high, strategy,
               queued_at=NOW - 10_000 + at)  # fmt: skip
    for name, value in running.items():
        setattr(made, name, value)
    return made


def run(job_id: str, node: str, workers: int = 1, **fields: object) -> Job:
    """A running job of ``workers`` placed on ``node``; ``size`` = (min, max) if elastic."""
    size = fields.pop("size", workers)
    made = job(job_id, workers=size, **fields)  # type: ignore[arg-type]
    made.workers, made.placement = workers, {node: workers}
    if made.started_at is None:
        made.started_at = NOW - 600
    return made


def nodes(*cpus: float, gpu: float = 0) -> list[Node]:
    return [Node(f"n{i}", cpu, gpu, 64) for i, cpu in enumerate(cpus)]


def snap(pending: list[Job], running: list[Job] | None = None, cluster: list[Node] | None = None,
         **kwargs: object) -> Snapshot:  # fmt: skip
    config = kwargs.pop("config", PolicyConfig(aging_s=0))
    return Snapshot(NOW, cluster if cluster is not None else nodes(4), running or [], pending,
                    config=config, **kwargs)  # type: ignore[arg-type]  # fmt: skip


def admitted(decisions: object) -> list[str]:
    return [a.job_id for a in decisions.admit]  # type: ignore[attr-defined]


# -- order ------------------------------------------------------------------------------
def test_priority_first_then_submission_order() -> None:
    pending = [job("old"), job("new", at=5), job("urgent", priority=3, at=9)]
    decisions = decide(snap(pending, cluster=nodes(2)))
    assert admitted(decisions) == ["urgent", "old"]
    assert decisions.order == ["urgent", "old", "new"]
    assert decisions.waiting["new"].code is WaitCode.CAPACITY


def test_aging_lifts_a_long_waiting_job_above_fresher_higher_priority_work() -> None:
    config = PolicyConfig(aging_s=3600)
    starved = job("starved", priority=0, at=-3 * 3600)  # waited 3h45m: low + 3 = critical
    fresh = job("fresh", priority=2, at=9_990)
    decisions = decide(snap([fresh, starved], cluster=nodes(1), config=config))
    assert admitted(decisions) == ["starved"]


def test_tenants_at_the_same_priority_take_turns_by_dominant_share() -> None:
    pending = [job(f"a{i}", tenant="a", at=i) for i in range(3)]
    pending += [job(f"b{i}", tenant="b", at=10 + i) for i in range(3)]
    decisions = decide(snap(pending, cluster=nodes(4)))
    assert admitted(decisions) == ["a0", "b0", "a1", "b1"]


def test_a_heavier_weight_earns_a_larger_share() -> None:
    tenants = {"a": Tenant("a", weight=3.0), "b": Tenant("b")}
    pending = [job(f"a{i}", tenant="a", at=i) for i in range(4)]
    pending += [job(f"b{i}", tenant="b", at=i) for i in range(4)]
    decisions = decide(snap(pending, cluster=nodes(4), tenants=tenants))
    assert sorted(admitted(decisions)) == ["a0", "a1", "a2", "b0"]


def test_a_tenant_already_using_more_goes_after_one_using_less() -> None:
    running = [run("a-running", "n0", 2)]
    pending = [job("a-next", at=1), job("b-next", tenant="b", at=2)]
    decisions = decide(snap(pending, running, cluster=nodes(3)))
    assert admitted(decisions) == ["b-next"]


# -- quotas -----------------------------------------------------------------------------
def test_nominal_quota_is_enforced_without_blocking_other_tenants() -> None:
    tenants = {"a": Tenant("a", nominal=(1, None, None), borrowing_limit=(0, None, None)),
               "b": Tenant("b", nominal=(3, None, None))}  # fmt: skip
    pending = [job("a0"), job("a1", at=1), job("b0", tenant="b", at=2)]
    decisions = decide(snap(pending, tenants=tenants))
    assert admitted(decisions) == ["a0", "b0"]
    wait = decisions.waiting["a1"]
    assert wait.code is WaitCode.QUOTA and "borrowing limit 0" in wait.message


def test_idle_quota_is_borrowed_up_to_the_limit() -> None:
    tenants = {"a": Tenant("a", nominal=(1, None, None), borrowing_limit=(2, None, None)),
               "b": Tenant("b", nominal=(3, None, None))}  # fmt: skip
    pending = [job(f"a{i}", at=i) for i in range(4)]
    decisions = decide(snap(pending, tenants=tenants))
    assert admitted(decisions) == ["a0", "a1", "a2"]  # nominal 1 + borrowed 2
    assert decisions.waiting["a3"].code is WaitCode.QUOTA


def test_borrowing_stops_where_the_other_tenants_use_their_quota() -> None:
    tenants = {"a": Tenant("a", nominal=(2, None, None)), "b": Tenant("b", nominal=(2, None, None))}
    running = [run("b-running", "n0", 1, tenant="b")]
    pending = [job(f"a{i}", at=i) for i in range(4)]
    decisions = decide(snap(pending, running, cluster=nodes(8), tenants=tenants))
    assert admitted(decisions) == ["a0", "a1", "a2"]  # 2 own + b's 1 idle
    assert "only 0 idle to lend" in decisions.waiting["a3"].message


def test_a_lender_reclaims_borrowed_capacity_by_preemption() -> None:
    tenants = {"a": Tenant("a", nominal=(2, None, None)), "b": Tenant("b", nominal=(2, None, None))}
    running = [run("a-own", "n0", 2), run("a-borrowed", "n0", 2, started_at=NOW - 60)]
    pending = [job("b-needs", tenant="b", workers=2)]
    decisions = decide(snap(pending, running, tenants=tenants))
    assert [(p.job_id, p.for_job) for p in decisions.preempt] == [("a-borrowed", "b-needs")]
    assert "reclaimed" in decisions.preempt[0].reason
    assert decisions.waiting["b-needs"].code is WaitCode.PREEMPTING


# -- gang placement and backfill -------------------------------------------------------
def test_free_capacity_spread_over_nodes_does_not_hold_a_wide_worker() -> None:
    # 4 free CPUs in total, 1 per node: a worker needing 2 fits nowhere.
    running = [run(f"r{i}", f"n{i}", 3) for i in range(4)]
    pending = [job("wide", shape=Shape(cpu=2))]
    decisions = decide(snap(pending, running, cluster=nodes(4, 4, 4, 4),
                            config=PolicyConfig(preemption=False)))  # fmt: skip
    assert admitted(decisions) == []
    assert decisions.waiting["wide"].code is WaitCode.CAPACITY


def test_strategies_place_whole_gangs() -> None:
    cluster = nodes(4, 4, 2)
    cases = {
        Strategy.PACK: {"n0": 4},
        Strategy.STRICT_PACK: {"n0": 4},
        Strategy.SPREAD: {"n0": 2, "n1": 1, "n2": 1},
        Strategy.STRICT_SPREAD: {"n2": 1, "n0": 1, "n1": 1},
    }
    for strategy, expected in cases.items():
        workers = 3 if strategy is Strategy.STRICT_SPREAD else 4
        decisions = decide(snap([job("g", workers=workers, strategy=strategy)], cluster=cluster))
        assert decisions.admit[0].placement == expected, strategy
    too_wide = job("w", workers=4, strategy=Strategy.STRICT_SPREAD)
    decisions = decide(snap([too_wide], cluster=cluster))
    assert decisions.waiting["w"].code is WaitCode.NO_NODE_FITS
    assert decide(
        snap([job("p", workers=5, strategy=Strategy.STRICT_PACK)], cluster=cluster)
    ).waiting


def test_small_jobs_backfill_only_around_the_reservation_of_a_blocked_large_job() -> None:
    # n0 has 1 free, n1 has 2 free. The big job (4) reserves n1, the emptiest node;
    # a 1-CPU job may still use n0's free CPU but not n1's.
    running = [run("r0", "n0", 3), run("r1", "n1", 2)]
    pending = [job("big", workers=4, at=0), job("s1", at=1), job("s2", at=2)]
    config = PolicyConfig(aging_s=0, preemption=False)
    decisions = decide(snap(pending, running, cluster=nodes(4, 4), config=config))
    assert admitted(decisions) == ["s1"]
    assert decisions.admit[0].placement == {"n0": 1}
    wait = decisions.waiting["s2"]
    assert wait.code is WaitCode.RESERVED and wait.blocker == "big"


def test_without_reservations_small_jobs_take_everything() -> None:
    running = [run("r0", "n0", 3), run("r1", "n1", 2)]
    pending = [job("big", workers=4, at=0), job("s1", at=1), job("s2", at=2), job("s3", at=3)]
    config = PolicyConfig(aging_s=0, preemption=False, reservations=0)
    decisions = decide(snap(pending, running, cluster=nodes(4, 4), config=config))
    assert admitted(decisions) == ["s1", "s2", "s3"]


def test_a_job_larger_than_the_cluster_blocks_nobody() -> None:
    pending = [job("huge", workers=9, priority=3), job("small", at=1)]
    decisions = decide(snap(pending, cluster=nodes(4, 4)))
    assert admitted(decisions) == ["small"]
    assert decisions.waiting["huge"].code is WaitCode.NO_NODE_FITS


def test_cluster_unknown_admits_nothing_and_says_so() -> None:
    decisions = decide(Snapshot(NOW, None, [], [job("x")]))
    assert decisions.admit == [] and decisions.waiting["x"].code is WaitCode.CLUSTER_UNKNOWN


# -- preemption -------------------------------------------------------------------------
def test_higher_priority_preempts_the_cheapest_sufficient_set() -> None:
    running = [
        run("big-low", "n0", 4, shape=GPU1, priority=0),
        run("small-low", "n1", 1, shape=GPU1, priority=0),
        run("normal", "n1", 3, shape=GPU1),
    ]
    pending = [job("urgent", priority=3, shape=GPU1)]
    cluster = nodes(8, 8, gpu=4)
    decisions = decide(snap(pending, running, cluster=cluster))
    # One GPU frees with small-low alone; the four-GPU job and the equal-priority job stay.
    assert [p.job_id for p in decisions.preempt] == ["small-low"]
    assert decisions.waiting["urgent"].blocker == "small-low"


def test_the_most_recent_checkpoint_loses_least() -> None:
    running = [
        run("stale", "n0", 1, priority=0, last_checkpoint_at=NOW - 3000),
        run("fresh", "n0", 1, priority=0, last_checkpoint_at=NOW - 10),
    ]
    decisions = decide(snap([job("hi", priority=2)], running, cluster=nodes(2)))
    assert [p.job_id for p in decisions.preempt] == ["fresh"]


def test_equal_priority_never_preempts_without_a_service_difference() -> None:
    running = [run("r", "n0", 4)]
    decisions = decide(snap([job("p", workers=4)], running))
    assert decisions.preempt == [] and decisions.admit == []


def test_time_sharing_preempts_a_job_with_much_more_service_after_min_run() -> None:
    config = PolicyConfig(aging_s=0, service_levels_gpu_s=(3600.0,), min_run_s=300)
    long = run("long", "n0", 4, shape=GPU1, started_at=NOW - 7200)  # 8 GPU-h: level 1
    fresh = run("fresh", "n0", 4, shape=GPU1, started_at=NOW - 100)
    waiting = job("new", shape=GPU1, workers=4)
    cluster = nodes(8, gpu=4)
    decisions = decide(snap([waiting], [long], cluster=cluster, config=config))
    assert [p.job_id for p in decisions.preempt] == ["long"]
    assert "time-shared" in decisions.preempt[0].reason
    # A job that has not yet run min_run_s is left alone, however much service it had.
    fresh.attained_gpu_s = 99_999
    assert decide(snap([waiting], [fresh], cluster=cluster, config=config)).preempt == []


def test_elastic_jobs_shrink_before_any_rigid_job_is_preempted() -> None:
    elastic = run("elastic", "n0", 3, size=(1, 3), priority=1)
    rigid_low = run("rigid-low", "n0", 1, priority=0)
    decisions = decide(snap([job("hi", priority=2, workers=2)], [elastic, rigid_low]))
    assert decisions.preempt == []
    [resize] = decisions.resize
    assert (resize.job_id, resize.workers, resize.for_job) == ("elastic", 1, "hi")


def test_stopping_victims_hold_their_room_for_the_job_they_stop_for() -> None:
    victim = run("victim", "n0", 4, priority=0, stopping_for="hi")
    pending = [job("hi", priority=2, workers=4), job("other", priority=1, at=1)]
    decisions = decide(snap(pending, [victim]))
    assert decisions.preempt == [] and decisions.admit == []
    assert decisions.waiting["hi"].code is WaitCode.PREEMPTING


def test_instant_preemption_admits_in_the_same_pass() -> None:
    config = PolicyConfig(aging_s=0, instant_preemption=True)
    decisions = decide(snap([job("hi", priority=2, workers=4)], [run("lo", "n0", 4, priority=0)],
                            config=config))  # fmt: skip
    assert [p.job_id for p in decisions.preempt] == ["lo"] and admitted(decisions) == ["hi"]


def test_a_quota_blocked_job_may_only_preempt_its_own_tenants_lower_priority_jobs() -> None:
    tenants = {"a": Tenant("a", nominal=(2, None, None), borrowing_limit=(0, None, None))}
    running = [run("a-low", "n0", 2, priority=0), run("b-low", "n0", 2, tenant="b", priority=0)]
    decisions = decide(snap([job("a-high", priority=2, workers=2)], running, tenants=tenants))
    assert [p.job_id for p in decisions.preempt] == ["a-low"]


# -- elastic ----------------------------------------------------------------------------
def test_an_elastic_job_starts_at_min_while_others_wait() -> None:
    pending = [job("elastic", workers=(1, 4)), job("big", workers=4, at=1)]
    decisions = decide(snap(pending, [run("r", "n0", 2)], config=PolicyConfig(preemption=False)))
    assert [(a.job_id, a.workers) for a in decisions.admit] == [("elastic", 1)]


def test_an_elastic_job_takes_what_is_idle_up_to_max() -> None:
    decisions = decide(snap([job("elastic", workers=(1, 8))], [run("r", "n0", 1)]))
    assert [(a.job_id, a.workers) for a in decisions.admit] == [("elastic", 3)]


def test_a_running_elastic_job_grows_on_idle_capacity_after_the_resize_gap() -> None:
    config = PolicyConfig(aging_s=0, resize_gap_s=300)
    grown = run("e", "n0", 1, size=(1, 3), started_at=NOW - 600)
    [resize] = decide(snap([], [grown], config=config)).resize
    assert (resize.job_id, resize.workers) == ("e", 3)
    recent = run("e", "n0", 1, size=(1, 3), started_at=NOW - 60)
    assert decide(snap([], [recent], config=config)).resize == []


# -- autoscaling ------------------------------------------------------------------------
def test_pending_demand_the_cluster_can_grow_to_becomes_a_resource_request() -> None:
    types = [NodeType("gpu", cpu=8, gpu=4, memory_gb=64, max_count=3)]
    cluster = nodes(8, gpu=4)
    running = [run("r", "n0", 4, shape=GPU1)]
    pending = [job("next", shape=GPU1, workers=8, at=1), job("never", shape=GPU1, workers=13)]
    decisions = decide(snap(pending, running, cluster=cluster, node_types=types))
    assert decisions.waiting["next"].code is WaitCode.SCALE_UP
    assert decisions.waiting["never"].code is WaitCode.NO_NODE_FITS
    assert decisions.scale_request == [{"cpu": 1.0, "gpu": 1.0}] * 12
    # The queue drained: the request shrinks to what runs, so idle nodes can go.
    assert (
        decide(snap([], running, cluster=cluster, node_types=types)).scale_request
        == [{"cpu": 1.0, "gpu": 1.0}] * 4
    )


def test_every_job_waiting_for_scale_up_counts_toward_the_request() -> None:
    # Without preemption the pass settles after the first blocked job, and the rest of
    # the queue is explained from remembered reasons: their workers must still count.
    types = [NodeType("gpu", cpu=8, gpu=4, memory_gb=64, max_count=4)]
    running = [run("r", "n0", 4, shape=GPU1)]
    pending = [job(f"p{i}", shape=GPU1, at=i) for i in range(10)]
    config = PolicyConfig(aging_s=0, preemption=False)
    decisions = decide(snap(pending, running, nodes(8, gpu=4), node_types=types, config=config))
    assert {w.code for w in decisions.waiting.values()} == {WaitCode.SCALE_UP}
    assert decisions.scale_request == [{"cpu": 1.0, "gpu": 1.0}] * 14  # 4 running + 10 waiting


def test_the_order_jobs_arrive_in_does_not_change_the_decision() -> None:
    # The control plane reads pending jobs in submission order (and the pass then skips
    # sorting); the simulator does not. Both must come to the same decision.
    tenants = {t: Tenant(t, nominal=(None, 2.0, None)) for t in "abc"}
    pending = [
        job(f"{t}{i}", tenant=t, priority=i % 3, shape=GPU1, workers=1 + i % 2, at=(i * 7) % 5)
        for t in "abc"
        for i in range(6)
    ]
    ordered = sorted(pending, key=lambda j: (j.submitted_at, j.id))
    shuffled = ordered[::-1]
    cluster = nodes(8, 8, gpu=4)
    first = decide(snap(ordered, cluster=cluster, tenants=tenants))
    assert first.admit and first.waiting
    assert decide(snap(shuffled, cluster=cluster, tenants=tenants)) == first


def test_the_decision_is_pure() -> None:
    running = [run("lo", "n0", 4, priority=0)]
    pending = [job("hi", priority=2, workers=4)]
    before = (replace(running[0]), replace(pending[0]))
    first = decide(snap(pending, running))
    assert (running[0], pending[0]) == before
    assert decide(snap(pending, running)) == first


def test_a_job_within_its_quota_goes_before_one_that_would_borrow() -> None:
    tenants = {"a": Tenant("a", nominal=(2, None, None)), "b": Tenant("b", nominal=(2, None, None))}
    pending = [job("a-borrows", workers=3, at=0), job("b-within", tenant="b", workers=2, at=1)]
    decisions = decide(snap(pending, tenants=tenants))
    assert admitted(decisions) == ["b-within"]
    assert decisions.waiting["a-borrows"].code is WaitCode.QUOTA


def test_a_requeued_victim_sits_out_while_the_job_it_made_room_for_waits() -> None:
    victim = job("victim", at=0, yields_to="lender")
    lender = job("lender", tenant="b", at=5, workers=4)
    decisions = decide(snap([victim, lender], cluster=nodes(4)))
    assert admitted(decisions) == ["lender"]
    wait = decisions.waiting["victim"]
    assert wait.code is WaitCode.RESERVED and wait.blocker == "lender"
    # Once the lender is no longer pending, the victim queues like any other job.
    assert admitted(decide(snap([victim], cluster=nodes(4)))) == ["victim"]
