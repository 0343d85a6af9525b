"""Measuring a model for a compression report, and the gate that accepts or rejects it.

Parent and child are measured the same way, in the same worker: parameters, serialized
size, sparsity, CPU latency at batch 1 and 32 (p50, p95), throughput, and the app's
held-out metric. They are timed in alternating rounds, so that a machine whose speed
drifts while it measures (another job on the node, the CPU's clock) slows both alike
instead of whichever was timed second.
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from raydc.specs.compression import Gate
from raydc.workloads.compress_ops import Compressible, Inputs, sparsity

BATCH_SIZES = (1, 32)
WARMUP_RUNS = 3
# Timed runs per model and batch size: enough for a p95, bounded in time (per model) for
# a large model.
MIN_RUNS, MAX_RUNS, TIME_BUDGET_S = 20, 200, 10.0
# Timed runs of one model in a round, after one untimed run that brings its weights back
# into the caches, where a replica serving only this model keeps them.
ROUND_RUNS = 5


def count_params(model: nn.Module) -> int:
    """Weights and biases, float or int8 (a quantized layer keeps its in packed form)."""
    total = 0
    for value in model.state_dict().values():
        for tensor in value if isinstance(value, tuple | list) else (value,):
            if isinstance(tensor, torch.Tensor) and tensor.dtype != torch.int64:
                total += tensor.numel()
    return total


def serialized_size(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: the weights as they are stored."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def time_models(models: Sequence[nn.Module], inputs: Inputs) -> list[list[float]]:
    """Milliseconds per forward pass of each model, timed in alternating rounds of
    :data:`ROUND_RUNS` runs (after a warm-up), as many rounds as the time budget allows."""
    samples: list[list[float]] = [[] for _ in models]
    with torch.inference_mode():
        for model in models:
            for _ in range(WARMUP_RUNS):
                model(*inputs)
        deadline = time.perf_counter() + TIME_BUDGET_S * len(models)
        while True:
            for model, own in zip(models, samples, strict=True):
                model(*inputs)
                for _ in range(ROUND_RUNS):
                    start = time.perf_counter()
                    model(*inputs)
                    own.append((time.perf_counter() - start) * 1000)
            runs = len(samples[0])
            if runs >= MAX_RUNS or (runs >= MIN_RUNS and time.perf_counter() >= deadline):
                return samples


def measure(app: Compressible, *models: nn.Module) -> list[dict[str, Any]]:
    """A report for each model (parent and child: timed together, see the module)."""
    reports = []
    for model in models:
        model.eval()
        reports.append({
            "params": count_params(model),
            "size_bytes": serialized_size(model),
            "sparsity": round(sparsity(model), 4),
        })  # fmt: skip
    for batch in BATCH_SIZES:
        timed = time_models(models, app.example_inputs(batch))
        for report, samples in zip(reports, timed, strict=True):
            p50 = statistics.median(samples)
            report[f"latency_ms_b{batch}_p50"] = round(p50, 3)
            report[f"latency_ms_b{batch}_p95"] = round(_percentile(samples, 0.95), 3)
            report[f"throughput_b{batch}_per_s"] = round(batch * 1000 / p50, 1)
    with torch.inference_mode():
        for report, model in zip(reports, models, strict=True):
            report["metric"] = float(app.evaluate(model))
    return reports


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator else None


def compare(
    app: Compressible, parent: dict[str, Any], child: dict[str, Any], gate: Gate
) -> dict[str, Any]:
    """The report: both measurements, ratios (parent over child: > 1 is better), the
    metric's change in points, and whether the gate accepts the child, and why not."""
    sign = 1 if app.higher_is_better else -1
    drop = round(sign * (parent["metric"] - child["metric"]) * app.metric_points, 3)
    speedup = _ratio(parent["latency_ms_b1_p50"], child["latency_ms_b1_p50"])
    reasons = []
    if drop > gate.max_accuracy_drop:
        reasons.append(
            f"{app.metric_name} dropped {drop:g} points, more than the gate's "
            f"max_accuracy_drop of {gate.max_accuracy_drop:g}"
        )
    if gate.min_speedup is not None and (speedup is None or speedup < gate.min_speedup):
        reasons.append(
            f"batch-1 speedup {speedup}x is under the gate's min_speedup of {gate.min_speedup:g}x"
        )
    return {
        "metric_name": app.metric_name,
        "parent": parent,
        "child": child,
        "ratios": {
            "params": _ratio(parent["params"], child["params"]),
            "size": _ratio(parent["size_bytes"], child["size_bytes"]),
            "latency_b1": speedup,
            "latency_b32": _ratio(parent["latency_ms_b32_p50"], child["latency_ms_b32_p50"]),
        },
        "metric_drop_points": drop,
        "gate": gate.model_dump(mode="json"),
        "accepted": not reasons,
        "rejected_reason": "; ".join(reasons) or None,
    }
