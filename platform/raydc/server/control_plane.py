"""Everything one running control plane holds: settings, database, cluster link, loops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from raydc.server.cluster_link import ClusterLink
from raydc.server.deployer import DeploymentReconciler
from raydc.server.lease import Lease, replica_id
from raydc.server.process_metrics import Metrics
from raydc.server.reconciler import JobReconciler
from raydc.server.services.jobs import SubmitContext
from raydc.server.services.tokens import TokenAuthenticator, bootstrap_admin_token
from raydc.server.state_dirs import jobs_user_for, secure_state
from raydc.server.submissions import SubmissionBatcher
from raydc.settings import Settings
from raydc.specs.capacity import largest
from raydc.store import migrate
from raydc.store.db import make_engine, make_session_factory, transaction

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class ControlPlane:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    authenticator: TokenAuthenticator
    link: ClusterLink
    reconciler: JobReconciler
    deployer: DeploymentReconciler
    metrics: Metrics
    # Where job submissions are written (in batches, see submissions.py): one thread on
    # SQLite, which has a single writer anyway; other routes use the request thread pool.
    db_executor: ThreadPoolExecutor
    submissions: SubmissionBatcher = field(init=False)

    def __post_init__(self) -> None:
        self.submissions = SubmissionBatcher(self.sessions, self.run_db, self.submit_context)

    def submit_context(self) -> SubmitContext:
        capacity = self.link.capacity
        if capacity is not None and self.reconciler.node_types:
            # A cluster that autoscales is refused only what its largest size cannot hold.
            capacity = largest(capacity, self.reconciler.node_types)
        return SubmitContext(apps_dir=self.settings.apps_dir, capacity=capacity)

    @classmethod
    def create(cls, settings: Settings) -> ControlPlane:
        # A local head's jobs run as an unprivileged user when this process is root.
        jobs_user = jobs_user_for(settings)
        secure_state(settings, jobs_user)
        engine = make_engine(settings.resolved_database_url)
        migrate.upgrade(engine)
        sessions = make_session_factory(engine)
        metrics = Metrics()
        with transaction(sessions) as session:
            bootstrap_admin_token(session, settings.admin_token, settings.admin_token_path)
        link = ClusterLink(settings, jobs_user)
        reconciler = JobReconciler(settings, sessions, link)
        reconciler.observer = metrics  # scheduling pass duration, admission waits
        deployer = DeploymentReconciler(settings, sessions, link)
        holder = settings.replica_id or replica_id(settings.home)
        reconciler.lease = Lease(sessions, "jobs", holder, settings.leader_lease_s)
        deployer.lease = Lease(sessions, "deployments", holder, settings.leader_lease_s)
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            authenticator=TokenAuthenticator(sessions),
            link=link,
            reconciler=reconciler,
            deployer=deployer,
            metrics=metrics,
            db_executor=ThreadPoolExecutor(
                max_workers=1 if engine.dialect.name == "sqlite" else 8,
                thread_name_prefix="raydc-db",
            ),
        )

    async def run_db(self, work: Callable[[], T]) -> T:
        """Run blocking database work on the database threads, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.db_executor, work)

    @contextmanager
    def tx(self) -> Iterator[Session]:
        """One request's unit of work: committed on success, rolled back on any error."""
        with transaction(self.sessions) as session:
            yield session

    def start(self) -> None:
        self.reconciler.start()
        self.deployer.start()

    def shutdown(self) -> None:
        self.deployer.stop()
        self.reconciler.stop()
        self.db_executor.shutdown(wait=True)
        self.link.close()
        self.engine.dispose()
