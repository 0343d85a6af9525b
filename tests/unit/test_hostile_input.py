"""Hostile request bodies and parameters (#18): every bad one is a 422 naming the field,
costs the server little, and touches nothing of anyone else's."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import func, select

from raydc.security.rbac import Principal, Role
from raydc.server.control_plane import ControlPlane
from raydc.server.decoding import decode_body
from raydc.server.errors import DomainError
from raydc.server.services.jobs import parse_submission
from raydc.specs.deployments import DeploymentSpec
from raydc.specs.jobs import parse_job_spec
from raydc.store.models import JobRow
from tests.unit.factories import ADMIN, train_spec

APPS = Path(__file__).resolve().parents[2] / "apps"
YAML = {**ADMIN, "content-type": "application/yaml"}
JSON = {**ADMIN, "content-type": "application/json"}

TRAIN_YAML = """\
kind: train
name: yaml-job
code: {app: sentiment}
entrypoint: sentiment.train:train_loop
"""

BILLION_LAUGHS = (
    TRAIN_YAML
    + "config:\n  a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n"
    + "".join(
        f"  {chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
    )
)


def jobs_written(control_plane: ControlPlane) -> int:
    with control_plane.sessions() as session:
        return session.scalar(select(func.count()).select_from(JobRow)) or 0


def refused(response: Any, loc: list[Any] | None = None, says: str = "") -> dict[str, Any]:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail, detail
    if loc is not None:
        assert [d["loc"] for d in detail if d["loc"] == loc], detail
    if says:
        assert any(says in d["msg"] for d in detail), detail
    return detail[0]  # type: ignore[no-any-return]


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"x": value}
    return value


# ---- YAML: anchors, aliases, expansion ------------------------------------------------


def test_a_circular_alias_is_refused_and_writes_nothing(
    api: TestClient, control_plane: ControlPlane
) -> None:
    response = api.post("/v1/jobs", content=TRAIN_YAML + "config: &a {x: *a}\n", headers=YAML)
    refused(response, ["body"], says="YAML anchors and aliases are not accepted")
    assert "line 5" in response.json()["detail"][0]["msg"]
    assert jobs_written(control_plane) == 0


def test_billion_laughs_is_refused_before_it_expands(api: TestClient) -> None:
    assert len(BILLION_LAUGHS) < 700
    refused(api.post("/v1/jobs", content=BILLION_LAUGHS, headers=YAML), ["body"], "anchors")


def test_an_anchor_alone_and_a_merge_key_are_refused(api: TestClient) -> None:
    body = TRAIN_YAML + "config: &a {x: 1}\n"
    refused(api.post("/v1/jobs", content=body, headers=YAML), ["body"], "anchors")
    body = TRAIN_YAML + "config: {<<: {x: 1}}\n"
    refused(api.post("/v1/jobs", content=body, headers=YAML), ["body"], "merge")


# ---- one bad submission fails alone ----------------------------------------------------


def test_a_submission_that_breaks_the_writer_fails_alone(
    api: TestClient, control_plane: ControlPlane
) -> None:
    """Whatever slips past validation and raises while its batch is written, the other
    submissions of the batch are written and answered as if it had not been there."""
    principal = control_plane_admin(control_plane)
    good = [parse_submission(principal, train_spec(name=f"good-{n}")) for n in range(6)]
    poisoned = parse_submission(principal, train_spec(name="poisoned"))
    poisoned.spec.config["self"] = poisoned.spec.config  # cannot be serialized

    async def submit_all() -> list[Any]:
        batch = [*good[:3], poisoned, *good[3:]]
        tasks = [control_plane.submissions.submit(s) for s in batch]
        return await asyncio.gather(*tasks, return_exceptions=True)

    outcomes = asyncio.run(submit_all())
    bad = outcomes.pop(3)
    assert all(not isinstance(o, BaseException) for o in outcomes), outcomes
    assert sorted(o.name for o in outcomes) == sorted(s.spec.name for s in good)
    assert isinstance(bad, DomainError) and bad.status_code == 422, bad
    assert jobs_written(control_plane) == 6


def control_plane_admin(_: ControlPlane) -> Principal:
    return Principal(token_id="t", tenant="default", role=Role.ADMIN, name="admin")


# ---- depth, numbers, size --------------------------------------------------------------


@pytest.mark.parametrize("depth", [65, 1_000, 100_000])
def test_deep_json_is_a_422(api: TestClient, depth: int) -> None:
    body = json.dumps(train_spec(config={"epochs": 1})).replace(
        '"config": {', '"config": ' + '{"x": ' * depth + "{", 1
    )
    body = body.replace('"epochs": 1}', '"epochs": 1}' + "}" * depth, 1)
    json.loads(body) if depth < 500 else None  # well-formed
    refused(api.post("/v1/jobs", content=body, headers=JSON), says="levels deep")


@pytest.mark.parametrize("depth", [65, 1_000, 100_000])
def test_deep_yaml_is_a_422(api: TestClient, depth: int) -> None:
    body = TRAIN_YAML + "config: " + "[" * depth + "]" * depth + "\n"
    refused(api.post("/v1/jobs", content=body, headers=YAML), ["body"], "nest")


def test_a_config_nested_a_little_is_accepted(api: TestClient) -> None:
    response = api.post("/v1/jobs", json=train_spec(config=nested(40)), headers=ADMIN)
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["config"] == nested(40)


def test_a_config_too_deep_for_the_spec_is_refused_by_the_spec_too() -> None:
    with pytest.raises(ValueError, match="levels deep"):
        parse_job_spec(train_spec(config=nested(100)))


def test_huge_integers_are_a_422(api: TestClient) -> None:
    digits = "9" * 5000
    body = json.dumps(train_spec()).replace('"epochs": 1', f'"epochs": {digits}')
    refused(api.post("/v1/jobs", content=body, headers=JSON), says="digits")
    body = TRAIN_YAML + f"config: {{epochs: {digits}}}\n"
    refused(api.post("/v1/jobs", content=body, headers=YAML), ["body"], "digits")


def test_too_many_values_and_too_long_strings_are_a_422(api: TestClient) -> None:
    many = train_spec(config={"xs": [0] * 60_000})
    refused(api.post("/v1/jobs", json=many, headers=ADMIN), says="values")
    long = train_spec(config={"prompt": "x" * 100_000})
    refused(api.post("/v1/jobs", json=long, headers=ADMIN), ["body", "config", "prompt"])


def test_huge_paging_and_path_integers_are_a_422(api: TestClient) -> None:
    assert api.get("/v1/jobs?offset=99999999999999999999", headers=ADMIN).status_code == 422
    assert api.get("/v1/jobs?offset=-1", headers=ADMIN).status_code == 422
    big = api.get("/v1/models/m/versions/9223372036854775808", headers=ADMIN)
    assert big.status_code == 422, big.text
    assert big.json()["detail"][0]["loc"] == ["path", "version"]
    assert api.get("/v1/models/m/versions/0", headers=ADMIN).status_code == 422
    assert api.get("/v1/models/m/versions/1", headers=ADMIN).status_code == 404


# ---- numbers a spec must refuse --------------------------------------------------------


@pytest.mark.parametrize(
    ("resources", "field"),
    [
        ('{"cpus_per_worker": Infinity}', "cpus_per_worker"),
        ('{"cpus_per_worker": NaN}', "cpus_per_worker"),
        ('{"gpus_per_worker": -Infinity}', "gpus_per_worker"),
        ('{"cpus_per_worker": 1e308}', "cpus_per_worker"),
        ('{"cpus_per_worker": 1e400}', "cpus_per_worker"),
        ('{"workers": true}', "workers"),
        ('{"workers": 1e30}', "workers"),
        ('{"workers": 2.0}', "workers"),
        ('{"workers": "2"}', "workers"),
        ('{"workers": {"min": 1, "max": true}}', "workers"),
        ('{"memory_gb_per_worker": true}', "memory_gb_per_worker"),
        ('{"custom": {"tpu": Infinity}}', "custom"),
    ],
)
def test_non_numbers_in_resources_are_a_422(api: TestClient, resources: str, field: str) -> None:
    body = json.dumps(train_spec(resources={})).replace(
        '"resources": {}', '"resources": ' + resources
    )
    detail = refused(api.post("/v1/jobs", content=body, headers=JSON))
    assert detail["loc"][:3] == ["body", "resources", field], detail


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", ".NaN", "1.0e+400"])
def test_yaml_infinities_are_a_422(api: TestClient, value: str) -> None:
    body = TRAIN_YAML + f"resources: {{cpus_per_worker: {value}}}\n"
    loc = ["body", "resources", "cpus_per_worker"]
    refused(api.post("/v1/jobs", content=body, headers=YAML), loc, "finite")


def test_counts_and_switches_are_strict(api: TestClient) -> None:
    refused(api.post("/v1/jobs", json=train_spec(max_retries=True), headers=ADMIN),
            ["body", "max_retries"])  # fmt: skip
    refused(api.post("/v1/jobs", json=train_spec(max_retries=1.0), headers=ADMIN),
            ["body", "max_retries"])  # fmt: skip
    refused(api.post("/v1/jobs", json=train_spec(checkpoint={"num_to_keep": "2"}), headers=ADMIN),
            ["body", "checkpoint", "num_to_keep"])  # fmt: skip


def test_yaml_counts_are_ints(api: TestClient) -> None:
    body = TRAIN_YAML + "resources: {workers: 2, cpus_per_worker: 1}\nmax_retries: 0\n"
    response = api.post("/v1/jobs", content=body, headers=YAML)
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["resources"]["workers"] == 2


# ---- env -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env",
    [
        {"": "x"},
        {"A=B": "x"},
        {"A\x00": "x"},
        {"A\nB": "x"},
        {"1A": "x"},
        {"A" * 300: "x"},
        {"OK": "a\x00b"},
        {"OK": "x" * 40_000},
        {"RAYDC_JOB_ID": "other-tenants-job"},
        {"RAYDC_ANYTHING": "x"},
        {"RAY_ADDRESS": "x"},
        {"OK": 1},
    ],
)
def test_bad_env_is_a_422(
    api: TestClient, control_plane: ControlPlane, env: dict[str, Any]
) -> None:
    detail = refused(api.post("/v1/jobs", json=train_spec(env=env), headers=ADMIN))
    assert detail["loc"][:2] == ["body", "env"], detail
    assert jobs_written(control_plane) == 0


def test_ordinary_env_is_accepted(api: TestClient) -> None:
    env = {"HF_TOKEN": "hf_x", "_PRIVATE": "", "OMP_NUM_THREADS": "4", "RAYON": "1"}
    response = api.post("/v1/jobs", json=train_spec(env=env), headers=ADMIN)
    assert response.status_code == 201, response.text


# ---- keys and text ---------------------------------------------------------------------


def test_duplicate_keys_are_a_422_naming_the_key(api: TestClient) -> None:
    body = json.dumps(train_spec()).replace('"name": "sentiment"', '"name": "a", "name": "b"')
    refused(api.post("/v1/jobs", content=body, headers=JSON), says="duplicate key 'name'")
    body = TRAIN_YAML + "config: {lr: 0.1, lr: 0.2}\n"
    refused(api.post("/v1/jobs", content=body, headers=YAML), ["body"], "duplicate key 'lr'")


def test_invalid_utf8_is_a_422(api: TestClient) -> None:
    body = (
        json.dumps(train_spec(config={"note": "caf\u00e9"}), ensure_ascii=False)
        .encode()
        .replace(b"\xc3\xa9", b"\xe9")
    )
    refused(api.post("/v1/jobs", content=body, headers=JSON), ["body"], "UTF-8")
    refused(api.post("/v1/jobs", content=TRAIN_YAML.encode() + b"config: {a: \xff}\n",
                     headers=YAML), ["body"], "UTF-8")  # fmt: skip


def test_nul_and_lone_surrogates_in_strings_are_a_422(
    api: TestClient, control_plane: ControlPlane
) -> None:
    body = json.dumps(train_spec(config={"note": "a\x00b"}))
    refused(api.post("/v1/jobs", content=body, headers=JSON), ["body", "config", "note"], "NUL")
    body = json.dumps(train_spec()).replace('"epochs": 1', '"epochs": 1, "note": "\\ud800"')
    refused(api.post("/v1/jobs", content=body, headers=JSON), ["body", "config", "note"])
    assert jobs_written(control_plane) == 0


def test_yaml_keys_must_be_strings_and_values_plain(api: TestClient) -> None:
    refused(api.post("/v1/jobs", content=TRAIN_YAML + "config: {1: a}\n", headers=YAML),
            ["body", "config"], "keys")  # fmt: skip
    body = TRAIN_YAML + "config: {blob: !!binary aGVsbG8=}\n"
    refused(api.post("/v1/jobs", content=body, headers=YAML), ["body", "config", "blob"])
    body = TRAIN_YAML + "config: {s: !!set {a: null}}\n"
    refused(api.post("/v1/jobs", content=body, headers=YAML), ["body", "config", "s"])


def test_a_yaml_date_is_kept_as_written(api: TestClient) -> None:
    body = TRAIN_YAML + "config: {since: 2024-01-31, at: 2024-01-31 10:00:00}\n"
    response = api.post("/v1/jobs", content=body, headers=YAML)
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["config"] == {"since": "2024-01-31", "at": "2024-01-31 10:00:00"}


# ---- deployments and other specs -------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ('"autoscaling": {"max_replicas": true}', ["autoscaling", "max_replicas"]),
        ('"autoscaling": {"max_replicas": 2.0}', ["autoscaling", "max_replicas"]),
        ('"resources": {"cpus_per_replica": Infinity}', ["resources", "cpus_per_replica"]),
        ('"resources": {"gpus_per_replica": 1e300}', ["resources", "gpus_per_replica"]),
        ('"batching": {"batch_wait_timeout_s": NaN}', ["batching", "batch_wait_timeout_s"]),
        ('"canary": {"model": "m:1", "percent": true}', ["canary", "percent"]),
        ('"name": "e"', []),
    ],
)
def test_bad_deployment_numbers_are_a_422(api: TestClient, body: str, loc: list[str]) -> None:
    content = '{"name": "d", "model": "m", ' + body + "}"
    detail = refused(api.post("/v1/deployments", content=content, headers=JSON))
    assert detail["loc"] == ["body", *loc], detail


def test_strict_booleans_and_counts_in_compress_and_tune_specs() -> None:
    base = train_spec(kind="compress", model="m:1", entrypoint="intent.compress:Compression")
    for step in (
        {"type": "quantize", "per_channel": "yes"},
        {"type": "quantize", "embeddings": 1},
        {"type": "quantize", "calibration_batches": True},
        {"type": "prune", "sparsity": float("nan")},
        {"type": "distill", "epochs": 2.0},
    ):
        with pytest.raises(ValidationError):
            parse_job_spec({**base, "steps": [step]})
    tune = {**train_spec(kind="tune", metric="acc", mode="max", resources={"workers": 1}),
            "search_space": {"lr": {"uniform": [0.0, 1.0]}}}  # fmt: skip
    for bad in ({"num_samples": True}, {"num_samples": 2.0}, {"time_budget_s": float("inf")},
                {"search_space": {"lr": {"uniform": [0.0, float("inf")]}}},
                {"search_space": {"n": {"randint": [True, 4]}}}):  # fmt: skip
        with pytest.raises(ValidationError):
            parse_job_spec({**tune, **bad})
    assert isinstance(parse_job_spec(tune), object)


def test_a_good_submission_survives_its_neighbours(api: TestClient) -> None:
    """After every refusal above the server still answers a well-formed submission."""
    for body in (BILLION_LAUGHS, TRAIN_YAML + "config: " + "[" * 5000 + "]" * 5000):
        assert api.post("/v1/jobs", content=body, headers=YAML).status_code == 422
    response = api.post("/v1/jobs", json=train_spec(), headers=ADMIN)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "path", sorted(p for p in APPS.glob("*/*.yaml") if p.stem in ("train", "tune", "compress"))
)
def test_every_bundled_job_spec_passes_the_strict_decoder(path: Path) -> None:
    parse_job_spec(decode_body(path.read_bytes(), "application/yaml"))


@pytest.mark.parametrize("path", sorted(APPS.glob("*/serve.yaml")))
def test_every_bundled_deployment_spec_passes_the_strict_decoder(path: Path) -> None:
    DeploymentSpec.model_validate(decode_body(path.read_bytes(), "application/yaml"))
