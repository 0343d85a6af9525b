"""The reconciler lease: one holder at a time, taken over after expiry or release, and a
scheduling pass that locks it so two replicas' passes never interleave."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from raydc.server.control_plane import ControlPlane
from raydc.server.lease import Lease
from raydc.store import migrate
from raydc.store.db import make_engine, make_session_factory, transaction
from raydc.store.models import JobRow, LeaseRow, utcnow
from tests.unit.factories import ADMIN
from tests.unit.test_reconciler_admission import one_cpu_job, set_cluster


def sessions_for(url: str) -> tuple[Engine, sessionmaker[Session]]:
    engine = make_engine(url)
    migrate.upgrade(engine)
    return engine, make_session_factory(engine)


def test_one_holder_until_it_expires_or_releases(
    tmp_path: Path, database_url_for: Callable[..., str]
) -> None:
    engine, sessions = sessions_for(database_url_for(f"sqlite:///{tmp_path / 'l.db'}"))
    a = Lease(sessions, "jobs", "replica-a", ttl_s=60)
    b = Lease(sessions, "jobs", "replica-b", ttl_s=60)
    assert a.acquire() and a.acquire()  # renewing its own
    assert not b.acquire() and not b.held
    # A holder that stopped renewing: its lease runs out and the other takes it...
    with transaction(sessions) as session:
        session.execute(update(LeaseRow).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert b.acquire()
    # ...and the old holder is fenced off: its next scheduling pass finds it gone.
    with transaction(sessions) as session:
        assert not a.hold(session)
    assert not a.held and not a.acquire()
    b.release()
    assert a.acquire()
    # Leases are per reconciler.
    assert Lease(sessions, "deployments", "replica-b", ttl_s=60).acquire()
    engine.dispose()


def test_a_pass_holding_the_lease_blocks_the_next_until_it_commits(
    tmp_path: Path, database_url_for: Callable[..., str]
) -> None:
    """Two passes (two replicas whose leases both look valid, e.g. across a takeover)
    never run their transactions at once: the renewing UPDATE locks the row."""
    url = database_url_for(f"sqlite:///{tmp_path / 'l.db'}")
    engine, sessions = sessions_for(url)
    other_engine, other_sessions = sessions_for(url)  # a second replica's own connections
    order: list[str] = []
    first_holds = threading.Event()

    def first() -> None:
        with transaction(sessions) as session:
            assert Lease(sessions, "jobs", "same", ttl_s=60).hold(session)
            first_holds.set()
            time.sleep(0.5)
            order.append("first commits")

    def second() -> None:
        first_holds.wait()
        with transaction(other_sessions) as session:
            assert Lease(other_sessions, "jobs", "same", ttl_s=60).hold(session)
            order.append("second holds")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    engine.dispose()
    other_engine.dispose()
    assert order == ["first commits", "second holds"]


def test_a_replica_without_the_lease_admits_nothing(
    api: TestClient, control_plane: ControlPlane
) -> None:
    set_cluster(control_plane, cpu=4)
    job = api.post("/v1/jobs", json=one_cpu_job(), headers=ADMIN).json()["id"]
    with control_plane.tx() as session:
        session.execute(
            update(LeaseRow)
            .where(LeaseRow.name == "jobs")
            .values(holder="another-replica", expires_at=utcnow() + timedelta(minutes=1))
        )
    assert control_plane.reconciler.schedule() == []
    with control_plane.sessions() as session:
        assert session.scalars(select(JobRow.status).where(JobRow.id == job)).one() == "PENDING"
    # Once the other replica's lease has run out, this one takes over and admits.
    with control_plane.tx() as session:
        session.execute(update(LeaseRow).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert control_plane.reconciler.schedule() == [job]
    lease = control_plane.reconciler.lease
    assert lease is not None and lease.held
