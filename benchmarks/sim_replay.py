"""Full Philly replay (82,247 jobs) on 64 nodes x 8 GPUs through each simulator policy.

Prints one JSON list: the `raydc sim --json` objects, one per policy. Target (issue #3):
each policy <= 60 s of wall time on this machine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from raydc.scheduler.cluster_model import GpuCluster
from raydc.scheduler.sim_policies import POLICIES
from raydc.scheduler.simulator import simulate
from raydc.scheduler.traces import load_trace

PHILLY = Path(__file__).resolve().parents[2] / "shared" / "traces" / "philly.csv"


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else PHILLY
    trace = load_trace(path)
    if trace.errors:
        raise SystemExit("\n".join(trace.errors[:20]))
    results = [
        simulate(trace.jobs, GpuCluster(64, 8), make_policy())[0].as_dict()
        for make_policy in POLICIES.values()
    ]
    print(json.dumps(results))


if __name__ == "__main__":
    main()
