"""The control plane's secrets stay its own: a job's environment is an allowlist, the
state directory is closed, and as root the local head's jobs run as another user."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest

from raydc.cluster.job_env import job_environment
from raydc.cluster.jobs_user import (
    JobsUser,
    JobsUserError,
    first_unreachable,
    resolve_jobs_user,
)
from raydc.server import main
from raydc.server.state_dirs import secure_state
from raydc.settings import Settings
from tests.paths import open_path_to

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_job_inherits_no_secret_of_the_control_plane() -> None:
    server_env = {
        "PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "OMP_NUM_THREADS": "2", "RAY_enable_autoscaler_v2": "1", "NCCL_DEBUG": "INFO",
        "RAYDC_ADMIN_TOKEN": "rdc_admin", "RAYDC_DATABASE_URL": "postgresql://u:pw@db/raydc",
        "RAYDC_MASTER_KEY": "k", "RAY_AUTH_TOKEN": "ray-token", "RAY_ADDRESS": "10.0.0.1:6379",
        "AWS_SECRET_ACCESS_KEY": "aws", "PGPASSWORD": "pw", "GITHUB_TOKEN": "gh",
        "SOME_SERVICE_PASSWORD": "x", "CUDA_VISIBLE_DEVICES": "0",
    }  # fmt: skip
    inherited = job_environment(server_env)
    assert inherited == {
        "PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "OMP_NUM_THREADS": "2", "RAY_enable_autoscaler_v2": "1", "NCCL_DEBUG": "INFO",
        "CUDA_VISIBLE_DEVICES": "0",
    }  # fmt: skip
    # An operator may pass more, never a RAYDC_ variable or Ray's token.
    extra = job_environment(server_env, ["SOME_SERVICE_PASSWORD", "RAYDC_ADMIN_TOKEN",
                                         "RAY_AUTH_TOKEN"])  # fmt: skip
    assert set(extra) - set(inherited) == {"SOME_SERVICE_PASSWORD"}


def test_the_state_directory_and_database_are_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'raydc.db'}")
    old = os.umask(0o022)
    try:
        secure_state(settings, None)
    finally:
        os.umask(old)
    assert mode(home) == 0o700
    assert mode(home / "raydc.db") == 0o600
    # An existing database left readable by an older raydc is closed too.
    os.chmod(home / "raydc.db", 0o644)
    (home / "raydc.db-wal").write_bytes(b"")
    os.chmod(home / "raydc.db-wal", 0o644)
    secure_state(settings, None)
    assert mode(home / "raydc.db") == 0o600 and mode(home / "raydc.db-wal") == 0o600


def test_jobs_user_choices() -> None:
    assert resolve_jobs_user("none") is None
    if os.geteuid() != 0:
        assert resolve_jobs_user("auto") is None
        with pytest.raises(JobsUserError, match="only root"):
            resolve_jobs_user("nobody")
        return
    nobody = pwd.getpwnam("nobody")
    assert resolve_jobs_user("auto") == JobsUser("nobody", nobody.pw_uid, nobody.pw_gid)
    with pytest.raises(JobsUserError, match="no such user"):
        resolve_jobs_user("no-such-user-here")
    with pytest.raises(JobsUserError, match="not run as root"):
        resolve_jobs_user("root")


@as_root
def test_as_root_the_jobs_user_reaches_artifacts_but_no_secret(tmp_path: Path) -> None:
    user = resolve_jobs_user("auto")
    assert user is not None
    open_path_to(tmp_path, user)
    home = tmp_path / "home"
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'raydc.db'}")
    secure_state(settings, user)
    assert mode(home) == 0o710 and home.stat().st_gid == user.gid
    assert mode(home / "raydc.db") == 0o600 and (home / "raydc.db").stat().st_uid == 0
    for own in (settings.runs_dir, settings.jobs_dir):
        assert own.stat().st_uid == user.uid
    assert settings.code_dir.stat().st_uid == 0 and mode(settings.code_dir) == 0o755
    assert first_unreachable(settings.runs_dir, user) is None


@as_root
def test_as_root_an_artifact_store_the_jobs_user_cannot_reach_is_refused(tmp_path: Path) -> None:
    user = resolve_jobs_user("auto")
    assert user is not None
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    settings = Settings(home=tmp_path / "home", artifact_dir=closed / "artifacts",
                        database_url="sqlite://")  # fmt: skip
    with pytest.raises(JobsUserError, match="cannot reach the artifact store"):
        secure_state(settings, user)


@as_root
def test_raydc_server_refuses_in_one_line_when_the_jobs_user_is_shut_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    monkeypatch.setenv("RAYDC_JOBS_USER", "auto")
    monkeypatch.setenv("RAYDC_HOME", str(closed / "home"))
    with pytest.raises(SystemExit) as stopped:
        main._load_settings({})
    assert stopped.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "cannot reach the artifact store" in line and "RAYDC_JOBS_USER=none" in line
