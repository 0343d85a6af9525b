"""The compress harness: runs a compress job's steps on the cluster and reports.

Each step reads a model directory and writes one under the job's run directory
(``<runs>/<job>/compress/<i>-<type>``), the parent version's checkpoint being the
first input. A step whose output exists is skipped, so a job that is retried or
requeued continues where it stopped; a distill step resumes from its own Ray Train
checkpoints. Quantize and prune run in a Ray task of one worker's resources, a distill
step as a Ray Train run of the spec's workers, and the final measurement of parent and
child in one task, timed in alternating rounds.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import ray
import torch

from raydc.specs.compression import DistillStep, PruneStep, QuantizeStep
from raydc.specs.jobs import CompressSpec, Resources
from raydc.workloads.compress_distill import build_distill_trainer, load_app
from raydc.workloads.compress_measure import compare, measure
from raydc.workloads.compress_ops import is_compressed, quantize, save_compressed
from raydc.workloads.compress_prune import prune_model

log = logging.getLogger(__name__)
_BYTES_PER_GB = 1024**3


def _task_options(resources: Resources) -> dict[str, Any]:
    options: dict[str, Any] = {
        "num_cpus": resources.cpus_per_worker,
        "num_gpus": resources.gpus_per_worker,
        "max_retries": 0,
    }
    if resources.memory_gb_per_worker > 0:
        options["memory"] = resources.memory_gb_per_worker * _BYTES_PER_GB
    if resources.custom:
        options["resources"] = dict(resources.custom)
    return options


def _threads(resources: Resources) -> int:
    return max(1, int(resources.cpus_per_worker))


def step_records(spec: CompressSpec, upto: int) -> list[dict[str, Any]]:
    return [step.model_dump(mode="json") for step in spec.steps[:upto]]


def run_step(spec_json: dict[str, Any], index: int, source: str, out_dir: str) -> dict[str, Any]:
    """One quantize or prune step, inside a Ray task."""
    spec = CompressSpec.model_validate(spec_json)
    step = spec.steps[index]
    torch.set_num_threads(_threads(spec.resources))
    app = load_app(spec.entrypoint, spec.config)
    model = app.load(source)
    meta: dict[str, Any] = {"steps": step_records(spec, index + 1)}
    if isinstance(step, QuantizeStep):
        needs_calibration = step.method == "static" or step.smooth_alpha is not None
        calibration = app.calibration_inputs(step.calibration_batches) if needs_calibration else []
        model = quantize(model, step, calibration)
        meta["quantized_engine"] = torch.backends.quantized.engine
    elif isinstance(step, PruneStep):
        model = prune_model(model, step, app)
    save_compressed(Path(out_dir), model, meta, app.metadata(source))
    return meta


def measure_both(spec_json: dict[str, Any], parent: str, child: str) -> dict[str, Any]:
    """Parent and child measured together in one task, then compared under the gate."""
    spec = CompressSpec.model_validate(spec_json)
    torch.set_num_threads(_threads(spec.resources))
    app = load_app(spec.entrypoint, spec.config)
    parent_report, child_report = measure(app, app.load(parent), app.load(child))
    return compare(app, parent_report, child_report, spec.gate)


def run_compress(
    spec: CompressSpec, job_id: str, runs_dir: Path, parent_dir: str, workers: int | None = None
) -> dict[str, Any]:
    work = runs_dir / job_id / "compress"
    work.mkdir(parents=True, exist_ok=True)
    spec_json = spec.model_dump(mode="json")
    options = _task_options(spec.resources)
    source = parent_dir
    for index, step in enumerate(spec.steps):
        out = work / f"{index}-{step.type}"
        if is_compressed(out):
            log.info("step %d (%s) already done: %s", index, step.type, out)
        elif isinstance(step, DistillStep):
            trainer = build_distill_trainer(
                spec, step, job_id, index, runs_dir, source, out, step_records(spec, index + 1),
                workers,
            )  # fmt: skip
            trainer.fit()
        else:
            task = ray.remote(run_step).options(**options)
            ray.get(task.remote(spec_json, index, source, str(out)))
        print(f"raydc: compress step {index} ({step.type}) done: {out}", flush=True)
        source = str(out)
    report = ray.get(
        ray.remote(measure_both).options(**options).remote(spec_json, parent_dir, source)
    )
    child = report["child"]
    return {
        "metrics": {report["metric_name"]: child["metric"], "size_bytes": child["size_bytes"],
                    "latency_ms_b1_p50": child["latency_ms_b1_p50"]},
        "checkpoint_path": source,
        "report": report,
    }  # fmt: skip
