"""Leader election through a database row, so several control plane replicas can share
one database: only the replica holding a reconciler's lease runs that reconciler.

The holder renews the lease on every pass; another replica takes it once it has expired
(the holder died or hung). Renewing is an UPDATE of the lease row, so inside a transaction
it also locks that row until commit: the scheduling pass renews in its own transaction,
which both serializes admission across replicas (a second pass blocks on the row, then
reads what the first committed) and fences off a holder whose lease was taken meanwhile
(its UPDATE matches no row and the pass admits nothing). Postgres takes a row lock; SQLite
takes its single write lock.
"""

from __future__ import annotations

import logging
import socket
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import or_, update
from sqlalchemy.orm import Session, sessionmaker

from raydc.store.db import transaction
from raydc.store.models import LeaseRow, utcnow

log = logging.getLogger(__name__)


def replica_id(home: Path) -> str:
    """Host and state directory: a replica restarted in place (same pod, same machine)
    takes its own lease back at once; a new one waits for the old lease to expire. Two
    replicas on one host must not share a state directory anyway."""
    return f"{socket.gethostname()}:{home}"


class Lease:
    def __init__(
        self, sessions: sessionmaker[Session], name: str, holder: str, ttl_s: float
    ) -> None:
        self.sessions = sessions
        self.name = name
        self.holder = holder
        self.ttl = timedelta(seconds=ttl_s)
        self.held = False
        self._renewed = 0.0  # time.monotonic() of the last successful hold

    def hold(self, session: Session) -> bool:
        """Take or renew the lease in ``session``'s transaction (locking its row until that
        commits); False when another replica holds it."""
        now, renewing = utcnow(), time.monotonic()
        result = session.execute(
            update(LeaseRow)
            .where(
                LeaseRow.name == self.name,
                or_(
                    LeaseRow.holder == self.holder,
                    LeaseRow.holder.is_(None),
                    LeaseRow.expires_at.is_(None),
                    LeaseRow.expires_at < now,
                ),
            )
            .values(holder=self.holder, expires_at=now + self.ttl)
            .execution_options(synchronize_session=False)
        )
        held = result.rowcount == 1  # type: ignore[attr-defined]
        if held != self.held:
            log.info("%s %s lease %s", self.holder, "took" if held else "lost", self.name)
        self.held = held
        if held:
            self._renewed = renewing
        return held

    def acquire(self) -> bool:
        """Take or renew the lease in a transaction of its own. A lease renewed less than
        a third of its term ago is still ours (no one may take it before it expires), so
        fast passes do not write to the database each time."""
        if self.held and time.monotonic() - self._renewed < self.ttl.total_seconds() / 3:
            return True
        with transaction(self.sessions) as session:
            return self.hold(session)

    def release(self) -> None:
        """Give the lease up at once (a clean shutdown), so another replica need not wait
        for it to expire."""
        with transaction(self.sessions) as session:
            session.execute(
                update(LeaseRow)
                .where(LeaseRow.name == self.name, LeaseRow.holder == self.holder)
                .values(holder=None, expires_at=None)
                .execution_options(synchronize_session=False)
            )
        self.held = False
