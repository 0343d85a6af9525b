"""``raydc server``: run the control plane under uvicorn."""

from __future__ import annotations

import logging
import sys
from typing import Any, NoReturn

import uvicorn
from pydantic import ValidationError

from raydc.cluster.jobs_user import JobsUserError
from raydc.server.app import create_app
from raydc.server.connections import uvicorn_options
from raydc.server.state_dirs import jobs_user_for, secure_state
from raydc.settings import InsecureAdminToken, Settings, check_admin_token


def _refuse(reason: str) -> NoReturn:
    print(f"raydc server: {reason}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def _load_settings(overrides: dict[str, Any]) -> Settings:
    """Settings, or one line on stderr and exit 2 (no traceback) for a bad or weak one."""
    try:
        settings = Settings(**overrides)
        path = settings.admin_token_path
        if settings.admin_token is None and path.exists():
            check_admin_token(path.read_text().strip(), str(path))
        # Whom the local head's jobs would run as, and whether that user can (as root).
        jobs_user = jobs_user_for(settings)
        if jobs_user is not None:
            secure_state(settings, jobs_user)
    except (InsecureAdminToken, JobsUserError) as error:
        _refuse(str(error))
    except ValidationError as error:
        _refuse("; ".join(_setting_error(e) for e in error.errors()))
    return settings


def _setting_error(error: Any) -> str:
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, InsecureAdminToken):
        return str(cause)
    name = "RAYDC_" + "_".join(str(part) for part in error["loc"]).upper()
    return f"{name}: {error['msg']}"


def serve(host: str | None = None, port: int | None = None) -> None:
    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    settings = _load_settings(overrides)
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
