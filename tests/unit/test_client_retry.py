"""The SDK sends a read again when the server dropped the pooled connection it reused."""

from __future__ import annotations

import httpx
import pytest

from raydc.client import Client


def client_over(handler: httpx.MockTransport) -> Client:
    client = Client("http://raydc.test", "rdc_token")
    client._http = httpx.Client(base_url=client.url, transport=handler)
    return client


def test_a_read_is_sent_again_once_after_a_dropped_connection() -> None:
    calls: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) == 1:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return httpx.Response(200, json={"id": "j1", "status": "RUNNING"})

    assert client_over(httpx.MockTransport(handle)).get_job("j1")["status"] == "RUNNING"
    assert calls == ["GET", "GET"]


def test_a_write_is_not_sent_twice() -> None:
    calls: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")

    with pytest.raises(httpx.RemoteProtocolError):
        client_over(httpx.MockTransport(handle)).cancel_job("j1")
    assert calls == ["POST"]
