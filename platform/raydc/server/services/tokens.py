"""API tokens: create (shown once), list, revoke, authenticate, bootstrap the admin token,
and the short-lived token a job runs with."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from raydc.security.rbac import Principal
from raydc.security.tokens import generate_token, hash_token
from raydc.server.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from raydc.server.services.tenants import DEFAULT_TENANT, ensure_tenant, get_tenant
from raydc.settings import check_admin_token
from raydc.specs.tenants import Role, TokenCreate
from raydc.store.models import ApiTokenRow, utcnow

log = logging.getLogger(__name__)
BOOTSTRAP_TOKEN_NAME = "bootstrap-admin"
JOB_TOKEN_PREFIX = "job:"
# The roles a member may revoke in its own tenant: its peers' and those below it, the way
# a namespace's `edit` role in Kubernetes may delete that namespace's service-account
# tokens but grants nothing beyond it.
_MEMBER_REVOCABLE = frozenset({Role.MEMBER.value, Role.VIEWER.value})


def create_token(session: Session, request: TokenCreate) -> tuple[ApiTokenRow, str]:
    get_tenant(session, request.tenant)
    # Reserved names: the bootstrap token is found by its name, a job's token by its prefix.
    if request.name == BOOTSTRAP_TOKEN_NAME or request.name.startswith(JOB_TOKEN_PREFIX):
        raise InvalidInput.field(("name",), f"'{request.name}' is a name raydc reserves")
    expires_at = (
        utcnow() + timedelta(seconds=request.expires_in_s)
        if request.expires_in_s is not None
        else None
    )
    token = generate_token()
    row = ApiTokenRow(
        id=str(uuid.uuid4()), tenant=request.tenant, role=request.role.value,
        name=request.name, token_hash=hash_token(token), expires_at=expires_at,
    )  # fmt: skip
    session.add(row)
    session.flush()
    return row, token


def issue_job_token(session: Session, tenant: str, job_id: str, ttl_s: float) -> str:
    """A token for one job to call the API with: a VIEWER of the job's tenant, marked with
    the job's id, expiring after ``ttl_s``. Returned once; only its hash is stored."""
    token = generate_token()
    session.add(
        ApiTokenRow(
            id=str(uuid.uuid4()), tenant=tenant, role=Role.VIEWER.value,
            name=f"{JOB_TOKEN_PREFIX}{job_id}", token_hash=hash_token(token),
            expires_at=utcnow() + timedelta(seconds=ttl_s), job_id=job_id,
        )
    )  # fmt: skip
    session.flush()
    return token


def revoke_job_tokens(session: Session, job_id: str) -> int:
    """Revoke every live token of a job; how many were. Replicas that cached one stop
    accepting it within the authentication cache's lifetime (TokenAuthenticator)."""
    result = session.execute(
        update(ApiTokenRow)
        .where(ApiTokenRow.job_id == job_id, ApiTokenRow.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def list_tokens(
    session: Session,
    principal: Principal,
    tenant: str | None = None,
    include_inactive: bool = False,
    limit: int = 500,
    offset: int = 0,
) -> list[ApiTokenRow]:
    """Tokens newest first: an admin's of every tenant (or of ``tenant``), anyone else's of
    their own tenant only. Revoked and expired ones only with ``include_inactive``."""
    if tenant is not None and not principal.sees_tenant(tenant):
        raise NotFound(f"tenant '{tenant}' not found")
    if tenant is not None:
        get_tenant(session, tenant)
    scope = tenant if tenant is not None else None if principal.is_admin else principal.tenant
    query = select(ApiTokenRow)
    if scope is not None:
        query = query.where(ApiTokenRow.tenant == scope)
    if not include_inactive:
        query = query.where(
            ApiTokenRow.revoked_at.is_(None),
            or_(ApiTokenRow.expires_at.is_(None), ApiTokenRow.expires_at > utcnow()),
        )
    query = query.order_by(ApiTokenRow.created_at.desc(), ApiTokenRow.id).limit(limit)
    return list(session.scalars(query.offset(offset)))


def _may_revoke(principal: Principal, row: ApiTokenRow) -> bool:
    if principal.is_admin or row.id == principal.token_id:
        return True  # any token may revoke itself
    return principal.role is Role.MEMBER and row.role in _MEMBER_REVOCABLE


def revoke_token(session: Session, principal: Principal, token_id: str) -> ApiTokenRow:
    """Revoke a token (again is a no-op). Another tenant's token is not found; a member
    revokes its tenant's member and viewer tokens, a viewer only itself, an admin any but
    the bootstrap token, which the server would otherwise re-create at its next start."""
    row = session.get(ApiTokenRow, token_id)
    if row is None or not principal.sees_tenant(row.tenant):
        raise NotFound(f"token '{token_id}' not found")
    if not _may_revoke(principal, row):
        raise Forbidden(f"role '{principal.role.value}' may not revoke a {row.role} token")
    if row.revoked_at is not None:
        return row
    if row.name == BOOTSTRAP_TOKEN_NAME:
        raise Conflict(
            "the bootstrap admin token comes from RAYDC_ADMIN_TOKEN (or RAYDC_HOME/admin_token) "
            "at every start: rotate it there and restart; the old one is revoked then"
        )
    row.revoked_at = utcnow()
    return row


def bootstrap_admin_token(session: Session, configured: str | None, token_path: Path) -> None:
    """Make sure an admin token exists: the configured one, or one generated into a file.

    The token is written with mode 0600 and never logged; only its path is. A weak one
    (settings.check_admin_token) is refused with InsecureAdminToken.
    """
    ensure_tenant(session, DEFAULT_TENANT)
    token = configured
    if token is None:
        if token_path.exists():
            token = check_admin_token(token_path.read_text().strip(), str(token_path))
        else:
            token = generate_token()
            token_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(token + "\n")
        log.info("admin token: %s", token_path)
    else:
        check_admin_token(token)
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


@dataclass(frozen=True)
class _Cached:
    until: float  # monotonic
    expires_at: float | None  # wall clock (epoch seconds); None = never
    principal: Principal


class TokenAuthenticator:
    """Token -> principal, with a short cache so a request costs no DB round trip.

    The cache holds hashes only. A token revoked through this replica leaves its cache at
    once (``forget``); other replicas stop accepting it within ``ttl_s``. An expiring token
    is never served past its expiry. ``last_used_at`` is written on a cache miss only, and
    not if another replica wrote it within ``ttl_s``: at most one write per token per
    cache lifetime per replica, none on the hot path.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        ttl_s: float = 10.0,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._session_factory = session_factory
        self._ttl_s = ttl_s
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    def _hit(self, digest: str) -> Principal | None:
        with self._lock:
            hit = self._cache.get(digest)
        if hit is None or hit.until <= self._monotonic():
            return None
        if hit.expires_at is not None and hit.expires_at <= self._wall_clock():
            return None
        return hit.principal

    def cached(self, token: str) -> Principal | None:
        """The principal if the token was seen within the TTL (no database access)."""
        return self._hit(hash_token(token))

    def forget(self, token_id: str) -> None:
        """Drop a token from this replica's cache (it was just revoked here)."""
        with self._lock:
            for digest in [
                d for d, hit in self._cache.items() if hit.principal.token_id == token_id
            ]:
                del self._cache[digest]

    def authenticate(self, token: str) -> Principal:
        digest = hash_token(token)
        hit = self._hit(digest)
        if hit is not None:
            return hit
        until = self._monotonic() + self._ttl_s
        with self._session_factory() as session:
            row = session.scalar(
                select(ApiTokenRow).where(
                    ApiTokenRow.token_hash == digest, ApiTokenRow.revoked_at.is_(None)
                )
            )
            if row is None:
                raise Unauthorized("invalid or revoked token")
            now = self._wall_clock()
            expires_at = row.expires_at.timestamp() if row.expires_at is not None else None
            if expires_at is not None and expires_at <= now:
                raise Unauthorized("token expired")
            principal = Principal(
                token_id=row.id, tenant=row.tenant, role=Role(row.role), name=row.name,
                job_id=row.job_id,
            )  # fmt: skip
            if row.last_used_at is None or row.last_used_at.timestamp() <= now - self._ttl_s:
                self._record_use(session, row.id, now)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = _Cached(until, expires_at, principal)
        return principal

    def _record_use(self, session: Session, token_id: str, now: float) -> None:
        used_at = datetime.fromtimestamp(now, UTC)
        recent = datetime.fromtimestamp(now - self._ttl_s, UTC)
        try:
            # Guarded: of replicas missing their caches at once, one writes.
            session.execute(
                update(ApiTokenRow)
                .where(
                    ApiTokenRow.id == token_id,
                    or_(ApiTokenRow.last_used_at.is_(None), ApiTokenRow.last_used_at <= recent),
                )
                .values(last_used_at=used_at)
            )
            session.commit()
        except SQLAlchemyError as error:  # a busy database never fails a request over this
            session.rollback()
            log.warning("last use of token %s not recorded: %s", token_id, error)
