"""Bounds on what one client's connections can hold: time to send a request, and
requests in flight at once.

Uvicorn's keep-alive timeout starts only after a first response, and any byte cancels
it, so a connection that never finishes its headers (or its body) is held forever; a few
hundred of them from one host take the server's file descriptors. The protocol below
gives each connection a deadline for its request headers, counted from the connect or
from the previous response, and a limit on how long a request body may go quiet. The
middleware caps how many requests one peer address has in flight, answering 429 past
it, so one client cannot take every worker thread from the others.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from raydc.settings import Settings

_TIMEOUT_BODY = b'{"detail":"request not sent in time"}'
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\n\r\n" + _TIMEOUT_BODY
)


class DeadlineHttpProtocol(HttpToolsProtocol):
    """Uvicorn's httptools protocol with a deadline for headers and for a quiet body.

    ``header_timeout_s`` runs from the connect, and again from each response, until the
    next request's headers are complete; ``body_idle_timeout_s`` runs while a request
    body is incomplete and restarts with each chunk (not while the server itself has
    stopped reading). On expiry the connection is closed, with a 408 if the client had
    begun a request.
    """

    header_timeout_s: float = 10.0
    body_idle_timeout_s: float = 30.0

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._deadline: asyncio.TimerHandle | None = None
        self._request_begun = False

    def _arm(self, delay_s: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(delay_s, self._expire, delay_s)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self, delay_s: float) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.flow is not None and self.flow.read_paused:
            self._arm(delay_s)  # the server stopped reading, not the client
            return
        if self._request_begun:
            self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._request_begun = True

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        # Disarmed again at once by on_message_complete when there is no body.
        self._arm(self.body_idle_timeout_s)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        # Once answered (a 401 before the body was read), the header deadline for the
        # next request runs, and the rest of this body must not postpone it.
        if self.cycle is not None and not self.cycle.response_complete:
            self._arm(self.body_idle_timeout_s)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._request_begun = False
        if self.cycle is not None and not self.cycle.response_complete:
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # A pipelined request already has its headers; otherwise wait for the next one.
        if self.cycle.response_complete and not self.transport.is_closing():
            self._arm(self.header_timeout_s)


def http_protocol(settings: Settings) -> type[DeadlineHttpProtocol]:
    """The protocol class with ``settings``' deadlines, for ``uvicorn.run(http=...)``."""
    return type(
        "RaydcHttpProtocol",
        (DeadlineHttpProtocol,),
        {
            "header_timeout_s": settings.http_header_timeout_s,
            "body_idle_timeout_s": settings.http_body_idle_timeout_s,
        },
    )


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Everything ``uvicorn.run`` takes from settings; `raydc server` and benchmarks share it."""
    return {
        "host": settings.host,
        "port": settings.port,
        "http": http_protocol(settings),
        "timeout_keep_alive": settings.http_keep_alive_timeout_s,
        "log_level": settings.log_level.lower(),
        "access_log": False,
    }


class ClientConcurrencyLimit:
    """At most ``limit`` requests in flight per peer address; 429 + Retry-After past it.

    Behind a proxy every request has the proxy's address: raise the limit (or set 0, no
    limit) there, and let the proxy bound each client.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        retry_after_s: int = 1,
        exempt_paths: frozenset[str] = frozenset({"/healthz"}),
    ) -> None:
        self.app = app
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.exempt_paths = exempt_paths
        self.in_flight: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.limit <= 0 or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        peer = client[0] if client else ""
        count = self.in_flight.get(peer, 0)
        if count >= self.limit:
            response = JSONResponse(
                {"detail": f"more than {self.limit} requests in flight from {peer}; retry"},
                status_code=429,
                headers={"Retry-After": str(self.retry_after_s)},
            )
            await response(scope, receive, send)
            return
        self.in_flight[peer] = count + 1
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            pass  # the client left mid-body (or its body deadline passed): no one to answer
        finally:
            left = self.in_flight[peer] - 1
            if left:
                self.in_flight[peer] = left
            else:
                del self.in_flight[peer]
