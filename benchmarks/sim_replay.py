"""Full Philly replay (82,247 jobs) on 64 nodes x 8 GPUs through each simulator policy.

Prints one JSON object: `results`, the `raydc sim --json` objects, one per policy, and
`raydc_vs`: raydc's average JCT over FIFO's and LAS's, and its tenant slowdown ratio over
FIFO's. Targets (issue #3): each policy <= 60 s of wall time on this machine; raydc's
average JCT <= 0.6x FIFO and <= 1.2x LAS, tenant slowdown ratio no worse than FIFO's.

    python benchmarks/sim_replay.py [TRACE] [--policy NAME ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from raydc.scheduler.cluster_model import GpuCluster
from raydc.scheduler.replay import POLICY_NAMES, make_policy
from raydc.scheduler.simulator import simulate
from raydc.scheduler.traces import load_trace

PHILLY = Path(__file__).resolve().parents[2] / "shared" / "traces" / "philly.csv"


def main() -> None:
    args = sys.argv[1:]
    names = [args[i + 1] for i, a in enumerate(args) if a == "--policy"] or list(POLICY_NAMES)
    paths = [
        a for i, a in enumerate(args) if a != "--policy" and (i == 0 or args[i - 1] != "--policy")
    ]
    path = Path(paths[0]) if paths else PHILLY
    trace = load_trace(path)
    if trace.errors:
        raise SystemExit("\n".join(trace.errors[:20]))
    jobs = [job for job in trace.jobs if job.gpus <= 64 * 8]
    results = {}
    for name in names:
        policy = make_policy(name, jobs, 64, 8)
        results[name] = simulate(jobs, GpuCluster(64, 8), policy)[0].as_dict()
    report: dict[str, object] = {
        "trace": str(path),
        "jobs": len(jobs),
        "results": list(results.values()),
    }
    if {"raydc", "fifo", "las"} <= results.keys():
        raydc, fifo, las = results["raydc"], results["fifo"], results["las"]
        report["raydc_vs"] = {
            "avg_jct_over_fifo": round(raydc["avg_jct_s"] / fifo["avg_jct_s"], 3),
            "avg_jct_over_las": round(raydc["avg_jct_s"] / las["avg_jct_s"], 3),
            "tenant_slowdown_over_fifo": round(
                raydc["tenant_slowdown_ratio"] / fifo["tenant_slowdown_ratio"], 3
            ),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
