"""Request durations by method, route template and status: a pure ASGI middleware.

Not Starlette's BaseHTTPMiddleware, which buffers through a task group and breaks
streaming responses (``GET /v1/jobs/{id}/logs?follow=true``). The route label is the
matched route's template (``/v1/jobs/{job_id}``), never the raw path, so a job id never
becomes a label value and the number of series stays bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "<unmatched>"
# Any other method a client sends is counted as "other": label values stay bounded.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestObserver(Protocol):
    def request_finished(self, method: str, route: str, status: int, seconds: float) -> None: ...


def route_template(scope: Scope) -> str:
    """The template of the route the router matched (set in the scope as it routes)."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) and template else UNMATCHED


class RequestMetricsMiddleware:
    """Times every HTTP request; ``observer()`` says where to report (None: nowhere yet,
    e.g. before the lifespan has built the control plane)."""

    def __init__(self, app: ASGIApp, observer: Callable[[], RequestObserver | None]) -> None:
        self.app = app
        self.observer = observer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before it responds

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            observer = self.observer()
            if observer is not None:
                method = scope["method"] if scope["method"] in METHODS else "other"
                observer.request_finished(
                    method, route_template(scope), status, time.perf_counter() - started
                )
