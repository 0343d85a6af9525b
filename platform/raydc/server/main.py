"""``raydc server``: run the control plane under uvicorn."""

from __future__ import annotations

import logging
from typing import Any

import uvicorn

from raydc.server.app import create_app
from raydc.server.connections import uvicorn_options
from raydc.settings import Settings


def serve(host: str | None = None, port: int | None = None) -> None:
    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    settings = Settings(**overrides)
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Ray poll otherwise
    print(f"raydc control plane: http://{settings.host}:{settings.port}", flush=True)
    if settings.admin_token is None:
        print(f"admin token: in {settings.admin_token_path} (mode 0600)", flush=True)
    print(f"state: {settings.home}", flush=True)
    # Header and body deadlines, keep-alive: server/connections.py.
    uvicorn.run(create_app(settings), **uvicorn_options(settings))
