"""API tokens: create (shown once), authenticate, bootstrap the admin token."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from raydc.security.rbac import Principal
from raydc.security.tokens import generate_token, hash_token
from raydc.server.errors import Unauthorized
from raydc.server.services.tenants import DEFAULT_TENANT, ensure_tenant, get_tenant
from raydc.specs.tenants import Role, TokenCreate
from raydc.store.models import ApiTokenRow, utcnow

log = logging.getLogger(__name__)
BOOTSTRAP_TOKEN_NAME = "bootstrap-admin"


def create_token(session: Session, request: TokenCreate) -> tuple[ApiTokenRow, str]:
    get_tenant(session, request.tenant)
    token = generate_token()
    row = ApiTokenRow(
        id=str(uuid.uuid4()), tenant=request.tenant, role=request.role.value,
        name=request.name, token_hash=hash_token(token),
    )  # fmt: skip
    session.add(row)
    session.flush()
    return row, token


def bootstrap_admin_token(session: Session, configured: str | None, token_path: Path) -> None:
    """Make sure an admin token exists: the configured one, or one generated into a file.

    The token is written with mode 0600 and never logged; only its path is.
    """
    ensure_tenant(session, DEFAULT_TENANT)
    token = configured
    if token is None:
        if token_path.exists():
            token = token_path.read_text().strip()
        else:
            token = generate_token()
            token_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(token + "\n")
        log.info("admin token: %s", token_path)
    digest = hash_token(token)
    # A rotated admin token replaces the old one instead of adding a second key.
    for stale in session.scalars(
        select(ApiTokenRow).where(
            ApiTokenRow.name == BOOTSTRAP_TOKEN_NAME,
            ApiTokenRow.token_hash != digest,
            ApiTokenRow.revoked_at.is_(None),
        )
    ):
        stale.revoked_at = utcnow()
    if session.scalar(select(ApiTokenRow).where(ApiTokenRow.token_hash == digest)) is None:
        session.add(
            ApiTokenRow(
                id=str(uuid.uuid4()), tenant=DEFAULT_TENANT, role=Role.ADMIN.value,
                name=BOOTSTRAP_TOKEN_NAME, token_hash=digest,
            )
        )  # fmt: skip


class TokenAuthenticator:
    """Token -> principal, with a short cache so a request costs no DB round trip.

    The cache holds hashes only; a revoked token stops working within ``ttl_s``.
    """

    def __init__(self, session_factory: sessionmaker[Session], ttl_s: float = 10.0) -> None:
        self._session_factory = session_factory
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def cached(self, token: str) -> Principal | None:
        """The principal if the token was seen within the TTL (no database access)."""
        with self._lock:
            hit = self._cache.get(hash_token(token))
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def authenticate(self, token: str) -> Principal:
        hit = self.cached(token)
        if hit is not None:
            return hit
        digest = hash_token(token)
        now = time.monotonic()
        with self._session_factory() as session:
            row = session.scalar(
                select(ApiTokenRow).where(
                    ApiTokenRow.token_hash == digest, ApiTokenRow.revoked_at.is_(None)
                )
            )
        if row is None:
            raise Unauthorized("invalid or revoked token")
        principal = Principal(
            token_id=row.id, tenant=row.tenant, role=Role(row.role), name=row.name
        )
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now + self._ttl_s, principal)
        return principal
