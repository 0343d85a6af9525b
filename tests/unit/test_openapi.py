"""/openapi.json says what the API does: bodies the routes read raw, and every error."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from openapi_spec_validator import validate

from raydc.specs.jobs import JOB_KINDS

METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
def document(api: TestClient) -> dict[str, Any]:
    response = api.get("/openapi.json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document)


@pytest.mark.parametrize(
    ("method", "path", "schema"),
    [
        ("post", "/v1/jobs", "JobSpec"),
        ("post", "/v1/deployments", "DeploymentSpec"),
        ("patch", "/v1/deployments/{name}", "DeploymentPatch"),
    ],
)
def test_spec_bodies_are_declared_as_json_and_yaml(
    document: dict[str, Any], method: str, path: str, schema: str
) -> None:
    body = document["paths"][path][method]["requestBody"]
    assert body["required"] is True
    ref = {"$ref": f"#/components/schemas/{schema}"}
    assert body["content"]["application/json"]["schema"] == ref
    assert body["content"]["application/yaml"]["schema"] == ref
    assert schema in document["components"]["schemas"]


def test_the_job_spec_schema_is_one_of_the_kinds(document: dict[str, Any]) -> None:
    job_spec = document["components"]["schemas"]["JobSpec"]
    assert set(job_spec["discriminator"]["mapping"]) == set(JOB_KINDS)
    for ref in job_spec["discriminator"]["mapping"].values():
        assert ref.removeprefix("#/components/schemas/") in document["components"]["schemas"]
    train = document["components"]["schemas"]["TrainSpec"]
    assert {"kind", "name", "entrypoint"} <= set(train["required"])


def test_code_upload_takes_a_zip(document: dict[str, Any]) -> None:
    content = document["paths"]["/v1/code"]["post"]["requestBody"]["content"]
    assert content == {"application/zip": {"schema": {"type": "string", "format": "binary"}}}


def test_every_v1_operation_documents_401_403_and_bearer_auth(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        if path.startswith("/v1/"):
            assert {"401", "403", "429"} <= set(operation["responses"]), (method, path)
            assert operation["security"] == [{"bearer": []}], (method, path)
            error = operation["responses"]["403"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/ErrorDetail"}
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "security" not in document["paths"]["/healthz"]["get"]


def test_ids_and_names_in_the_path_or_a_tenant_document_404(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        names_tenant = any(p["name"] == "tenant" for p in operation.get("parameters", []))
        if "{" in path or names_tenant:
            assert "404" in operation["responses"], (method, path)
    assert "404" in document["paths"]["/v1/tokens"]["post"]["responses"]  # body names a tenant
    assert "404" not in document["paths"]["/v1/jobs"]["post"]["responses"]


@pytest.mark.parametrize(
    ("method", "path", "statuses"),
    [
        ("post", "/v1/tenants", {"409", "422"}),
        ("post", "/v1/jobs", {"413", "422"}),
        ("post", "/v1/jobs/{job_id}/cancel", {"404", "409"}),
        ("post", "/v1/code", {"413", "422"}),
        ("post", "/v1/deployments", {"409", "413", "422"}),
        ("patch", "/v1/deployments/{name}", {"404", "409", "413", "422"}),
    ],
)
def test_conflicts_sizes_and_invalid_input_are_documented(
    document: dict[str, Any], method: str, path: str, statuses: set[str]
) -> None:
    assert statuses <= set(document["paths"][path][method]["responses"])


def test_the_429_names_retry_after(document: dict[str, Any]) -> None:
    response = document["paths"]["/v1/jobs"]["post"]["responses"]["429"]
    assert "Retry-After" in response["headers"]


def test_logs_are_plain_text(document: dict[str, Any]) -> None:
    ok = document["paths"]["/v1/jobs/{job_id}/logs"]["get"]["responses"]["200"]
    assert list(ok["content"]) == ["text/plain"]
