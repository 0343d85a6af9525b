"""A job's env values are for whoever may submit in its tenant (members, admins): they
could run a job that prints them anyway. A viewer sees the keys, each value hidden."""

from __future__ import annotations

from fastapi.testclient import TestClient

from raydc.server.schemas import HIDDEN
from tests.unit.factories import ADMIN, make_tenant, make_token, train_spec

ENV = {"HF_TOKEN": "hf_secret-value", "WANDB_MODE": "offline"}


def test_a_viewer_sees_env_keys_but_not_values(api: TestClient) -> None:
    make_tenant(api, "team-a")
    member = make_token(api, "team-a")
    viewer = make_token(api, "team-a", "viewer")
    submitted = api.post("/v1/jobs", json=train_spec(env=ENV), headers=member)
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["id"]

    for path in (f"/v1/jobs/{job_id}", "/v1/jobs"):
        response = api.get(path, headers=viewer)
        assert response.status_code == 200
        assert "hf_secret-value" not in response.text, path
        body = response.json()
        job = body["items"][0] if "items" in body else body
        assert job["spec"]["env"] == {"HF_TOKEN": HIDDEN, "WANDB_MODE": HIDDEN}
        assert job["spec"]["config"] == {"epochs": 1}  # the rest of the spec is shown

    for headers in (member, ADMIN):
        job = api.get(f"/v1/jobs/{job_id}", headers=headers).json()
        assert job["spec"]["env"] == ENV
        [listed] = api.get("/v1/jobs", headers=headers).json()["items"]
        assert listed["spec"]["env"] == ENV
    # Hiding a value for a viewer never changed what the job runs with.
    assert api.get(f"/v1/jobs/{job_id}", headers=member).json()["spec"]["env"] == ENV


def test_a_job_without_env_looks_the_same_to_a_viewer(api: TestClient) -> None:
    make_tenant(api, "team-a")
    member = make_token(api, "team-a")
    viewer = make_token(api, "team-a", "viewer")
    job_id = api.post("/v1/jobs", json=train_spec(), headers=member).json()["id"]
    seen = api.get(f"/v1/jobs/{job_id}", headers=viewer).json()
    assert seen["spec"] == api.get(f"/v1/jobs/{job_id}", headers=member).json()["spec"]
