"""One scheduling pass at datacenter scale: 10,000 pending jobs on 1,000 nodes.

The live policy configuration (explanations on, preemption on, one reservation) over a
cluster of 1,000 nodes x 8 GPUs, ~90% busy with ~2,600 running jobs of 24 tenants (with
quotas, some borrowing), and 10,000 pending jobs of mixed priority and shape: 1-8 GPU
workers, multi-node gangs, CPU-only and elastic jobs. Each trial builds the snapshot's
job objects afresh (as the control plane does from its database, which returns pending
jobs in submission order) and times ``decide``.

    python benchmarks/scheduler_pass.py [--trials 15] [--pending 10000] [--nodes 1000]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import time

from raydc.scheduler.model import Job, Node, PolicyConfig, Shape, Snapshot, Strategy, Tenant
from raydc.scheduler.policy import decide

GPUS_PER_NODE, CPUS_PER_NODE, MEMORY_PER_NODE = 8, 64, 512
SHAPES = [  # (worker shape, workers, weight)
    (Shape(cpu=8, gpu=1, memory_gb=64), 1, 40),
    (Shape(cpu=8, gpu=1, memory_gb=64), 2, 15),
    (Shape(cpu=8, gpu=1, memory_gb=64), 4, 10),
    (Shape(cpu=16, gpu=2, memory_gb=128), 4, 10),  # 2 nodes' worth: a multi-node gang
    (Shape(cpu=8, gpu=1, memory_gb=64), 8, 8),
    (Shape(cpu=32, gpu=4, memory_gb=256), 8, 2),  # 4 nodes
    (Shape(cpu=4, gpu=0, memory_gb=16), 1, 10),  # CPU-only preprocessing
]


def build(pending_count: int, node_count: int, seed: int = 7) -> Snapshot:
    rng = random.Random(seed)
    now = 1_000_000.0
    nodes = [Node(f"node-{i:04d}", CPUS_PER_NODE, GPUS_PER_NODE, MEMORY_PER_NODE)
             for i in range(node_count)]  # fmt: skip
    tenants = {}
    for t in range(24):
        share = node_count * GPUS_PER_NODE / 24
        tenants[f"team-{t}"] = Tenant(f"team-{t}", nominal=(None, share, None),
                                      borrowing_limit=(None, share, None),
                                      weight=1.0 + (t % 3))  # fmt: skip
    weights = [w for _, _, w in SHAPES]

    def make(i: int, at: float) -> Job:
        shape, workers, _ = rng.choices(SHAPES, weights)[0]
        elastic = rng.random() < 0.1
        return Job(
            id=f"job-{i:06d}", tenant=f"team-{rng.randrange(24)}",
            priority=rng.choices([0, 1, 2, 3], [20, 60, 15, 5])[0], submitted_at=at,
            shape=shape, min_workers=workers, max_workers=workers * (2 if elastic else 1),
            strategy=rng.choice([Strategy.PACK, Strategy.PACK, Strategy.SPREAD]),
            queued_at=at, attained_gpu_s=rng.choice([0.0, 0.0, 5000.0, 50_000.0]),
        )  # fmt: skip

    # Fill ~90% of the GPUs with running jobs placed first-fit, node by node.
    free = [GPUS_PER_NODE] * node_count
    running: list[Job] = []
    target = 0.9 * node_count * GPUS_PER_NODE
    used, i, cursor = 0.0, 0, 0
    while used < target and cursor < node_count:
        job = make(i, now - rng.uniform(600, 86_400))
        i += 1
        per_node = max(1, int(GPUS_PER_NODE // max(job.shape.gpu, 1)))
        placement: dict[str, int] = {}
        left = job.min_workers
        while left and cursor < node_count:
            fits = min(left, int(free[cursor] // max(job.shape.gpu, 1)), per_node)
            if fits <= 0:
                cursor += 1
                continue
            placement[nodes[cursor].id] = placement.get(nodes[cursor].id, 0) + fits
            free[cursor] -= fits * max(job.shape.gpu, 1)
            left -= fits
        if left:
            break
        job.workers, job.placement = job.min_workers, placement
        job.started_at = job.last_checkpoint_at = now - rng.uniform(60, 20_000)
        running.append(job)
        used += job.shape.gpu * job.workers
    pending = [make(i + k, now - rng.uniform(0, 7200)) for k in range(pending_count)]
    pending.sort(key=lambda job: (job.submitted_at, job.id))  # as the database returns them
    return Snapshot(now, nodes, running, pending, tenants, PolicyConfig())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=15)
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--nodes", type=int, default=1_000)
    args = parser.parse_args()
    times = []
    decisions = None
    for trial in range(args.trials):
        snapshot = build(args.pending, args.nodes, seed=trial)
        # The control plane freezes its long-lived objects (server/app.py); do the same
        # so a pass is not charged for collecting the previous trial's garbage.
        gc.collect()
        gc.freeze()
        started = time.perf_counter()
        decisions = decide(snapshot)
        times.append(time.perf_counter() - started)
        gc.unfreeze()
    assert decisions is not None
    codes: dict[str, int] = {}
    for wait in decisions.waiting.values():
        codes[wait.code.value] = codes.get(wait.code.value, 0) + 1
    print(json.dumps({
        "benchmark": "scheduler_pass",
        "pending": args.pending, "nodes": args.nodes, "running": len(snapshot.running),
        "trials": args.trials,
        "median_ms": round(statistics.median(times) * 1000, 1),
        "p90_ms": round(sorted(times)[int(0.9 * (len(times) - 1))] * 1000, 1),
        "max_ms": round(max(times) * 1000, 1),
        "last_pass": {"admitted": len(decisions.admit), "preempted": len(decisions.preempt),
                      "resized": len(decisions.resize), "waiting": codes},
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
