"""Paths an unprivileged jobs user can reach, for tests that run jobs as one."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from raydc.cluster.jobs_user import JobsUser, first_unreachable


def open_path_to(path: Path, user: JobsUser) -> None:
    """Let ``user`` pass through every directory on the way to ``path`` (pytest makes its
    temp dirs 0700): traverse only, no listing, nothing readable that was not."""
    path.mkdir(parents=True, exist_ok=True)
    while (blocked := first_unreachable(path, user)) is not None:
        os.chmod(blocked, stat.S_IMODE(blocked.stat().st_mode) | stat.S_IXOTH)
