"""Compress jobs on a real local Ray, over REST: the intent app's model quantized, pruned
and distilled, measured against its parent, registered with lineage, and served."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from raydc.client import zip_directory
from tests.conftest import FIXTURES, REPO
from tests.integration.conftest import Api
from tests.integration.test_deployments_on_ray import healthy

pytestmark = pytest.mark.workload


def compress(api: Api, name: str, steps: list[dict[str, Any]], gate: dict[str, Any]) -> str:
    spec = yaml.safe_load((REPO / "apps" / "intent" / "compress.yaml").read_text())
    spec.update(name=name, model="intent:1", steps=steps, gate=gate, max_retries=0)
    return str(api.submit(spec)["id"])


def version(api: Api, ref: str) -> dict[str, Any]:
    name, number = ref.split(":")
    response = api.http.get(f"/v1/models/{name}/versions/{number}")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_quantize_prune_distill_gate_lineage_and_serving(api: Api, ray_head: Any) -> None:
    from raydc.workloads.compress_ops import load_compressed, sparsity
    from raydc.workloads.compress_smooth import SmoothedLinear

    train = yaml.safe_load((REPO / "apps" / "intent" / "train.yaml").read_text())
    train["config"] = {**train["config"], "epochs": 2}
    train["resources"] = {**train["resources"], "workers": 1}
    trained = api.wait_status(api.submit(train)["id"], "SUCCEEDED", timeout_s=300)
    assert trained["result"]["model"] == "intent:1"

    # Three jobs at once, each on one worker of the 4-CPU cluster.
    int8 = compress(api, "intent-int8", [{"type": "quantize", "smooth_alpha": 0.8}],
                    {"max_accuracy_drop": 5.0, "min_speedup": 1000})  # fmt: skip
    pruned = compress(api, "intent-pruned", [{"type": "prune", "sparsity": 0.5}],
                      {"max_accuracy_drop": 50.0})  # fmt: skip
    chain = compress(api, "intent-chain", [
        {"type": "distill", "student": {"layers": 1}, "epochs": 1, "lr": 5e-4},
        {"type": "prune", "method": "structured", "sparsity": 0.25},
        {"type": "quantize", "smooth_alpha": 0.8},
    ], {"max_accuracy_drop": 60.0})  # fmt: skip
    done = {job: api.wait_status(job, "SUCCEEDED", timeout_s=900) for job in (int8, pruned, chain)}

    # Quantized: ~4x smaller and about as accurate, but the impossible speedup rejects it.
    result = done[int8]["result"]
    report = result["report"]
    assert result["accepted"] is False and report["accepted"] is False
    assert report["ratios"]["size"] > 2.5
    assert report["metric_drop_points"] <= 5.0
    for side in ("parent", "child"):
        assert {"params", "size_bytes", "latency_ms_b1_p50", "latency_ms_b32_p50",
                "metric"} <= set(report[side])  # fmt: skip
    int8_version = {**version(api, result["model"]), "ref": result["model"]}
    assert int8_version["status"] == "rejected"
    smoothed = load_compressed(int8_version["uri"])  # each Linear smoothed, then int8
    assert sum(isinstance(module, SmoothedLinear) for module in smoothed.modules()) == 37
    assert "min_speedup of 1000x" in int8_version["status_reason"]

    # Pruned to 50%: measured on the child, and in the file the version points to.
    result = done[pruned]["result"]
    assert result["accepted"] is True
    assert result["report"]["child"]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    pruned_version = version(api, result["model"])
    assert sparsity(load_compressed(pruned_version["uri"])) == pytest.approx(0.5, abs=1e-3)

    # The chain: a student a quarter of the size or less, then pruned and int8.
    result = done[chain]["result"]
    report = result["report"]
    assert result["accepted"] is True
    assert report["ratios"]["params"] >= 4 and report["ratios"]["size"] >= 10
    assert report["child"]["metric"] > 0.3  # chance is 1/22
    chain_version = version(api, result["model"])
    assert chain_version["lineage"]["parent"] == "intent:1"
    assert [s["type"] for s in chain_version["lineage"]["steps"]] == [
        "distill", "prune", "quantize",
    ]  # fmt: skip
    assert chain_version["report"] == report

    # The rejected int8 version cannot be deployed; the chain's can, and answers.
    rejected = {"name": "x", "model": int8_version["ref"]}
    refused = api.http.post("/v1/deployments", json=rejected)
    assert refused.status_code == 422 and "rejected" in refused.text
    created = api.http.post("/v1/deployments", json={
        "name": "small", "model": result["model"], "resources": {"cpus_per_replica": 0.5},
        "autoscaling": {"min_replicas": 1, "max_replicas": 1},
    })  # fmt: skip
    assert created.status_code == 201, created.text
    try:
        url = healthy(api, "small")["url"]
        token = {"Authorization": api.http.headers["Authorization"]}
        answer = httpx.post(
            url, json={"inputs": ["where is my package"]}, headers=token, timeout=60
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == result["model"]
        assert len(answer.json()["predictions"]) == 1
    finally:
        api.http.delete("/v1/deployments/small")


def test_a_distill_worker_failure_resumes_from_the_last_epoch(api: Api, tmp_path: Path) -> None:
    ref = api.upload(zip_directory(FIXTURES / "toycompress"))
    train = {"kind": "train", "name": "blobs", "code": {"ref": ref},
             "entrypoint": "toycompress:train_loop", "config": {"epochs": 5},
             "resources": {"workers": 1, "cpus_per_worker": 0.5}, "max_retries": 0}  # fmt: skip
    trained = api.wait_status(api.submit(train)["id"], "SUCCEEDED")
    assert trained["result"]["metrics"]["accuracy"] > 0.9  # chance is 1/4

    job = api.submit({
        "kind": "compress", "name": "blobs-small", "code": {"ref": ref},
        "entrypoint": "toycompress:Compression", "model": trained["result"]["model"],
        "config": {"fail_at_epoch": 2, "trace_dir": str(tmp_path)},
        "steps": [{"type": "distill", "student": {"hidden": 8}, "epochs": 3, "lr": 0.01}],
        "gate": {"max_accuracy_drop": 10.0},
        "resources": {"workers": 1, "cpus_per_worker": 0.5}, "max_retries": 1,
    })  # fmt: skip
    done = api.wait_status(job["id"], "SUCCEEDED")

    # Epoch 2 failed once; the restarted worker group went on from epoch 1's
    # checkpoint (epoch 2 again), not from the start.
    assert (tmp_path / "failed").exists()
    assert (tmp_path / "epochs.log").read_text().split() == ["1", "2", "2", "3"]
    report = done["result"]["report"]
    assert done["result"]["accepted"] is True and report["ratios"]["params"] > 5
    assert version(api, done["result"]["model"])["lineage"]["parent"] == "blobs:1"
