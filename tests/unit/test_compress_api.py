"""Compress jobs over REST against a real database (no Ray): the spec, resolving the
parent at submit, and registering the child (accepted or rejected) when it finishes."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from raydc.server.control_plane import ControlPlane
from raydc.server.job_outcomes import ActiveJob, read_active
from raydc.server.services.models import register_version
from raydc.specs.status import JobStatus, TerminationReason
from tests.unit.factories import ADMIN, make_tenant, make_token, train_spec
from tests.unit.test_code_upload import ZIP, make_zip
from tests.unit.test_deployments_api import spec as deployment_spec
from tests.unit.test_deployments_api import trained
from tests.unit.test_reconciler_admission import set_cluster


def compress_spec(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "compress",
        "name": "sentiment-int8",
        "code": {"app": "sentiment"},
        "entrypoint": "sentiment.compress:Compression",
        "model": "sentiment",
        "steps": [{"type": "quantize"}],
        "gate": {"max_accuracy_drop": 1.0},
    }
    body.update(overrides)
    return body


def report(accepted: bool) -> dict[str, Any]:
    one = {"params": 10, "size_bytes": 40, "latency_ms_b1_p50": 2.0, "latency_ms_b32_p50": 9.0,
           "metric": 0.9}  # fmt: skip
    return {
        "metric_name": "accuracy", "parent": one, "child": {**one, "size_bytes": 10},
        "ratios": {"size": 4.0}, "metric_drop_points": 0.0, "accepted": accepted,
        "rejected_reason": None if accepted else "accuracy dropped 5 points",
    }  # fmt: skip


def finish(control_plane: ControlPlane, job_id: str, accepted: bool) -> dict[str, Any]:
    """Admit the job and end it as its driver would have written its result."""
    set_cluster(control_plane, cpu=4)
    control_plane.reconciler.schedule()
    with control_plane.sessions() as session:
        [job] = [j for j in read_active(session) if j.id == job_id]
    outcome = {"status": "succeeded", "metrics": {"accuracy": 0.9}, "report": report(accepted),
               "checkpoint_path": f"/runs/{job_id}/compress/0-quantize"}  # fmt: skip
    control_plane.reconciler.outcomes.finish(
        job, JobStatus.SUCCEEDED, TerminationReason.COMPLETED, None, outcome
    )
    return job_json(control_plane, job)


def job_json(control_plane: ControlPlane, job: ActiveJob) -> dict[str, Any]:
    from raydc.store.models import JobRow

    with control_plane.sessions() as session:
        row = session.get(JobRow, job.id)
        assert row is not None
        return {"status": row.status, "result": row.result}


def test_a_compress_job_resolves_its_parent_at_submit(
    api: TestClient, control_plane: ControlPlane
) -> None:
    trained(api, control_plane, ADMIN, versions=2)
    response = api.post("/v1/jobs", json=compress_spec(), headers=ADMIN)
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["kind"] == "compress" and job["spec"]["model"] == "sentiment:2"
    assert api.get("/v1/jobs?kind=compress", headers=ADMIN).json()["items"][0]["id"] == job["id"]


def test_bad_compress_specs_name_the_field(api: TestClient, control_plane: ControlPlane) -> None:
    trained(api, control_plane, ADMIN)
    make_tenant(api, "other")
    cases = [
        (compress_spec(model="nope"), ["model"], "has no model 'nope'"),
        (compress_spec(model="sentiment:7"), ["model"], "has no version 7"),
        (compress_spec(model="Bad Name"), ["model"], "should match pattern"),
        (compress_spec(code={"app": "intent"}), ["code", "app"], "trained by app 'sentiment'"),
        (compress_spec(steps=[]), ["steps"], "at least 1"),
        (compress_spec(steps=[{"type": "squeeze"}]), ["steps", 0], "does not match"),
        (compress_spec(steps=[{"type": "prune", "sparsity": 1.5}]),
         ["steps", 0, "prune", "sparsity"], "less than 1"),
        (compress_spec(steps=[{"type": "quantize"}, {"type": "prune", "sparsity": 0.5}]),
         ["steps"], "quantize must be the last step"),
        (compress_spec(gate={"max_accuracy_drop": -1}), ["gate", "max_accuracy_drop"], "0"),
    ]  # fmt: skip
    for body, field, message in cases:
        response = api.post("/v1/jobs", json=body, headers=ADMIN)
        assert response.status_code == 422, (body, response.text)
        detail = response.json()["detail"]
        text = str(detail)
        assert message in text, (field, text)
        locations = [tuple(str(p) for p in error["loc"]) for error in detail]
        wanted = tuple(str(p) for p in field)
        assert any(loc[-len(wanted) :] == wanted for loc in locations), (field, locations)
    # Another tenant cannot compress (or even see) this tenant's model.
    other = make_token(api, "other")
    response = api.post("/v1/jobs", json=compress_spec(), headers=other)
    assert response.status_code == 422 and "has no model 'sentiment'" in response.text


def test_an_accepted_child_is_the_next_version_with_its_lineage_and_report(
    api: TestClient, control_plane: ControlPlane
) -> None:
    trained(api, control_plane, ADMIN)
    job = api.post("/v1/jobs", json=compress_spec(), headers=ADMIN).json()
    done = finish(control_plane, job["id"], accepted=True)
    assert done["status"] == "SUCCEEDED"
    assert done["result"]["model"] == "sentiment:2" and done["result"]["accepted"] is True
    assert done["result"]["report"]["ratios"]["size"] == 4.0
    version = api.get("/v1/models/sentiment/versions/2", headers=ADMIN).json()
    assert version["status"] == "ready" and version["status_reason"] is None
    assert version["report"]["child"]["size_bytes"] == 10
    assert version["lineage"] == {
        "job": job["id"], "kind": "compress", "parent": "sentiment:1",
        "steps": job["spec"]["steps"], "gate": job["spec"]["gate"],
    }  # fmt: skip
    # The compressed version deploys like any other, served by the parent app's predictor.
    response = api.post("/v1/deployments", json=deployment_spec(), headers=ADMIN)
    assert response.status_code == 201, response.text
    assert response.json()["model"] == "sentiment:2"
    assert response.json()["spec"]["predictor"] == "sentiment.serve:Predictor"


def test_a_rejected_child_is_kept_but_never_deployed(
    api: TestClient, control_plane: ControlPlane
) -> None:
    trained(api, control_plane, ADMIN)
    job = api.post("/v1/jobs", json=compress_spec(), headers=ADMIN).json()
    done = finish(control_plane, job["id"], accepted=False)
    assert done["status"] == "SUCCEEDED" and done["result"]["accepted"] is False
    version = api.get("/v1/models/sentiment/versions/2", headers=ADMIN).json()
    assert version["status"] == "rejected"
    assert version["status_reason"] == "accuracy dropped 5 points"
    # "sentiment" (the latest) skips it; naming it is refused with the reason.
    latest = api.post("/v1/deployments", json=deployment_spec(), headers=ADMIN).json()
    assert latest["model"] == "sentiment:1"
    response = api.post(
        "/v1/deployments", json=deployment_spec(name="two", model="sentiment:2"), headers=ADMIN
    )
    assert response.status_code == 422
    assert "rejected by its compression gate: accuracy dropped 5 points" in response.text
    # Nor is it compressed further.
    response = api.post("/v1/jobs", json=compress_spec(model="sentiment:2"), headers=ADMIN)
    assert response.status_code == 422 and "rejected" in response.text


def test_an_int8_version_is_not_compressed_again(
    api: TestClient, control_plane: ControlPlane
) -> None:
    trained(api, control_plane, ADMIN)
    job = api.post("/v1/jobs", json=compress_spec(), headers=ADMIN).json()
    assert finish(control_plane, job["id"], accepted=True)["result"]["model"] == "sentiment:2"
    prune = compress_spec(steps=[{"type": "prune", "sparsity": 0.5}])
    response = api.post("/v1/jobs", json=prune, headers=ADMIN)  # "sentiment" = sentiment:2
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "model"]
    assert "'sentiment:2' is int8 (its last step was quantize)" in response.text
    assert (
        api.post("/v1/jobs", json={**prune, "model": "sentiment:1"}, headers=ADMIN).status_code
        == 201
    )


def test_a_version_is_read_by_number_and_only_by_its_tenant(
    api: TestClient, control_plane: ControlPlane
) -> None:
    trained(api, control_plane, ADMIN)
    assert api.get("/v1/models/sentiment/versions/1", headers=ADMIN).json()["version"] == 1
    assert api.get("/v1/models/sentiment/versions/2", headers=ADMIN).status_code == 404
    make_tenant(api, "other")
    other = make_token(api, "other")
    assert api.get("/v1/models/sentiment/versions/1", headers=other).status_code == 404


def test_the_cli_prints_a_report_as_a_table() -> None:
    from rich.console import Console

    from raydc.cli import report_table

    console = Console(width=120, record=True)
    console.print(report_table(report(accepted=True)))
    text = console.export_text()
    assert "PARENT" in text and "CHILD" in text and "RATIO" in text
    size_row = next(line for line in text.splitlines() if "size (bytes)" in line)
    assert "40" in size_row and "10" in size_row and "4x" in size_row
    accuracy_row = next(line for line in text.splitlines() if "accuracy" in line)
    assert "0.9" in accuracy_row and "+0 points" in accuracy_row


def test_a_model_of_uploaded_code_is_compressed_with_that_code_only(
    api: TestClient, control_plane: ControlPlane
) -> None:
    ref, other = (
        api.post("/v1/code", content=make_zip({name: b""}), headers={**ADMIN, **ZIP}).json()["ref"]
        for name in ("blobs.py", "other.py")
    )
    train = train_spec(name="blobs", code={"ref": ref}, entrypoint="blobs:train_loop")
    job = api.post("/v1/jobs", json=train, headers=ADMIN).json()
    with control_plane.sessions() as session, session.begin():
        register_version(session, "default", "blobs", "/ckpt/blobs/1", {}, job["id"])

    same = compress_spec(model="blobs", code={"ref": ref}, entrypoint="blobs:Compression")
    response = api.post("/v1/jobs", json=same, headers=ADMIN)
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["model"] == "blobs:1"
    for code in ({"ref": other}, {"app": "sentiment"}):
        response = api.post("/v1/jobs", json={**same, "code": code}, headers=ADMIN)
        assert response.status_code == 422, response.text
        [error] = response.json()["detail"]
        assert error["loc"][-2:] == ["code", "ref"]
        assert f"trained from uploaded code '{ref}'" in error["msg"]
    # Serving needs a bundled app's predictor: uploaded code's models are not deployed.
    response = api.post("/v1/deployments", json=deployment_spec(model="blobs"), headers=ADMIN)
    assert response.status_code == 422
    assert "only models of bundled apps" in response.json()["detail"][0]["msg"]
