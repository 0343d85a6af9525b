"""Unit-test fixtures: the app on a fresh in-memory SQLite database, no Ray."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from raydc.server.app import create_app
from raydc.server.control_plane import ControlPlane
from raydc.settings import Settings
from tests.unit.factories import ADMIN_TOKEN

# No unit test starts a Ray head; as root the default (jobs as `nobody`) would have every
# test's control plane check that `nobody` reaches pytest's 0700 temp dirs.
# tests/unit/test_state_isolation.py tests the jobs user itself.
os.environ.setdefault("RAYDC_JOBS_USER", "none")


@pytest.fixture
def settings(tmp_path: Path, database_url_for: Callable[..., str]) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database_url=database_url_for("sqlite://"),
        admin_token=ADMIN_TOKEN,
        max_code_bytes=64 * 1024,
        max_code_unpacked_bytes=256 * 1024,
    )


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, run_reconciler=False)) as client:
        yield client


@pytest.fixture
def control_plane(api: TestClient) -> ControlPlane:
    return api.app.state.control_plane  # type: ignore[attr-defined, no-any-return]
