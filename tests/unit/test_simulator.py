"""The trace simulator and its baseline policies on hand-checked scenarios."""

import json
from pathlib import Path

from typer.testing import CliRunner

from raydc.cli import app
from raydc.scheduler.cluster_model import GpuCluster
from raydc.scheduler.sim_policies import FifoPolicy, LasPolicy, SjfPolicy
from raydc.scheduler.simulator import simulate
from raydc.scheduler.traces import TraceJob

RESULT_KEYS = {
    "policy", "jobs", "avg_jct_s", "median_jct_s", "p99_jct_s", "avg_wait_s", "makespan_s",
    "gpu_utilization", "tenant_slowdown_ratio", "preemptions", "wall_s",
}  # fmt: skip


def trace(*rows: tuple[float, float, int, str]) -> list[TraceJob]:
    return [TraceJob(i, at, duration, gpus, tenant=tenant)
            for i, (at, duration, gpus, tenant) in enumerate(rows)]  # fmt: skip


def finish_times(jobs: list) -> list[float]:
    return [job.finished_at for job in jobs]


def test_placement_is_best_fit_and_gang() -> None:
    cluster = GpuCluster(nodes=2, gpus_per_node=4)
    first = cluster.place(3)
    second = cluster.place(1)
    assert first is not None and second is not None
    assert first[0][0] == second[0][0]  # the 1-GPU job fills the partly used node
    assert cluster.place(4) == [(1 - first[0][0], 4)]
    assert not cluster.can_place(1) and cluster.place(1) is None
    cluster.release(first)
    assert cluster.free_gpus == 3 and not cluster.can_place(4) and cluster.can_place(3)


def test_a_job_wider_than_a_node_takes_several() -> None:
    cluster = GpuCluster(nodes=3, gpus_per_node=4)
    placement = cluster.place(8)
    assert placement is not None and sorted(g for _, g in placement) == [4, 4]
    assert cluster.free_gpus == 4


def test_fifo_blocks_behind_the_head_and_reports_the_metrics() -> None:
    jobs = trace((0, 100, 2, "a"), (10, 50, 2, "b"), (20, 10, 1, "c"))
    result, done = simulate(jobs, GpuCluster(1, 2), FifoPolicy())
    # c (1 GPU) waits behind b even though nothing else could use the GPU: strict FIFO.
    assert finish_times(done) == [100, 150, 160]
    assert result.avg_jct_s == round((100 + 140 + 140) / 3, 1)
    assert result.makespan_s == 160
    assert result.gpu_utilization == round((200 + 100 + 10) / (2 * 160), 4)
    assert result.tenant_slowdown_ratio == 14.0  # c: 140/10 over a: 100/100


def test_sjf_runs_the_shortest_job_that_fits() -> None:
    jobs = trace((0, 100, 2, "a"), (10, 50, 1, "b"), (10, 20, 2, "c"), (10, 5, 1, "d"))
    _, done = simulate(jobs, GpuCluster(1, 2), SjfPolicy())
    # At 100: d (5 s) first, then b (50 s) on the other GPU; c needs both and waits.
    assert finish_times(done) == [100, 150, 170, 105]


def test_las_preempts_a_long_job_for_a_new_short_one_and_resumes_it() -> None:
    jobs = trace((0, 100, 1, "a"), (20, 5, 1, "b"))
    result, done = simulate(jobs, GpuCluster(1, 1), LasPolicy(thresholds_gpu_s=(10.0,)))
    assert finish_times(done) == [105, 25]
    assert result.preemptions == 1
    assert done[0].attained_gpu_s == 100


def test_las_does_not_preempt_within_the_first_queue() -> None:
    jobs = trace((0, 100, 1, "a"), (5, 5, 1, "b"))
    _, done = simulate(jobs, GpuCluster(1, 1), LasPolicy(thresholds_gpu_s=(1000.0,)))
    assert finish_times(done) == [100, 105]


def test_the_sim_command(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    path.write_text("submit_time,duration,gpus,tenant\n0,100,2,a\n10,50,1,b\n20,-5,1,b\n")
    runner = CliRunner()
    refused = runner.invoke(app, ["sim", "--trace", str(path), "--nodes", "1",
                                  "--gpus-per-node", "2"])  # fmt: skip
    assert refused.exit_code == 2
    assert "line 4: 'duration' is negative: -5" in refused.output
    out = tmp_path / "out.json"
    ok = runner.invoke(app, ["sim", "--trace", str(path), "--nodes", "1", "--gpus-per-node",
                             "2", "--skip-bad-rows", "--json", str(out)])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    results = json.loads(out.read_text())
    assert [r["policy"] for r in results] == ["fifo", "sjf", "las", "raydc"]
    assert all(set(r) == RESULT_KEYS for r in results)
    assert results[0]["jobs"] == 2 and results[0]["avg_jct_s"] == 120.0


def test_the_raydc_policy_replays_through_the_live_decide() -> None:
    from raydc.scheduler.sim_raydc import RaydcPolicy, proportional_quotas

    # A long job holds the only node; short jobs arrive behind it. FIFO makes them wait
    # the whole 20 h; raydc's time sharing preempts the long job once it has had more
    # than 10 GPU-hours, runs the short ones, and resumes it where it stopped.
    jobs = trace((0, 72_000, 2, "a"), (50_000, 600, 2, "b"), (50_010, 600, 1, "b"))
    fifo, _ = simulate(jobs, GpuCluster(1, 2), FifoPolicy())
    policy = RaydcPolicy(1, 2, interval_s=30)
    result, done = simulate(jobs, GpuCluster(1, 2), policy)
    assert set(RESULT_KEYS) == set(result.as_dict())
    assert result.preemptions >= 1 and result.jobs == 3
    long, short, shorter = done
    assert short.finished_at < 52_000 and shorter.finished_at < 52_000  # type: ignore[operator]
    assert long.preemptions >= 1 and long.remaining_s == 0
    assert long.attained_gpu_s == 144_000  # resumed where it stopped: no work lost or redone
    assert result.avg_jct_s < fifo.avg_jct_s
    # With quotas by GPU-time, tenant b is entitled to almost nothing: its jobs are over
    # its quota, so they may not take the node from a; they wait for a to finish.
    quotas = proportional_quotas(jobs, 2)
    fair, _ = simulate(jobs, GpuCluster(1, 2), RaydcPolicy(1, 2, tenants=quotas, interval_s=30))
    assert fair.preemptions == 0


def test_the_raydc_policy_counts_cpus_when_nodes_have_a_cpu_limit() -> None:
    from raydc.scheduler.sim_raydc import RaydcPolicy

    # Two 1-GPU jobs fit the node's GPUs together, but not its 4 CPUs (3 each).
    jobs = [TraceJob(0, 0, 100, 1, cpus=3), TraceJob(1, 0, 100, 1, cpus=3)]
    _, unlimited = simulate(jobs, GpuCluster(1, 2), RaydcPolicy(1, 2, interval_s=1))
    assert finish_times(unlimited) == [100, 100]
    _, limited = simulate(jobs, GpuCluster(1, 2), RaydcPolicy(1, 2, 4, interval_s=1))
    assert sorted(finish_times(limited)) == [100, 200]


def test_the_sim_command_takes_a_cpu_limit_for_the_raydc_policy(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    path.write_text("submit_time,duration,gpus,cpus\n0,100,1,3\n0,100,1,3\n")
    out = tmp_path / "out.json"
    result = CliRunner().invoke(app, ["sim", "--trace", str(path), "--nodes", "1",
                                      "--gpus-per-node", "2", "--cpus-per-node", "4",
                                      "--policy", "raydc", "--json", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    [row] = json.loads(out.read_text())
    assert row["policy"] == "raydc" and row["makespan_s"] >= 200
