"""Shared fixtures: settings on tmp_path, an opened store, a seeded world, an in-process client.

The `store` fixture runs every test that uses it on each backend: SQLite in tmp_path, and
PostgreSQL + PostGIS (one throwaway server per pytest worker process, and per test a fresh
database cloned from one migrated template, so tests stay isolated and cheap).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from tests.pg_server import pg_server, with_database
from wayview.settings import Settings
from wayview.store import Store
from wayview.store.postgres.store import PostgresStore
from wayview.testing import Seeded, app_client, make_settings, open_test_store, seed

SHARED = Path(__file__).resolve().parents[2] / "shared"
BACKENDS = ["sqlite", "postgres"]
PG_TEMPLATE = "wayview_template"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test with a clear reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test data not available: {path} (needs ../shared beside the repo)")
    return path


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """This worker's PostgreSQL server, with a database `wayview_template` migrated once."""
    with pg_server() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(PG_TEMPLATE)))

        async def migrate() -> None:
            store = PostgresStore(with_database(url, PG_TEMPLATE), pool_size=1)
            await store.open()
            await store.close()

        asyncio.run(migrate())
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")  # else the first clones flush the migration's pages
        yield url


@pytest.fixture
def pg_database_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, migrated database for one test (dropped afterwards)."""
    name = f"test_{uuid.uuid4().hex[:20]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(PG_TEMPLATE)))
    try:
        yield with_database(pg_server_url, name)
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def store_backend(request: pytest.FixtureRequest) -> str:
    """The backend of the running test: its `store` parameter, else SQLite."""
    callspec = getattr(request.node, "callspec", None)
    return str(callspec.params.get("store", "sqlite")) if callspec else "sqlite"


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings on tmp_path; for the `postgres` store parameter, on a fresh database too."""
    if store_backend(request) == "postgres":
        return make_settings(tmp_path, database_url=request.getfixturevalue("pg_database_url"))
    return make_settings(tmp_path)


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Store]:
    async with open_test_store(settings) as s:
        yield s


@pytest.fixture
async def seeded(store: Store) -> Seeded:
    return await seed(store)


@pytest.fixture
async def client(settings: Settings, store: Store) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings, store) as c:
        yield c
