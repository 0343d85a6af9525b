"""The admin token is generated once into a 0600 file, and never logged."""

import logging
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from raydc.server.app import create_app
from raydc.settings import Settings


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_generated_admin_token_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, database_url_for: Callable[..., str]
) -> None:
    database = database_url_for(f"sqlite:///{tmp_path / 'db'}")
    settings = Settings(home=tmp_path / "home", database_url=database)
    caplog.set_level(logging.INFO)
    with TestClient(create_app(settings, run_reconciler=False)) as api:
        path = settings.admin_token_path
        token = path.read_text().strip()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert (
            api.get("/v1/tenants", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        )
    assert str(path) in caplog.text
    assert token not in caplog.text
    # A restart keeps the same token.
    with TestClient(create_app(settings, run_reconciler=False)) as api:
        assert path.read_text().strip() == token
        assert (
            api.get("/v1/tenants", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        )


def test_a_rotated_admin_token_revokes_the_old_one(
    tmp_path: Path, database_url_for: Callable[..., str]
) -> None:
    database = database_url_for(f"sqlite:///{tmp_path / 'db'}")
    old = Settings(home=tmp_path / "h", database_url=database, admin_token="rdc_old-admin")
    with TestClient(create_app(old, run_reconciler=False)) as api:
        assert api.get("/v1/tenants", headers=bearer("rdc_old-admin")).status_code == 200
    new = Settings(home=tmp_path / "h", database_url=database, admin_token="rdc_new-admin")
    with TestClient(create_app(new, run_reconciler=False)) as api:
        assert api.get("/v1/tenants", headers=bearer("rdc_new-admin")).status_code == 200
        assert api.get("/v1/tenants", headers=bearer("rdc_old-admin")).status_code == 401
