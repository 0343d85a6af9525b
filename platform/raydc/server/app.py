"""The FastAPI application: routers, one domain-error handler, and the lifespan."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from raydc import __version__
from raydc.server.connections import ClientConcurrencyLimit
from raydc.server.control_plane import ControlPlane
from raydc.server.docs import install_docs
from raydc.server.errors import DomainError
from raydc.server.http_metrics import RequestMetricsMiddleware, RequestObserver
from raydc.server.openapi import install_openapi
from raydc.server.routes import (
    admin,
    auth,
    cluster,
    code,
    deployments,
    jobs,
    metrics,
    models,
    tokens,
)
from raydc.settings import Settings
from raydc.specs.status import IllegalTransition

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, run_reconciler: bool = True) -> FastAPI:
    """Build the app; ``run_reconciler=False`` serves the API without touching Ray (tests)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cp = await run_in_threadpool(ControlPlane.create, settings)
        app.state.control_plane = cp
        # Ray's and SQLAlchemy's import-time objects are long-lived: keep them out of
        # the collector's full passes, which otherwise stall every request ~150 ms.
        gc.freeze()
        if run_reconciler:
            cp.start()
        try:
            yield
        finally:
            await run_in_threadpool(cp.shutdown)

    # /docs and /redoc come from install_docs: FastAPI's own load from a CDN.
    app = FastAPI(title="raydc", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None)  # fmt: skip
    app.add_middleware(ClientConcurrencyLimit, limit=settings.max_requests_per_client)

    def request_observer() -> RequestObserver | None:
        cp: ControlPlane | None = getattr(app.state, "control_plane", None)
        return cp.metrics if cp is not None else None

    app.add_middleware(RequestMetricsMiddleware, observer=request_observer)

    @app.exception_handler(DomainError)
    async def domain_error(_: Request, error: DomainError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if error.status_code == 401 else None
        return JSONResponse(
            {"detail": error.detail}, status_code=error.status_code, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes each bad input back, which may be a number JSON
        # cannot carry (Infinity, NaN: a 500) or a secret: the detail names the field
        # and says what is wrong, no more.
        detail = [
            {"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]}
            for item in error.errors()
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(IllegalTransition)
    async def illegal_transition(_: Request, error: IllegalTransition) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=409)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    for router in (
        admin.router,
        tokens.router,
        metrics.router,
        auth.router,
        code.router,
        jobs.router,
        models.router,
        cluster.router,
        deployments.router,
    ):
        app.include_router(router)
    install_openapi(app)
    install_docs(app)
    return app
