"""Factories for unit tests: tenants, tokens and job specs made through the API."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

ADMIN_TOKEN = "rdc_unit-test-admin-token-0123456789abcdef"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ADMIN = auth(ADMIN_TOKEN)


def make_tenant(api: TestClient, name: str, **quota: float) -> None:
    response = api.post("/v1/tenants", json={"name": name, "quota": quota}, headers=ADMIN)
    assert response.status_code == 201, response.text


def make_token(api: TestClient, tenant: str, role: str = "member") -> dict[str, str]:
    response = api.post(
        "/v1/tokens", json={"tenant": tenant, "role": role, "name": f"{role}-t"}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    return auth(response.json()["token"])


def train_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "kind": "train",
        "name": "sentiment",
        "code": {"app": "sentiment"},
        "entrypoint": "sentiment.train:train_loop",
        "config": {"epochs": 1},
        "resources": {"workers": {"min": 1, "max": 2}, "cpus_per_worker": 1},
    }
    spec.update(overrides)
    return spec


def tune_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "kind": "tune",
        "name": "search",
        "code": {"app": "sentiment"},
        "entrypoint": "sentiment.train:train_loop",
        "config": {"epochs": 3},
        "search_space": {"lr": {"loguniform": [0.001, 0.05]}},
        "metric": "accuracy",
        "mode": "max",
    }
    spec.update(overrides)
    return spec
