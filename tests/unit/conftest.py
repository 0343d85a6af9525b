"""Unit-test fixtures: the app on a fresh in-memory SQLite database, no Ray."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from raydc.server.app import create_app
from raydc.server.control_plane import ControlPlane
from raydc.settings import Settings
from tests.unit.factories import ADMIN_TOKEN


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
