"""Compression of the intent model, through ``kind: compress`` jobs (issue #5).

A local Ray head and a `raydc server` process pointed at it; the intent app trained
from its train.yaml (``--epochs``); then five compress jobs, one after another, each
on one worker of 1 CPU (so parent and child are timed on one thread, in alternating
rounds, in the job's own measurement task):

(a) dynamic int8 with activation smoothing, the steps and gate of
    apps/intent/compress.yaml; (a0) plain dynamic int8, no smoothing (recorded for
    comparison, not judged);
(b) 50% global unstructured magnitude pruning with ``--prune-finetune`` epochs of
    fine-tuning;
(c) distillation into a student of ``--student-layers`` layers (1; SVD-factorized
    embeddings of rank ``--embedding-rank``, 96) for ``--distill-epochs`` epochs (8);
(d) structured pruning of half the attention heads of every layer, with the same
    fine-tune as (b) (no target in the issue: its figures are recorded, not judged).

Each job's report gives parent and child: parameters, serialized bytes, CPU latency
p50 at batch 1 and 32, held-out accuracy. Targets: int8 >= 2.5x smaller, >= 1.5x lower
batch-1 latency, <= 1 point accuracy drop; pruning <= 1 point drop; the student >= 4x
fewer parameters, <= 3 points drop, >= 3x lower batch-1 latency. Prints JSON.
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


def compress(bench: ServingBench, parent: str, name: str, steps: list[dict[str, Any]],
             gate: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    spec = yaml.safe_load((APPS_DIR / "intent" / "compress.yaml").read_text())
    spec.update(name=name, model=parent, steps=steps, gate=gate, max_retries=0)
    started = time.perf_counter()
    job = bench.member.submit_job(spec)
    done = bench.member.wait(job["id"], timeout_s=3600, poll_s=2.0)
    if done["status"] != "SUCCEEDED":
        raise RuntimeError(f"{name} ended {done['status']}: {done['error']}")
    report = done["result"]["report"]
    keys = ("params", "size_bytes", "sparsity", "latency_ms_b1_p50", "latency_ms_b1_p95",
            "latency_ms_b32_p50", "metric")  # fmt: skip
    return {
        "model": done["result"]["model"],
        "steps": steps,
        "parent": {k: report["parent"][k] for k in keys},
        "child": {k: report["child"][k] for k in keys},
        "ratios": report["ratios"],
        "accuracy_drop_points": report["metric_drop_points"],
        "accepted": report["accepted"],
        "rejected_reason": report["rejected_reason"],
        "wall_s": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5, help="training the parent")
    parser.add_argument("--prune-finetune", type=int, default=1)
    parser.add_argument("--student-layers", type=int, default=1)
    parser.add_argument("--embedding-rank", type=int, default=96)
    parser.add_argument("--distill-epochs", type=int, default=8)
    args = parser.parse_args()
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch, ServingBench(Path(scratch)) as bench:
        parent = bench.train("intent", {"epochs": args.epochs}, timeout_s=900)
        shipped = yaml.safe_load((APPS_DIR / "intent" / "compress.yaml").read_text())
        int8 = compress(bench, parent["model"], "intent-int8", shipped["steps"], shipped["gate"])
        int8_plain = compress(bench, parent["model"], "intent-int8-plain",
                              [{"type": "quantize", "method": "dynamic"}],
                              {"max_accuracy_drop": 1.0, "min_speedup": 1.5})  # fmt: skip
        pruned = compress(bench, parent["model"], "intent-pruned", [
            {"type": "prune", "method": "unstructured", "sparsity": 0.5,
             "finetune_epochs": args.prune_finetune, "lr": 5e-5},
        ], {"max_accuracy_drop": 1.0})  # fmt: skip
        student = compress(bench, parent["model"], "intent-student", [
            {"type": "distill",
             "student": {"layers": args.student_layers, "embedding_rank": args.embedding_rank},
             "epochs": args.distill_epochs, "lr": 5e-4},
        ], {"max_accuracy_drop": 3.0, "min_speedup": 3.0})  # fmt: skip
        heads = compress(bench, parent["model"], "intent-heads", [
            {"type": "prune", "method": "structured", "target": "heads", "sparsity": 0.5,
             "finetune_epochs": args.prune_finetune, "lr": 5e-5},
        ], {"max_accuracy_drop": 1.0})  # fmt: skip
    met = {
        "int8_size": int8["ratios"]["size"] >= 2.5,
        "int8_latency_b1": int8["ratios"]["latency_b1"] >= 1.5,
        "int8_accuracy": int8["accuracy_drop_points"] <= 1.0,
        "pruned_sparsity": abs(pruned["child"]["sparsity"] - 0.5) < 1e-3,
        "pruned_accuracy": pruned["accuracy_drop_points"] <= 1.0,
        "student_params": student["ratios"]["params"] >= 4.0,
        "student_accuracy": student["accuracy_drop_points"] <= 3.0,
        "student_latency_b1": student["ratios"]["latency_b1"] >= 3.0,
    }
    dump({
        "benchmark": "compress_intent",
        "parent": parent,
        "int8": int8,
        "int8_plain": int8_plain,
        "pruned": pruned,
        "student": student,
        "heads": heads,
        "met": met,
        "loadavg_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "wall_s": round(time.perf_counter() - started, 1),
    })  # fmt: skip


if __name__ == "__main__":
    main()
