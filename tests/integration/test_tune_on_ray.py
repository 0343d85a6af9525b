"""Tune jobs on a real local Ray (4 CPUs), submitted over REST: an ASHA search of the
sentiment app, and a preempted search that resumes where it stopped."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from raydc.client import zip_directory
from raydc.settings import Settings
from tests.conftest import FIXTURES
from tests.integration.conftest import Api

pytestmark = [pytest.mark.usefixtures("idle_cluster"), pytest.mark.workload]


def sentiment_search() -> dict[str, Any]:
    return {
        "kind": "tune", "name": "sentiment-search", "code": {"app": "sentiment"},
        "entrypoint": "sentiment.train:train_loop",
        "config": {"epochs": 3, "num_examples": 1500},
        "search_space": {"lr": {"loguniform": [0.003, 0.05]}, "hidden_dim": {"choice": [32, 64]}},
        "metric": "accuracy", "mode": "max",
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
        "num_samples": 4, "max_concurrent_trials": 2,
        "resources": {"workers": 1, "cpus_per_worker": 1}, "max_retries": 0,
    }  # fmt: skip


def trials_of(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list((job["result"] or {}).get("trials") or [])


def test_an_asha_search_shows_its_trials_and_registers_the_best(api: Api) -> None:
    job = api.submit(sentiment_search())
    assert job["kind"] == "tune"

    # While it runs, the job's result lists the trials, with the metrics they reported.
    snapshots: list[list[dict[str, Any]]] = []

    def succeeded(seen: dict[str, Any]) -> bool:
        if seen["status"] == "RUNNING":
            snapshots.append(trials_of(seen))
        return seen["status"] == "SUCCEEDED"

    done = api.wait_for(job["id"], succeeded, timeout_s=600)
    reporting = [s for s in snapshots if any(t["metrics"] for t in s)]
    assert reporting, "no trial metrics were shown while the search ran"
    assert {"id", "status", "config", "iterations", "metrics"} <= reporting[0][0].keys()
    # max_concurrent_trials held: never more than 2 trials running at once.
    assert max(sum(t["status"] == "RUNNING" for t in s) for s in snapshots) <= 2

    result = done["result"]
    trials = result["trials"]
    assert len(trials) == 4 and {t["status"] for t in trials} == {"TERMINATED"}
    for trial in trials:  # ASHA may have stopped some after 1 or 2 epochs
        config = trial["config"]
        assert 0.003 <= config["lr"] <= 0.05 and config["hidden_dim"] in (32, 64)
        assert config["epochs"] == 3 and config["num_examples"] == 1500
        assert 1 <= trial["iterations"] == trial["metrics"]["epoch"] <= 3
        assert 0 <= trial["metrics"]["accuracy"] <= 1
    best = result["best_trial"]
    [best_trial] = [t for t in trials if t["id"] == best["id"]]
    assert best["config"] == best_trial["config"]
    # The registered checkpoint is the best one kept; every trial's last one is kept.
    assert result["metrics"]["accuracy"] >= max(t["metrics"]["accuracy"] for t in trials)
    assert result["model"] == "sentiment-search:1"

    [version] = api.http.get("/v1/models/sentiment-search/versions").json()
    assert version["lineage"] == {"job": job["id"], "kind": "tune", "trial": best["id"],
                                  "config": best["config"], "metrics": best["metrics"]}  # fmt: skip
    assert version["metrics"] == result["metrics"]
    # A real model: reload the checkpoint and score the held-out split it was scored on.
    from sentiment.train import evaluate_checkpoint

    rescored = evaluate_checkpoint(version["uri"])
    assert rescored["accuracy"] == pytest.approx(result["metrics"]["accuracy"])
    assert rescored["epoch"] == result["metrics"]["epoch"]
    statuses = [e["to_status"] for e in api.http.get(f"/v1/jobs/{job['id']}/events").json()]
    assert statuses == ["PENDING", "STARTING", "RUNNING", "SUCCEEDED"]


def toy_search(ref: str) -> dict[str, Any]:
    """Two trials of the toy loop on all 4 CPUs: one of 1 epoch, one of 30 (1 s each)."""
    return {
        "kind": "tune", "name": "toy-search", "code": {"ref": ref},
        "entrypoint": "toy:train_loop", "config": {"sleep_s": 1.0},
        "search": "grid", "search_space": {"epochs": {"grid": [1, 30]}},
        "metric": "loss", "mode": "min", "max_concurrent_trials": 2, "priority": "low",
        "resources": {"workers": 1, "cpus_per_worker": 2}, "max_retries": 0,
    }  # fmt: skip


def result_times(settings: Settings, job_id: str, trial_id: str) -> list[float]:
    """When Tune recorded each result of a trial (its result.json in the search's dir)."""
    lines = (settings.runs_dir / job_id / trial_id / "result.json").read_text().splitlines()
    return [float(json.loads(line)["timestamp"]) for line in lines if line.strip()]


def test_a_preempted_search_resumes_without_rerunning_finished_trials(
    api: Api, settings: Settings
) -> None:
    ref = api.upload(zip_directory(FIXTURES / "toyjob"))
    search = api.submit(toy_search(ref))

    long_at_short_end: list[int] = []

    def one_done_one_going(job: dict[str, Any]) -> bool:
        by_epochs = {t["config"]["epochs"]: t for t in trials_of(job)}
        short, long = by_epochs.get(1), by_epochs.get(30)
        if not (short and long and short["status"] == "TERMINATED"):
            return False
        long_at_short_end.append(long["iterations"])
        # The long trial has reported 3 epochs (1 s each) since the short one ended, so
        # Tune has saved the search's state (every 2 s) with the short one finished.
        return long["status"] == "RUNNING" and long["iterations"] >= long_at_short_end[0] + 3

    before = api.wait_for(search["id"], one_done_one_going, timeout_s=400)
    [short] = [t for t in trials_of(before) if t["config"]["epochs"] == 1]

    high = api.submit({
        "kind": "train", "name": "urgent", "code": {"ref": ref}, "entrypoint": "toy:train_loop",
        "config": {"epochs": 1}, "priority": "high", "max_retries": 0,
        "resources": {"workers": 1, "cpus_per_worker": 2},
    })  # fmt: skip
    api.wait_status(high["id"], "SUCCEEDED", timeout_s=300)
    done = api.wait_status(search["id"], "SUCCEEDED", timeout_s=400)

    assert done["attempt"] == 2
    events = api.http.get(f"/v1/jobs/{search['id']}/events").json()
    preempted_at = next(e["created_at"] for e in events if e["to_status"] == "PREEMPTED")
    trials = {t["id"]: t for t in done["result"]["trials"]}
    assert len(trials) == 2 and {t["status"] for t in trials.values()} == {"TERMINATED"}
    # The finished trial was not run again: every result it has predates the preemption.
    assert trials[short["id"]]["metrics"] == short["metrics"]
    preempted = datetime.fromisoformat(preempted_at).timestamp()
    assert max(result_times(settings, search["id"], short["id"])) < preempted
    # The interrupted one went on from its checkpoint to its last epoch.
    [long] = [t for t in trials.values() if t["config"]["epochs"] == 30]
    assert long["metrics"]["epoch"] == 30 and long["metrics"]["resumed"] is True
    assert done["result"]["best_trial"]["id"] == long["id"]  # loss 1/30 beats 1/1
    logs = api.http.get(f"/v1/jobs/{search['id']}/logs").text
    assert "raydc: resuming the search" in logs
