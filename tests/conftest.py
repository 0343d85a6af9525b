"""Shared paths and the test database for all test layers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from raydc.cluster.local_head import free_port
from tests.databases import databases

__all__ = ["FIXTURES", "REPO", "free_port"]

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture
def database_url_for() -> Iterator[Callable[..., str]]:
    """``database_url_for(sqlite_url)``: that URL, or a fresh Postgres database (dropped
    after the test) when the suite runs against Postgres. ``migrated=False`` asks for an
    empty one, for migration tests."""
    postgres = databases()
    created: list[str] = []

    def make(sqlite_url: str, migrated: bool = True) -> str:
        if postgres is None:
            return sqlite_url
        url = postgres.create(migrated=migrated)
        created.append(url)
        return url

    yield make
    if postgres is not None:
        for url in created:
            postgres.drop(url)
