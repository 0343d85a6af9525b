"""Fuzz the API from its own OpenAPI document (schemathesis), in process, no Ray.

Shared by tests/unit/test_api_fuzz.py (a few examples per operation, seeded) and
benchmarks/api_fuzz.py (tens of thousands of requests). Each request goes through the
ASGI app with a real lifespan (fastapi's TestClient); each response is checked for a
5xx and against the document: status code, content type, headers and body schema.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.unit.factories import ADMIN, make_tenant, make_token, train_spec

# POST /v1/code takes any bytes the way an octet-stream does (most are not zips: 422).
schemathesis.serializer.alias("application/zip", "application/octet-stream")

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
FUZZ_TENANT = "fuzz"
SENT_KEYS = ("method", "url", "params", "json", "data")


@dataclass
class Finding:
    operation: str
    role: str
    mode: str
    status: int
    request: str
    response: str
    failures: str

    def __str__(self) -> str:
        return (f"{self.operation} as {self.role} ({self.mode}): {self.status}\n"
                f"  request: {self.request}\n  response: {self.response}\n"
                f"  failures: {self.failures}")  # fmt: skip


@dataclass
class Tally:
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)


@dataclass
class Fixture:
    """The app with a tenant, its member and one job, so reads return real rows."""

    client: TestClient
    headers: dict[str, dict[str, str]]
    path_values: dict[str, str]

    @classmethod
    def create(cls, client: TestClient) -> Fixture:
        make_tenant(client, FUZZ_TENANT, cpu=64, gpu=8, memory_gb=256)
        member = make_token(client, FUZZ_TENANT, "member")
        response = client.post("/v1/jobs", json=train_spec(name="fuzz-seed"), headers=member)
        assert response.status_code == 201, response.text
        return cls(client, {"admin": ADMIN, "member": member},
                   {"job_id": response.json()["id"], "tenant": FUZZ_TENANT})  # fmt: skip


def operations(client: TestClient) -> dict[str, APIOperation]:
    schema = schemathesis.openapi.from_dict(client.get("/openapi.json").json())
    found = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        found[operation.label] = operation
    return found


def _excerpt(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _send(client: TestClient, case: Any, headers: dict[str, str]) -> Any:
    kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
    body: dict[str, Any] = {}
    if "json" in kwargs:
        body["content"] = json.dumps(kwargs["json"]).encode()
    elif kwargs.get("data") is not None:
        data = kwargs["data"]
        body["content"] = data.encode() if isinstance(data, str) else data
    request_headers = {k: str(v) for k, v in kwargs["headers"].items()}
    if "json" in kwargs:
        request_headers.setdefault("Content-Type", "application/json")
    response = client.request(kwargs["method"], kwargs["url"], headers=request_headers,
                              params=kwargs.get("params"), **body)  # fmt: skip
    return response, kwargs


def fuzz(
    fixture: Fixture,
    operation: APIOperation,
    role: str,
    mode: GenerationMode,
    max_examples: int,
    tally: Tally,
    *,
    real_ids: bool = False,
) -> None:
    """``max_examples`` generated requests to ``operation``; every finding into ``tally``.
    ``real_ids``: path parameters name the fixture's objects instead of random ones."""
    path = {
        k: v for k, v in fixture.path_values.items() if real_ids and "{" + k + "}" in operation.path
    }
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path or None)

    @settings(
        max_examples=max_examples, derandomize=True, deadline=None, database=None,
        phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    @given(case=strategy)
    def run(case: Any) -> None:
        response, sent = _send(fixture.client, case, fixture.headers[role])
        tally.requests += 1
        tally.statuses[response.status_code] = tally.statuses.get(response.status_code, 0) + 1
        try:
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, BaseExceptionGroup) as error:  # a group of each failed check
            tally.findings.append(Finding(
                operation=operation.label, role=role, mode=mode.value,
                status=response.status_code,
                request=_excerpt({k: sent[k] for k in SENT_KEYS if sent.get(k) is not None}),
                response=_excerpt(response.text),
                failures=_excerpt(" | ".join(_failure_titles(error)), 600),
            ))  # fmt: skip

    # Unsatisfiable: no negative cases for an operation that takes no input.
    with contextlib.suppress(Unsatisfiable):
        run()


def _failure_titles(error: BaseException) -> Iterator[str]:
    children = getattr(error, "exceptions", None)
    if children:
        for child in children:
            yield from _failure_titles(child)
    else:
        lines = str(error).strip().splitlines()
        yield f"{type(error).__name__}: {lines[0] if lines else ''}"
