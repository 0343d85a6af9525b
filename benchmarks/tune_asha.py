"""ASHA against the same search without early stopping, on the intent app.

A local Ray head and a `raydc server` process pointed at it; a tenant and its member
token. The same search is submitted twice through ``POST /v1/jobs`` as a ``kind: tune``
job of ``--epochs`` epochs per trial, 2 trials at a time of 1 worker each:

(a) ``scheduler: fifo``: every trial runs all its epochs;
(b) ``scheduler: asha`` (grace period 1, reduction factor 3): a trial in the bottom third
    at a rung (epoch 1, 3, 9, ...) stops there.

``--search random`` (the default): ``--samples`` configs drawn with ``seed`` 0 from the
app's tune.yaml space (lr log-uniform, head width, dropout), so both jobs train exactly
the same trials in the same order. ``--search grid``: a fixed grid, in Tune's order (the
learning rate rising, so the worst trials come first: ASHA's worst case).

Trial-iterations are the epochs every trial reported, summed over the job's trials (what
the job result shows); best accuracy is the registered best version's held-out accuracy.
Targets (issue #4): ASHA's best within 1 point of the full search's, with <= 50% of its
trial-iterations. Prints JSON.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from _serving import APPS_DIR, ServingBench, dump

# 24 trials: learning rates from too slow to too fast for a fresh head in 9 epochs.
GRID: dict[str, list[Any]] = {
    "lr": [0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03],
    "hidden_dim": [0, 256],
    "dropout": [0.0, 0.3],
}


def tune_spec(name: str, scheduler: dict[str, Any], search: str, samples: int,
              epochs: int) -> dict[str, Any]:  # fmt: skip
    base = yaml.safe_load((APPS_DIR / "intent" / "tune.yaml").read_text())
    if search == "grid":
        space = {key: {"grid": values} for key, values in GRID.items()}
        samples = 1
    else:
        space = base["search_space"]
    return {
        **{k: base[k] for k in ("kind", "code", "entrypoint", "metric", "mode")},
        "name": name,
        "config": {**base.get("config", {}), "epochs": epochs},
        "search_space": space,
        "scheduler": scheduler,
        "search": search,
        "seed": 0,
        "num_samples": samples,
        "max_concurrent_trials": 2,
        "resources": {"workers": 1, "cpus_per_worker": 1},
        "time_budget_s": 7200,
        "max_retries": 0,
    }


def run_search(bench: ServingBench, spec: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    job = bench.member.submit_job(spec)
    done = bench.member.wait(job["id"], timeout_s=7200, poll_s=2.0)
    wall_s = time.perf_counter() - started
    if done["status"] != "SUCCEEDED":
        raise RuntimeError(f"{spec['name']} ended {done['status']}: {done['error']}")
    result = done["result"]
    trials = result["trials"]
    best = result["best_trial"]
    return {
        "search_space": spec["search_space"],
        "trials": len(trials),
        "trial_iterations": sum(t["iterations"] for t in trials),
        "trials_to_max_t": sum(1 for t in trials if t["iterations"] == spec["config"]["epochs"]),
        "best_accuracy": round(result["metrics"]["accuracy"], 4),
        "best_epoch": result["metrics"].get("epoch"),
        "best_config": {k: best["config"][k] for k in spec["search_space"]},
        "iterations_per_trial": sorted(t["iterations"] for t in trials),
        "statuses": sorted({t["status"] for t in trials}),
        "wall_s": round(wall_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--search", default="random", choices=("random", "grid"))
    parser.add_argument("--samples", type=int, default=24, help="random search: trials")
    parser.add_argument("--epochs", type=int, default=9)
    args = parser.parse_args()
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    asha = {"type": "asha", "grace_period": 1, "reduction_factor": 3}
    with tempfile.TemporaryDirectory() as scratch, ServingBench(Path(scratch)) as bench:
        full = run_search(bench, tune_spec("intent-full", {"type": "fifo"}, args.search,
                                           args.samples, args.epochs))  # fmt: skip
        early = run_search(bench, tune_spec("intent-asha", asha, args.search, args.samples,
                                            args.epochs))  # fmt: skip
    share = early["trial_iterations"] / full["trial_iterations"]
    gap_points = (full["best_accuracy"] - early["best_accuracy"]) * 100
    dump({
        "benchmark": "tune_asha",
        "app": "intent",
        "search": args.search,
        "search_space": full.pop("search_space") and early.pop("search_space"),
        "epochs": args.epochs,
        "asha": asha,
        "full_search": full,
        "asha_search": early,
        "iterations_share": round(share, 3),
        "accuracy_gap_points": round(gap_points, 2),
        "met": {"iterations_share": share <= 0.5, "accuracy_gap": gap_points <= 1.0},
        "target": {"iterations_share": 0.5, "accuracy_gap_points": 1.0},
        "loadavg_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "wall_s": round(time.perf_counter() - started, 1),
    })  # fmt: skip


if __name__ == "__main__":
    main()
