"""Alembic: upgrade and downgrade run, and the migrated schema matches the models."""

from collections.abc import Callable
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from raydc.store import migrate
from raydc.store.db import make_engine
from raydc.store.models import Base


def test_upgrade_downgrade_upgrade(tmp_path: Path, database_url_for: Callable[..., str]) -> None:
    engine = make_engine(database_url_for(f"sqlite:///{tmp_path / 'm.db'}", migrated=False))
    migrate.upgrade(engine)
    assert {"jobs", "job_events", "tenants", "api_tokens", "models"} <= set(
        inspect(engine).get_table_names()
    )
    migrate.downgrade(engine)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(engine)
    engine.dispose()


def test_migrations_match_the_models(tmp_path: Path, database_url_for: Callable[..., str]) -> None:
    engine = make_engine(database_url_for(f"sqlite:///{tmp_path / 'm.db'}", migrated=False))
    migrate.upgrade(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_server_default": True})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == []


def test_rows_from_before_the_scheduler_get_its_defaults(
    tmp_path: Path, database_url_for: Callable[..., str]
) -> None:
    engine = make_engine(database_url_for(f"sqlite:///{tmp_path / 'm.db'}", migrated=False))
    migrate.upgrade(engine, "0001")
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO tenants (name, quota_gpu, created_at) VALUES ('a', 4, :t)"),
            {"t": "2026-01-01 00:00:00"},
        )
        connection.execute(
            text(
                "INSERT INTO jobs (id, tenant, name, kind, status, priority, priority_rank,"
                " spec, demand_cpu, demand_gpu, demand_memory_gb, attempt, cancel_requested,"
                " created_at, updated_at) VALUES ('j1', 'a', 'n', 'train', 'RUNNING', 'normal',"
                " 1, '{}', 1, 1, 0, 1, false, :t, :t)"
            ),
            {"t": "2026-01-01 00:00:00"},
        )
    migrate.upgrade(engine)
    with engine.connect() as connection:
        tenant = connection.execute(text("SELECT * FROM tenants")).mappings().one()
        job = connection.execute(text("SELECT * FROM jobs")).mappings().one()
    engine.dispose()
    assert (tenant["quota_gpu"], tenant["weight"], tenant["borrow_gpu"]) == (4, 1.0, None)
    assert (job["preemptions"], job["attained_gpu_s"], job["placement"]) == (0, 0, None)


def test_sqlite_files_use_wal(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    with engine.connect() as connection:
        mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
    engine.dispose()
    assert mode == "wal"
