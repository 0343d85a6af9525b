"""`raydc server` as a child process, for end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from raydc.cluster.jobs_user import resolve_jobs_user
from tests.conftest import free_port
from tests.paths import open_path_to

RAYDC = str(Path(sys.executable).parent / "raydc")


class Server:
    def __init__(self, home: Path, port: int | None = None, **env_overrides: str) -> None:
        self.home = home
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home.parent / f"server-{time.monotonic_ns()}.log"
        # As root, the server's local head runs jobs as an unprivileged user, which must
        # pass through pytest's 0700 temp dirs to reach the artifact store under home.
        jobs_user = resolve_jobs_user(env_overrides.get("RAYDC_JOBS_USER", "auto"))
        if jobs_user is not None:
            open_path_to(home.parent, jobs_user)
            # and it runs this venv's Python: a checkout under a closed directory (root's
            # home) would have the server refuse to start, saying so.
            open_path_to(Path(sys.prefix), jobs_user)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAYDC_")}
        env.update(RAYDC_HOME=str(home), RAYDC_PORT=str(self.port), RAYDC_LOCAL_RAY_NUM_CPUS="2",
                   RAYDC_RECONCILE_INTERVAL_S="0.5", **env_overrides)  # fmt: skip
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen([RAYDC, "server"], stdout=log, stderr=log, env=env)

    def wait_healthy(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"server not healthy:\n{self.log.read_text()}")

    def cli(
        self, *args: str, token: str, timeout_s: float = 300
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "RAYDC_URL": self.url, "RAYDC_TOKEN": token, "COLUMNS": "200"}
        return subprocess.run(
            [RAYDC, *args], env=env, capture_output=True, text=True, timeout=timeout_s
        )


def processes_under(directory: Path) -> list[str]:
    found = subprocess.run(["pgrep", "-af", str(directory)], capture_output=True, text=True)
    return [line for line in found.stdout.splitlines() if "pgrep" not in line]
