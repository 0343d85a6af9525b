"""Real jobs on a real local Ray, submitted over REST."""

from __future__ import annotations

import time
from pathlib import Path

from raydc.client import zip_directory
from raydc.cluster.client import RayCluster
from tests.conftest import FIXTURES, REPO
from tests.integration.conftest import Api


def toy_spec(ref: str, **config: object) -> dict:
    return {
        "kind": "train",
        "name": "toy",
        "code": {"ref": ref},
        "entrypoint": "toy:train_loop",
        "config": {"epochs": 2, **config},
        "resources": {"workers": 1, "cpus_per_worker": 0.5},
        "max_retries": 0,
    }


def toy_ref(api: Api) -> str:
    return api.upload(zip_directory(FIXTURES / "toyjob"))


def test_sentiment_trains_and_registers_a_model(api: Api) -> None:
    spec = (REPO / "apps" / "sentiment" / "train.yaml").read_text()
    job = api.submit(spec)
    done = api.wait_status(job["id"], "SUCCEEDED", timeout_s=600)

    assert done["result"]["model"] == "sentiment:1"
    assert done["result"]["metrics"]["accuracy"] > 0.8  # chance is 1/3
    versions = api.http.get("/v1/models/sentiment/versions").json()
    assert [(v["version"], v["job_id"]) for v in versions] == [(1, job["id"])]
    # The registered checkpoint is a real model: reload it and score the held-out split.
    from sentiment.train import evaluate_checkpoint

    assert evaluate_checkpoint(versions[0]["uri"])["accuracy"] > 0.8
    assert Path(versions[0]["uri"]).is_dir()

    logs = api.http.get(f"/v1/jobs/{job['id']}/logs").text
    assert f"raydc: job {job['id']} finished" in logs
    events = [e["to_status"] for e in api.http.get(f"/v1/jobs/{job['id']}/events").json()]
    assert events == ["PENDING", "STARTING", "RUNNING", "SUCCEEDED"]
    models = api.http.get("/v1/models").json()
    assert {"name": "sentiment", "versions": 1}.items() <= models[0].items()


def test_a_running_job_can_be_cancelled(api: Api, ray_head: RayCluster) -> None:
    job = api.submit(toy_spec(toy_ref(api), epochs=300, sleep_s=1))
    api.wait_status(job["id"], "RUNNING")
    assert api.http.post(f"/v1/jobs/{job['id']}/cancel").status_code == 202
    done = api.wait_status(job["id"], "CANCELLED", timeout_s=120)
    assert done["termination_reason"] == "cancelled_by_user"
    assert ray_head.jobs.state(job["id"]).status == "STOPPED"


def test_a_job_cancelled_right_after_submit_never_runs(api: Api, ray_head: RayCluster) -> None:
    job = api.submit(toy_spec(toy_ref(api), epochs=300, sleep_s=1))
    assert api.http.post(f"/v1/jobs/{job['id']}/cancel").status_code == 202
    done = api.wait_status(job["id"], "CANCELLED", timeout_s=120)
    assert done["result"] is None


def test_failures_are_reported_with_their_error(api: Api) -> None:
    ref = toy_ref(api)
    raising = api.submit(toy_spec(ref, fail_at_epoch=0))
    broken = api.submit({**toy_spec(ref), "entrypoint": "broken:train_loop"})
    missing = api.submit({**toy_spec(ref), "entrypoint": "toy:no_such_function"})

    raised = api.wait_status(raising["id"], "FAILED")
    assert "ValueError: toy failure at epoch 0" in raised["error"]
    assert raised["termination_reason"] == "user_code_error"
    not_importable = api.wait_status(broken["id"], "FAILED")
    assert "No module named 'this_module_does_not_exist'" in not_importable["error"]
    assert (
        "has no attribute 'no_such_function'" in api.wait_status(missing["id"], "FAILED")["error"]
    )
    assert api.http.get("/v1/models").json() == []


def test_a_failed_worker_restarts_from_its_checkpoint(api: Api) -> None:
    spec = toy_spec(toy_ref(api), epochs=3, fail_at_epoch=1)
    spec["max_retries"] = 1  # Train's FailureConfig: restart the worker group once
    job = api.submit(spec)
    done = api.wait_status(job["id"], "SUCCEEDED")
    assert done["result"]["metrics"] == {"epoch": 3, "loss": 1 / 3, "resumed": True, "workers": 1}


def test_cluster_view_shows_the_node(api: Api) -> None:
    # The API is up before the reconciler's first connect (it serves while Ray is
    # unreachable too): right after a start the view may still say not connected.
    deadline = time.monotonic() + 60
    cluster = api.http.get("/v1/cluster").json()
    while not cluster["connected"] and time.monotonic() < deadline:
        assert cluster["nodes"] == [] and cluster["capacity"]["cpu"] == 0
        time.sleep(0.2)
        cluster = api.http.get("/v1/cluster").json()
    assert cluster["connected"] is True
    assert cluster["capacity"]["cpu"] == 4
    assert len(cluster["nodes"]) == 1 and cluster["nodes"][0]["is_head"]
