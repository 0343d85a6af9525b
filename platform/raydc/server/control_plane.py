"""Everything one running control plane holds: settings, database, cluster link, loops."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from raydc.server.cluster_link import ClusterLink
from raydc.server.reconciler import JobReconciler
from raydc.server.services.tokens import TokenAuthenticator, bootstrap_admin_token
from raydc.settings import Settings
from raydc.store import migrate
from raydc.store.db import make_engine, make_session_factory, transaction

log = logging.getLogger(__name__)


@dataclass
class ControlPlane:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    authenticator: TokenAuthenticator
    link: ClusterLink
    reconciler: JobReconciler

    @classmethod
    def create(cls, settings: Settings) -> ControlPlane:
        settings.ensure_dirs()
        engine = make_engine(settings.resolved_database_url)
        migrate.upgrade(engine)
        sessions = make_session_factory(engine)
        with transaction(sessions) as session:
            bootstrap_admin_token(session, settings.admin_token, settings.admin_token_path)
        link = ClusterLink(settings)
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            authenticator=TokenAuthenticator(sessions),
            link=link,
            reconciler=JobReconciler(settings, sessions, link),
        )

    @contextmanager
    def tx(self) -> Iterator[Session]:
        """One request's unit of work: committed on success, rolled back on any error."""
        with transaction(self.sessions) as session:
            yield session

    def start(self) -> None:
        self.reconciler.start()

    def shutdown(self) -> None:
        self.reconciler.stop()
        self.link.close()
        self.engine.dispose()
