"""A control-plane restart while a job runs: it re-attaches, and the job finishes once."""

from __future__ import annotations

from raydc.client import zip_directory
from raydc.cluster.client import RayCluster
from raydc.cluster.jobs import submission_id
from raydc.settings import Settings
from tests.conftest import FIXTURES
from tests.integration.conftest import ServerThread, client_for


def test_restart_reattaches_and_the_job_finishes_once(
    settings: Settings, ray_head: RayCluster
) -> None:
    first = ServerThread(settings).start()
    api = client_for(first)
    ref = api.upload(zip_directory(FIXTURES / "toyjob"))
    job = api.submit({
        "kind": "train", "name": "restart", "code": {"ref": ref},
        "entrypoint": "toy:train_loop", "config": {"epochs": 4, "sleep_s": 2},
        "resources": {"workers": 1, "cpus_per_worker": 0.5}, "max_retries": 0,
    })  # fmt: skip
    api.wait_status(job["id"], "RUNNING")
    first.stop()  # the control plane goes away; the Ray job keeps running
    assert ray_head.jobs.state(job["id"]).status == "RUNNING"

    second = ServerThread(settings).start()
    try:
        api = client_for(second)
        done = api.wait_status(job["id"], "SUCCEEDED")
        assert done["attempt"] == 1
        assert done["result"]["metrics"]["epoch"] == 4
        events = [e["to_status"] for e in api.http.get(f"/v1/jobs/{job['id']}/events").json()]
        assert events == ["PENDING", "STARTING", "RUNNING", "SUCCEEDED"]
        versions = api.http.get("/v1/models/restart/versions").json()
        assert [v["job_id"] for v in versions] == [job["id"]]
    finally:
        second.stop()


def test_a_resubmission_is_idempotent(ray_head: RayCluster) -> None:
    """What a restart between 'sent to Ray' and 'recorded as sent' relies on."""
    sid = submission_id("idempotent-check", 1)
    for _ in range(2):
        ray_head.jobs.submit(sid, "python -c 'print(42)'", {}, {"raydc_job_id": sid})
    submissions = [job for job in ray_head.jobs._client.list_jobs() if job.submission_id == sid]
    assert len(submissions) == 1
