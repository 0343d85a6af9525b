"""The unprivileged OS user a local Ray head, and every job on it, runs as.

A control plane that runs as root (CI, containers) must not hand root to tenants' code:
its local head then runs as another user (``nobody`` unless ``RAYDC_JOBS_USER`` names
one), which can reach the artifact store and Ray's own files but not the control plane's
database, admin token or environment. A control plane that is not root runs its head as
itself: a job could then read what that user can, which is the developer's own laptop
(SECURITY.md says so).
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_JOBS_USER = "nobody"


@dataclass(frozen=True)
class JobsUser:
    name: str
    uid: int
    gid: int


class JobsUserError(RuntimeError):
    """The jobs user cannot be used: unknown, or cannot reach what jobs need."""


def resolve_jobs_user(setting: str) -> JobsUser | None:
    """``auto``: ``nobody`` when this process is root, else no switch; ``none``: never
    switch; a user name: that user (which needs root to switch to)."""
    choice = setting.strip()
    if choice.lower() == "none" or (choice.lower() == "auto" and os.geteuid() != 0):
        return None
    name = DEFAULT_JOBS_USER if choice.lower() == "auto" else choice
    try:
        entry = pwd.getpwnam(name)
    except KeyError as error:
        raise JobsUserError(f"RAYDC_JOBS_USER: no such user '{name}'") from error
    if entry.pw_uid == 0:
        raise JobsUserError("RAYDC_JOBS_USER: jobs must not run as root (none: as this user)")
    if entry.pw_uid == os.geteuid():
        return None
    if os.geteuid() != 0:
        raise JobsUserError(
            f"RAYDC_JOBS_USER={name}: only root can run the local Ray head as another user"
        )
    return JobsUser(name=name, uid=entry.pw_uid, gid=entry.pw_gid)


def _may(info: os.stat_result, user: JobsUser, owner: int, group: int, other: int) -> bool:
    if info.st_uid == user.uid:
        return bool(info.st_mode & owner)
    if info.st_gid == user.gid:
        return bool(info.st_mode & group)
    return bool(info.st_mode & other)


def _ancestors(path: Path) -> Iterator[Path]:
    resolved = path.resolve()
    yield from reversed(resolved.parents)
    yield resolved


def first_unreachable(path: Path, user: JobsUser) -> Path | None:
    """The first directory on the way to ``path`` that ``user`` cannot pass through."""
    for directory in _ancestors(path):
        try:
            info = directory.stat()
        except OSError:
            return directory
        if stat.S_ISDIR(info.st_mode) and not _may(
            info, user, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH
        ):
            return directory
    return None


def check_reachable(path: Path, user: JobsUser, what: str) -> None:
    blocked = first_unreachable(path, user)
    if blocked is not None:
        raise JobsUserError(
            f"the jobs user '{user.name}' cannot reach {what} {path}: {blocked} is closed to "
            f"it (mode {stat.filemode(blocked.stat().st_mode)}). Put {what} where that user "
            "can pass through, or set RAYDC_JOBS_USER=none to run jobs as this user "
            "(they can then read what it can: SECURITY.md)"
        )


def check_python(user: JobsUser) -> None:
    """The head runs this interpreter (and its raydc) as ``user``: it must be able to."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", "import raydc"], user=user.uid, group=user.gid,
            extra_groups=[], capture_output=True, text=True, timeout=60, cwd="/",
            env={"PATH": os.environ.get("PATH", "")},
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as error:
        raise JobsUserError(
            f"the jobs user '{user.name}' cannot run {sys.executable}: {error}"
        ) from error
    if done.returncode != 0:
        raise JobsUserError(
            f"the jobs user '{user.name}' cannot import raydc with {sys.executable}: "
            f"{done.stderr.strip().splitlines()[-1:] or done.returncode}"
        )


def hand_over(path: Path, user: JobsUser, mode: int = 0o700) -> None:
    """Make ``path`` (a directory, created if missing) and everything in it the jobs
    user's own."""
    path.mkdir(parents=True, exist_ok=True)
    for root, directories, files in os.walk(path):
        for name in (root, *(os.path.join(root, d) for d in directories),
                     *(os.path.join(root, f) for f in files)):  # fmt: skip
            info = os.lstat(name)
            if info.st_uid != user.uid or info.st_gid != user.gid:
                os.chown(name, user.uid, user.gid, follow_symlinks=False)
    os.chmod(path, mode)
