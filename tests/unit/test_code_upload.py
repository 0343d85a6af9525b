"""POST /v1/code: content-addressed, size-limited, and no path may escape."""

import hashlib
import io
import zipfile

from fastapi.testclient import TestClient

from raydc.server.control_plane import ControlPlane
from tests.unit.factories import ADMIN, make_tenant, make_token, train_spec

ZIP = {"content-type": "application/zip"}


def make_zip(files: dict[str, bytes], symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        if symlink is not None:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = 0o120777 << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def upload(api: TestClient, data: bytes, headers: dict[str, str] = ADMIN) -> object:
    return api.post("/v1/code", content=data, headers={**headers, **ZIP})


def test_upload_returns_the_content_address(api: TestClient, control_plane: ControlPlane) -> None:
    data = make_zip({"mypkg/__init__.py": b"", "mypkg/train.py": b"def f(c): pass\n"})
    response = upload(api, data)
    assert response.status_code == 201
    ref = response.json()["ref"]
    assert ref == "sha256:" + hashlib.sha256(data).hexdigest()
    extracted = control_plane.settings.code_dir / ref.removeprefix("sha256:")
    assert (extracted / "mypkg" / "train.py").read_text() == "def f(c): pass\n"
    assert upload(api, data).json()["ref"] == ref  # idempotent


def test_paths_that_escape_are_refused(api: TestClient, control_plane: ControlPlane) -> None:
    for name in ("../evil.py", "a/../../evil.py", "/etc/cron.d/evil", "C:/evil.py"):
        response = upload(api, make_zip({name: b"x"}))
        assert response.status_code == 422, name
        assert response.json()["detail"][0]["loc"] == ["body", "zip"]
    assert not (control_plane.settings.code_dir.parent / "evil.py").exists()


def test_symlinks_are_refused(api: TestClient) -> None:
    response = upload(api, make_zip({"ok.py": b""}, symlink="link"))
    assert response.status_code == 422
    assert "symbolic link" in response.json()["detail"][0]["msg"]


def test_a_body_over_the_limit_is_413(api: TestClient) -> None:
    response = upload(api, b"x" * (64 * 1024 + 1))
    assert response.status_code == 413


def test_a_zip_bomb_is_refused_before_extraction(
    api: TestClient, control_plane: ControlPlane
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.bin", b"\0" * (1024 * 1024))  # compresses to ~1 KB
    response = upload(api, buffer.getvalue())
    assert response.status_code == 413
    assert "unpacks to" in response.json()["detail"]
    assert not any(p.suffix == "" for p in control_plane.settings.code_dir.glob("*"))


def test_not_a_zip_is_422(api: TestClient) -> None:
    assert upload(api, b"definitely not a zip").status_code == 422


def test_a_job_may_only_use_its_own_tenants_code(api: TestClient) -> None:
    make_tenant(api, "team-a")
    make_tenant(api, "team-b")
    a, b = make_token(api, "team-a"), make_token(api, "team-b")
    ref = upload(api, make_zip({"pkg/__init__.py": b""}), headers=a).json()["ref"]
    spec = train_spec(code={"ref": ref}, entrypoint="pkg.train:loop")
    assert api.post("/v1/jobs", json=spec, headers=a).status_code == 201
    refused = api.post("/v1/jobs", json=spec, headers=b)
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "code", "ref"]
