"""One handle on a Ray cluster: its Jobs API and its nodes."""

from __future__ import annotations

import os
from pathlib import Path

from raydc.cluster.jobs import RayJobs
from raydc.cluster.state import NodeInfo, list_nodes


def default_ray_token() -> str | None:
    """Ray's own lookup order: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"]
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    candidate = Path(path) if path else Path.home() / ".ray" / "auth_token"
    try:
        return candidate.read_text().strip() or None
    except OSError:
        return None


class RayCluster:
    def __init__(self, dashboard_url: str, auth_token: str | None) -> None:
        self.dashboard_url = dashboard_url.rstrip("/")
        self.auth_token = auth_token
        self.jobs = RayJobs(self.dashboard_url, auth_token)

    def nodes(self) -> list[NodeInfo]:
        return list_nodes(self.dashboard_url, self.auth_token)
