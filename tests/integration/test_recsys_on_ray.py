"""The recsys app end to end on a real local Ray: train.yaml through the control plane."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.integration.conftest import Api

pytestmark = pytest.mark.workload

# train.yaml as shipped, on a smaller catalog so the job takes seconds, not a minute.
SHRUNK = {
    "epochs": 3,
    "num_users": 600,
    "num_items": 300,
    "max_interactions": 30,
    "batch_size": 256,
}


def test_recsys_trains_beats_popularity_and_registers_a_servable_model(api: Api) -> None:
    spec = yaml.safe_load((REPO / "apps" / "recsys" / "train.yaml").read_text())
    spec["config"] = {**spec["config"], **SHRUNK}
    job = api.submit(spec)
    done = api.wait_status(job["id"], "SUCCEEDED", timeout_s=300)

    metrics = done["result"]["metrics"]
    assert metrics["epoch"] == 3
    assert metrics["hit_rate"] > metrics["popularity_hit_rate"] + 0.1, metrics
    assert done["result"]["model"] == "recsys:1"
    versions = api.http.get("/v1/models/recsys/versions").json()
    assert [(v["version"], v["job_id"]) for v in versions] == [(1, job["id"])]
    uri = versions[0]["uri"]
    assert Path(uri).is_dir()

    # The registered checkpoint is the trained model: re-scored from scratch it gives the
    # reported hit rate, and the serving Predictor loads it and answers.
    from recsys.serve import Predictor
    from recsys.train import evaluate_checkpoint

    assert evaluate_checkpoint(uri)["hit_rate"] == metrics["hit_rate"]
    [top] = Predictor(uri).predict([{"user": 0, "k": 5}])
    assert len(top["items"]) == 5 and top["scores"] == sorted(top["scores"], reverse=True)
