"""GET /metrics names every tenant's jobs and deployments: only admin and monitor tokens
may read it, with the bearer token Prometheus' `authorization` scrape setting sends."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.unit.factories import ADMIN, auth, make_tenant, make_token, train_spec


def test_metrics_need_a_bearer_token(api: TestClient) -> None:
    response = api.get("/metrics")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "raydc_jobs" not in response.text
    assert api.get("/metrics", headers=auth("rdc_not-a-real-token")).status_code == 401


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_tenant_roles_may_not_read_metrics(api: TestClient, role: str) -> None:
    make_tenant(api, "team-a")
    response = api.get("/metrics", headers=make_token(api, "team-a", role))
    assert response.status_code == 403
    assert "raydc_jobs" not in response.text


def test_a_monitor_token_reads_every_tenants_counts(api: TestClient) -> None:
    make_tenant(api, "team-a")
    assert api.post("/v1/jobs", json=train_spec(), headers=make_token(api, "team-a")).status_code
    monitor = make_token(api, "default", "monitor")
    response = api.get("/metrics", headers=monitor)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'raydc_jobs{priority="normal",status="PENDING",tenant="team-a"} 1.0' in response.text
    assert api.get("/metrics", headers=ADMIN).status_code == 200
