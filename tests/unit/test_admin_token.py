"""The admin token is generated once into a 0600 file, and never logged."""

import logging
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from raydc.security.tokens import generate_token
from raydc.server import main
from raydc.server.app import create_app
from raydc.settings import Settings

OLD = "rdc_old-admin-token-0123456789abcdef"
NEW = "rdc_new-admin-token-0123456789abcdef"


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
    old = Settings(home=tmp_path / "h", database_url=database, admin_token=OLD)
    with TestClient(create_app(old, run_reconciler=False)) as api:
        assert api.get("/v1/tenants", headers=bearer(OLD)).status_code == 200
    new = Settings(home=tmp_path / "h", database_url=database, admin_token=NEW)
    with TestClient(create_app(new, run_reconciler=False)) as api:
        assert api.get("/v1/tenants", headers=bearer(NEW)).status_code == 200
        assert api.get("/v1/tenants", headers=bearer(OLD)).status_code == 401


# ---- weak and placeholder admin tokens are refused at start ----------------------------

SECRET_YAML = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "secret.yaml"


def shipped_placeholder() -> str:
    (secret, *_) = yaml.safe_load_all(SECRET_YAML.read_text())
    token: str = secret["stringData"]["RAYDC_ADMIN_TOKEN"]
    return token


@pytest.mark.parametrize(
    "token", ["a", "rdc_unit-test-admin-token", "rdc_CHANGE-ME-admin-token", "x" * 31]
)
def test_a_short_or_placeholder_admin_token_is_refused(token: str) -> None:
    with pytest.raises(ValueError, match=r"secrets\.token_urlsafe"):
        Settings(admin_token=token)


def test_the_kubernetes_placeholder_is_long_but_still_refused() -> None:
    placeholder = shipped_placeholder()
    assert len(placeholder) >= 32  # refused for being the placeholder, not for its length
    with pytest.raises(ValueError, match="placeholder"):
        Settings(admin_token=placeholder)


def test_a_generated_token_is_accepted() -> None:
    token = generate_token()
    assert Settings(admin_token=token).admin_token == token


def test_the_server_refuses_a_weak_admin_token_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RAYDC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RAYDC_ADMIN_TOKEN", "a")
    monkeypatch.setattr(main.uvicorn, "run", lambda *a, **k: pytest.fail("server started"))
    with pytest.raises(SystemExit) as exited:
        main.serve()
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1, error
    assert "RAYDC_ADMIN_TOKEN" in error and "secrets.token_urlsafe(32)" in error
    assert "Traceback" not in error


def test_the_server_refuses_a_weak_token_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "admin_token").write_text("rdc_short\n")
    monkeypatch.setenv("RAYDC_HOME", str(home))
    monkeypatch.delenv("RAYDC_ADMIN_TOKEN", raising=False)
    monkeypatch.setattr(main.uvicorn, "run", lambda *a, **k: pytest.fail("server started"))
    with pytest.raises(SystemExit) as exited:
        main.serve()
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert str(home / "admin_token") in error and len(error.strip().splitlines()) == 1
