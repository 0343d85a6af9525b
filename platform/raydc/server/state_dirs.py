"""The control plane's state directory, closed to everyone else.

``RAYDC_HOME`` holds the database, the admin token and the local head's files. It is
0700 and its files 0600. When the local head's jobs run as another user
(cluster/jobs_user.py), that user may pass through the home (mode 0710, group = the jobs
user's group) to reach the artifact store inside it, but cannot list it or read any
file of the control plane's. Of the artifact store the jobs user owns what jobs write
(``runs/``, ``jobs/``); uploaded code stays the control plane's, readable, not writable.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from sqlalchemy.engine import make_url

from raydc.cluster.jobs_user import (
    JobsUser,
    check_python,
    check_reachable,
    hand_over,
    resolve_jobs_user,
)
from raydc.settings import Settings


def _sqlite_file(database_url: str) -> Path | None:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).expanduser()


def _private_file(path: Path) -> None:
    """Create ``path`` with mode 0600 if missing (SQLite's -wal and -shm files take the
    database file's mode), and make it 0600 if it exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    os.chmod(path, 0o600)
    for suffix in ("-wal", "-shm", "-journal"):
        sibling = path.with_name(path.name + suffix)
        if sibling.exists():
            os.chmod(sibling, 0o600)


def jobs_user_for(settings: Settings) -> JobsUser | None:
    """Who the local head's jobs run as (None: this process's user, or no local head:
    an external cluster runs its jobs as its own nodes' users); JobsUserError if that
    user cannot run this Python."""
    if settings.ray_address:
        return None
    user = resolve_jobs_user(settings.jobs_user)
    if user is not None:
        check_python(user)
    return user


def secure_state(settings: Settings, jobs_user: JobsUser | None) -> None:
    """Create the state directories with the modes above; called before the database
    is opened, so the database file is never readable by anyone else, not even briefly."""
    settings.ensure_dirs()
    home = settings.home
    if jobs_user is None:
        os.chmod(home, 0o700)
    else:
        os.chown(home, os.geteuid(), jobs_user.gid)
        os.chmod(home, 0o710)
    database = _sqlite_file(settings.resolved_database_url)
    if database is not None:
        _private_file(database)
    if settings.admin_token_path.exists():
        os.chmod(settings.admin_token_path, 0o600)
    if jobs_user is not None:
        artifacts = settings.resolved_artifact_dir
        check_reachable(artifacts, jobs_user, "the artifact store (RAYDC_ARTIFACT_DIR)")
        os.chmod(artifacts, 0o755)
        os.chmod(settings.code_dir, 0o755)
        hand_over(settings.runs_dir, jobs_user)
        hand_over(settings.jobs_dir, jobs_user)
