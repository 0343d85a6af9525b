"""The intent app trained on a real local Ray, submitted over REST like a user would."""

from __future__ import annotations

import pytest
import torch
import yaml

from tests.conftest import REPO
from tests.integration.conftest import Api

pytestmark = pytest.mark.workload


def test_intent_trains_and_registers_a_servable_model(api: Api) -> None:
    spec = yaml.safe_load((REPO / "apps" / "intent" / "train.yaml").read_text())
    # Shrunk to keep the test short: the frozen encoder's pass over the data (~10 s of
    # CPU) is most of it, and the head reaches ~0.93 held-out accuracy in 2 epochs.
    spec["config"] = {**spec["config"], "epochs": 2}
    spec["resources"] = {**spec["resources"], "workers": 1}
    job = api.submit(spec)
    done = api.wait_status(job["id"], "SUCCEEDED", timeout_s=300)

    metrics = done["result"]["metrics"]
    assert metrics["epoch"] == 2
    assert metrics["accuracy"] > 0.8  # chance is 1/22
    assert done["result"]["model"] == "intent:1"
    versions = api.http.get("/v1/models/intent/versions").json()
    assert [(v["version"], v["job_id"]) for v in versions] == [(1, job["id"])]

    # The registered checkpoint is what a deployment loads: rebuilt from it outside Ray,
    # the whole pipeline scores the held-out split as the job reported.
    from intent.serve import Predictor
    from intent.train import evaluate_checkpoint

    uri = versions[0]["uri"]
    assert evaluate_checkpoint(uri)["accuracy"] == pytest.approx(metrics["accuracy"])
    threads = torch.get_num_threads()
    predictor = Predictor(uri, num_threads=1)
    torch.set_num_threads(threads)  # Predictor sets the process's torch threads
    predictions = predictor.predict(["where is my package", "I forgot my password"])
    assert len(predictions) == 2 and set(predictions) <= set(predictor.labels)
