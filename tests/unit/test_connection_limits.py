"""Connection limits on a real uvicorn server (a thread on a loopback port, no Ray):
deadlines for headers and quiet bodies, and the per-client in-flight limit."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from raydc.server.app import create_app
from raydc.server.connections import uvicorn_options
from raydc.settings import Settings
from tests.conftest import free_port
from tests.unit.factories import ADMIN_TOKEN


class ThreadServer:
    def __init__(self, settings: Settings) -> None:
        config = uvicorn.Config(
            create_app(settings, run_reconciler=False), **uvicorn_options(settings)
        )
        self.server = uvicorn.Server(config)
        self.port = settings.port
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ThreadServer]]:
    started: list[ThreadServer] = []

    def start(**overrides: object) -> ThreadServer:
        settings = Settings(home=tmp_path / f"home{len(started)}", database_url="sqlite://",
                            admin_token=ADMIN_TOKEN, port=free_port(), log_level="WARNING",
                            ray_address="http://127.0.0.1:9",  # no jobs user, no Ray
                            **overrides)  # fmt: skip
        started.append(ThreadServer(settings))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def connect(server: ThreadServer, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", server.port))
    return sock


def read_until_closed(sock: socket.socket, within_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes; fails if it is still open after ``within_s``."""
    start = time.monotonic()
    sock.settimeout(within_s)
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            pytest.fail(f"still open after {within_s} s; received {received!r}")
        if not chunk:
            return received, time.monotonic() - start
        received += chunk


def test_a_connection_that_never_finishes_its_headers_is_closed(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(http_header_timeout_s=1.0)
    half_sent = connect(server)
    half_sent.sendall(b"GET /heal")
    idle = connect(server)
    received, elapsed = read_until_closed(half_sent, within_s=5)
    assert received.startswith(b"HTTP/1.1 408"), received
    assert elapsed >= 0.8
    assert read_until_closed(idle, within_s=5)[0] == b""  # never began: closed silently


def test_trickling_headers_does_not_postpone_the_deadline(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(http_header_timeout_s=1.0)
    sock = connect(server)
    sock.sendall(b"GET /healthz HTTP/1.1\r\n")
    start = time.monotonic()
    closed = False
    while time.monotonic() - start < 5 and not closed:
        try:
            sock.sendall(b"X-Slow: 1\r\n")
        except OSError:
            closed = True
        time.sleep(0.2)
    assert closed or read_until_closed(sock, within_s=1)


def test_after_a_response_the_next_request_has_the_same_deadline(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(http_header_timeout_s=1.0, http_keep_alive_timeout_s=30)
    sock = connect(server)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.settimeout(5)
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    sock.sendall(b"G")  # a byte cancels uvicorn's keep-alive timer, not this deadline
    received, _ = read_until_closed(sock, within_s=5)
    assert b"HTTP/1.1 408" in received  # after the rest of the first response


def test_a_well_behaved_keep_alive_client_is_served(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(http_header_timeout_s=0.5)
    with httpx.Client(base_url=server.url) as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
            time.sleep(0.2)  # less than the deadline between requests


def slow_submit(server: ThreadServer, source: str = "127.0.0.1") -> socket.socket:
    """POST /v1/jobs whose body never comes: in flight until the body deadline."""
    sock = connect(server, source)
    sock.sendall(
        b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\nContent-Length: 100\r\n\r\n{"
    )
    return sock


def test_a_request_body_that_goes_quiet_is_cut(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(http_body_idle_timeout_s=1.0)
    received, elapsed = read_until_closed(slow_submit(server), within_s=5)
    assert received.startswith(b"HTTP/1.1 408"), received
    assert elapsed >= 0.8
    with httpx.Client(base_url=server.url) as client:  # the server is fine afterwards
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        assert client.get("/v1/auth/whoami", headers=headers).status_code == 200


def test_one_client_past_its_in_flight_limit_gets_429_and_others_are_served(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(max_requests_per_client=4, http_body_idle_timeout_s=30)
    slow = [slow_submit(server) for _ in range(4)]
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=server.url) as client:
        deadline = time.monotonic() + 5
        while (response := client.get("/v1/auth/whoami", headers=headers)).status_code != 429:
            assert time.monotonic() < deadline, "no 429 while 4 requests are in flight"
            time.sleep(0.05)  # the slow requests reach the app
        assert response.headers["Retry-After"] == "1"
        assert "in flight" in response.json()["detail"]
        assert client.get("/healthz").status_code == 200  # probes are never limited
    # Another address is served meanwhile.
    other = connect(server, source="127.0.0.2")
    other.sendall(
        b"GET /v1/auth/whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\n\r\n"
    )
    received, _ = read_until_closed(other, within_s=5)
    assert received.startswith(b"HTTP/1.1 200"), received
    for sock in slow:
        sock.close()
    with httpx.Client(base_url=server.url) as client:  # the slots come back
        deadline = time.monotonic() + 5
        while client.get("/v1/auth/whoami", headers=headers).status_code != 200:
            assert time.monotonic() < deadline, "the limit did not come back down"
            time.sleep(0.05)
