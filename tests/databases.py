"""Which database a test gets: the SQLite URL it asks for, or, when the suite runs under
``make test-postgres`` (``RAYDC_TEST_POSTGRES_URL`` set), a fresh Postgres database."""

from __future__ import annotations

import os
import uuid

from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.pool import NullPool

from raydc.store import migrate
from raydc.store.db import make_engine

ENV_VAR = "RAYDC_TEST_POSTGRES_URL"
TEMPLATE = "raydc_template"


def postgres_url() -> str | None:
    return os.environ.get(ENV_VAR) or None


class PostgresDatabases:
    """Creates one database per test. Migrated ones are copied from a template migrated
    once per run, which is much faster than migrating each (CREATE DATABASE ... TEMPLATE)."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = make_url(admin_url)
        self.admin: Engine = create_engine(
            admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool
        )
        self._template_ready = False

    def url_of(self, database: str) -> str:
        return self.admin_url.set(database=database).render_as_string(hide_password=False)

    def _ensure_template(self) -> None:
        if self._template_ready:
            return
        with self.admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)"))
            connection.execute(text(f"CREATE DATABASE {TEMPLATE}"))
        engine = make_engine(self.url_of(TEMPLATE))
        migrate.upgrade(engine)
        engine.dispose()
        self._template_ready = True

    def create(self, migrated: bool = True) -> str:
        if migrated:
            self._ensure_template()
        name = f"t_{uuid.uuid4().hex[:16]}"
        template = TEMPLATE if migrated else "template1"
        with self.admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name} TEMPLATE {template}"))
        return self.url_of(name)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        with self.admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


_databases: PostgresDatabases | None = None


def databases() -> PostgresDatabases | None:
    global _databases
    url = postgres_url()
    if url is None:
        return None
    if _databases is None:
        _databases = PostgresDatabases(url)
    return _databases
