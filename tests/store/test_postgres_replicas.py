"""PostgreSQL read replicas (issue 21): a real primary and hot standby on loopback.

`pg_streaming_pair` starts a primary (`wal_level=replica`) and a `pg_basebackup -R` clone of it
streaming from it. Replay is paused on the standby (`pg_wal_replay_pause()`) to make it lag,
and the standby is stopped with `pg_ctl stop -m immediate` to make it vanish.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql
from tests.pg_server import StreamingPair, _free_port, pg_streaming_pair, tcp_url

from wayview.auth.tokens import issue_user_token
from wayview.settings import Settings
from wayview.store import call_deadline_s
from wayview.store.postgres.store import PostgresStore
from wayview.testing import Seeded, add_sequence, app_client, make_settings, seed
from wayview.tiles.tilemath import lnglat_to_tile

TEMPLATE = "wayview_template"


@pytest.fixture(scope="module")
def pair() -> Iterator[StreamingPair]:
    """One primary and replica for the module, with a migrated template database."""
    with pg_streaming_pair() as started:
        with psycopg.connect(started.primary_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))

        async def migrate() -> None:
            store = PostgresStore(started.url(TEMPLATE), pool_size=1)
            await store.open()
            await store.close()

        asyncio.run(migrate())
        yield started


@pytest.fixture
def dbname(pair: StreamingPair) -> Iterator[str]:
    """A fresh migrated database on the primary, replayed on the replica."""
    name = f"test_{uuid.uuid4().hex[:20]}"
    with psycopg.connect(pair.primary_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(TEMPLATE)))
    pair.wait_replayed()
    try:
        yield name
    finally:
        with psycopg.connect(pair.primary_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


@dataclass
class World:
    pair: StreamingPair
    dbname: str
    store: PostgresStore
    client: httpx.AsyncClient
    seeded: Seeded

    def served(self) -> int:
        return int(self.store.reads.status()[0]["served"])

    async def get(self, path: str, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"OAuth {token or self.seeded.client_token}"}
        return await self.client.get(path, headers=headers)


def _settings(tmp_path: Path, pair: StreamingPair, dbname: str, replica_url: str,
              max_lag_s: float) -> Settings:
    return make_settings(tmp_path, database_url=pair.url(dbname),
                         database_replica_urls=[replica_url],
                         database_replica_max_lag_s=max_lag_s)


@pytest.fixture
async def world(pair: StreamingPair, dbname: str, tmp_path: Path) -> AsyncIterator[World]:
    """A seeded store on the primary with the replica (max lag 60 s), and an API client."""
    settings = _settings(tmp_path, pair, dbname, pair.url(dbname, replica=True), 60.0)
    store = PostgresStore(settings.database_url, replica_urls=settings.database_replica_urls,
                          replica_max_lag_s=settings.database_replica_max_lag_s, pool_size=4)
    await store.open()
    try:
        seeded = await seed(store)
        await asyncio.to_thread(pair.wait_replayed)
        await store.reads.measure()
        async with app_client(settings, store) as client:
            yield World(pair, dbname, store, client, seeded)
    finally:
        await store.close()


@contextmanager
def replay_paused(pair: StreamingPair, dbname: str) -> Iterator[None]:
    """The replica stops replaying WAL (it still receives it) until the block ends."""
    with psycopg.connect(pair.url(dbname, replica=True), autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
        # The pause is only requested: replay stops at its next record. Give it one (a write
        # on the primary) and wait until it has stopped, so the test's own write that follows
        # cannot be replayed before the pause takes hold.
        with psycopg.connect(pair.url(dbname), autocommit=True) as primary:
            primary.execute("CREATE TABLE IF NOT EXISTS replay_tick (n integer)")
            primary.execute("INSERT INTO replay_tick VALUES (1)")
        deadline = time.monotonic() + 10
        while conn.execute("SELECT pg_get_wal_replay_pause_state()").fetchone()[0] != "paused":
            assert time.monotonic() < deadline, "replay did not pause"
            time.sleep(0.01)
        try:
            yield
        finally:
            conn.execute("SELECT pg_wal_replay_resume()")


def _unknown(response: httpx.Response) -> bool:
    """Whether the answer is E7, no node with that id (a 400 in the Graph API)."""
    return response.status_code == 400 and response.json()["error"].get("error_subcode") == 33


@contextmanager
def in_request() -> Iterator[None]:
    """Store calls as inside an API request (the read path may use a replica)."""
    token = call_deadline_s.set(1.5)
    try:
        yield
    finally:
        call_deadline_s.reset(token)


async def test_postgres_replica_serves_graph_reads(world: World) -> None:
    im = world.seeded.images[0]
    before = world.served()
    assert (await world.get(f"/{im.id}?fields=id,geometry")).status_code == 200
    bbox = f"{im.lon - 0.001},{im.lat - 0.001},{im.lon + 0.001},{im.lat + 0.001}"
    r = await world.get(f"/images?bbox={bbox}&fields=id")
    assert r.status_code == 200 and str(im.id) in {d["id"] for d in r.json()["data"]}
    assert world.served() >= before + 2
    # Outside requests (jobs, commands) reads stay on the primary.
    served = world.served()
    assert im.id in await world.store.get_images([im.id])
    assert world.served() == served


async def test_postgres_replica_lag_stale_within_limit_then_primary(world: World) -> None:
    """Replay paused: within the max lag the replica answers (stale: a new image is not
    there yet); past it reads go to the primary; read-your-writes paths see every write."""
    store, seeded = world.store, world.seeded
    with replay_paused(world.pair, world.dbname):
        (new,) = await add_sequence(store, seeded.alice, [(13.41, 52.53)], start_ms=1_700_000)
        await store.reads.measure()
        (status,) = store.reads.status()
        assert status["usable"] and 0 < status["lag_s"] < 60
        served = world.served()
        assert _unknown(await world.get(f"/{new.id}?fields=id"))  # the replica is stale
        assert world.served() == served + 1

        store.reads.max_lag_s = 0.0  # the replica is now too far behind
        await store.reads.measure()
        assert not store.reads.status()[0]["usable"]
        r = await world.get(f"/{new.id}?fields=id")
        assert r.status_code == 200 and r.json()["id"] == str(new.id)  # the primary's answer
        assert world.served() == served + 1

        # Read-your-writes paths read the primary even with a usable replica.
        store.reads.max_lag_s = 60.0
        await store.reads.measure()
        assert store.reads.status()[0]["usable"]
        token = (await issue_user_token(store, seeded.bob)).access_token
        assert _unknown(await world.get(f"/{new.id}?fields=id", token))  # still stale
        r = await world.get("/me?fields=id,username", token)  # the token just issued works
        assert r.status_code == 200 and r.json()["username"] == "bob"
        with in_request():
            saved = await store.save_upload_session(seeded.bob.id, "k.zip", handle="h-k",
                                                    size=7, expires_at_ms=2**40)
            found = await store.get_upload_session(seeded.bob.id, "k.zip")
            assert found is not None and found.id == saved.id and found.size == 7
            x, y = lnglat_to_tile(new.lon, new.lat, 14)
            assert await store.tile_epoch("images", 14, x, y) > 0
    await asyncio.to_thread(world.pair.wait_replayed)
    await store.reads.measure()
    served = world.served()
    assert (await world.get(f"/{new.id}?fields=id")).status_code == 200
    assert world.served() == served + 1  # caught up: the replica serves it


async def test_postgres_replica_disappears_reads_fall_back(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wayview.store")
    images = world.seeded.images
    im = images[0]
    bbox = f"{im.lon - 0.001},{im.lat - 0.001},{im.lon + 0.001},{im.lat + 0.001}"
    paths = [f"/{images[k].id}?fields=id" for k in range(4)] + [f"/images?bbox={bbox}&fields=id"]
    served = world.served()
    for path in paths:
        assert (await world.get(path)).status_code == 200
    assert world.served() == served + len(paths)

    world.pair.stop_replica()
    try:
        started = time.monotonic()
        for _ in range(5):
            for path in paths:
                r = await world.get(path)
                assert r.status_code == 200, r.text
        elapsed = time.monotonic() - started
        served = world.served()
        downs = [r for r in caplog.records if "unavailable" in r.getMessage()]
        assert len(downs) == 1 and downs[0].levelno == logging.ERROR
        assert "database replica (PostgreSQL)" in downs[0].getMessage()
        assert "reads go to the primary" in downs[0].getMessage()
        assert all(r.exc_info is None for r in caplog.records)
        assert elapsed < 2 * 1.5 + 1.0  # one request waited out its deadline at most
    finally:
        world.pair.start_replica()

    deadline = time.monotonic() + 15
    while world.served() == served:  # each read starts a probe of the replica when due
        assert time.monotonic() < deadline, world.store.reads.status()
        assert (await world.get(paths[0])).status_code == 200
        await asyncio.sleep(0.05)
    assert any("available again" in r.getMessage() for r in caplog.records)


async def test_postgres_replica_unreachable_at_start(
    pair: StreamingPair, dbname: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wayview.store")
    nowhere = tcp_url(_free_port(), dbname).replace("postgres@", "postgres:s3cret@")
    settings = _settings(tmp_path, pair, dbname, nowhere, 5.0)
    store = PostgresStore(settings.database_url, replica_urls=settings.database_replica_urls)
    await store.open()  # a replica that is down never stops the store from opening
    try:
        seeded = await seed(store)
        async with app_client(settings, store) as client:
            for im in seeded.images[:3]:
                r = await client.get(f"/{im.id}?fields=id",
                                     headers={"Authorization": f"OAuth {seeded.client_token}"})
                assert r.status_code == 200
    finally:
        await store.close()
    lines = [r.getMessage() for r in caplog.records if "database replica" in r.getMessage()]
    assert len(lines) == 1 and "s3cret" not in lines[0] and ":***@" in lines[0]


def test_settings_replica_urls_comma_separated_or_json(tmp_path: Path) -> None:
    primary = "postgresql://w:pw@db/w"
    settings = make_settings(tmp_path, database_url=primary,
                             database_replica_urls="postgresql://r1/w, postgresql://a,b:5433/w")
    assert settings.database_replica_urls == ["postgresql://r1/w", "postgresql://a,b:5433/w"]
    settings = make_settings(tmp_path, database_url=primary,
                             database_replica_urls='["postgres://r1/w"]')
    assert settings.database_replica_urls == ["postgres://r1/w"]
    assert make_settings(tmp_path).database_replica_urls == []


@pytest.mark.parametrize("database_url,replica,message", [
    ("", "postgresql://r1/w", "replicas need a PostgreSQL database_url"),
    ("postgresql://db/w", "mysql://u:s3cret@r1/w", "'mysql' is not a PostgreSQL URL"),
])
def test_settings_replica_urls_refused(tmp_path: Path, database_url: str, replica: str,
                                       message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        make_settings(tmp_path, database_url=database_url, database_replica_urls=replica)
    errors = raised.value.errors()  # type: ignore[attr-defined]
    assert errors[0]["loc"] == ("database_replica_urls",)
    assert "s3cret" not in errors[0]["msg"]


async def test_postgres_replica_serves_tile_rows_never_older_than_the_epoch(world: World
                                                                           ) -> None:
    import mapbox_vector_tile

    im = world.seeded.images[0]
    x, y = lnglat_to_tile(im.lon, im.lat, 14)
    path = f"/maps/vtp/mly1_public/2/14/{x}/{y}"

    async def image_ids() -> set[int]:
        r = await world.get(path)
        assert r.status_code == 200
        layer = mapbox_vector_tile.decode(r.content)["image"]
        return {f["properties"]["id"] for f in layer["features"]}

    before = world.served()
    assert im.id in await image_ids()
    assert world.served() == before + 1  # the z14 rows came from the replica
    with replay_paused(world.pair, world.dbname):
        new = await add_sequence(world.store, world.seeded.bob,
                                 [(im.lon + 0.00002, im.lat), (im.lon + 0.00004, im.lat)],
                                 start_ms=1_700_000_000_000)
        # The epoch (primary) moved on; the paused replica is behind it: rows from the primary,
        # the new images are in the tile at once.
        assert {i.id for i in new} <= await image_ids()
    await asyncio.to_thread(world.pair.wait_replayed)
    served = world.served()
    await add_sequence(world.store, world.seeded.bob, [(im.lon, im.lat + 0.00002),
                                                      (im.lon, im.lat + 0.00004)],
                       start_ms=1_700_000_100_000)
    await asyncio.to_thread(world.pair.wait_replayed)
    assert {i.id for i in new} <= await image_ids()
    assert world.served() == served + 1  # caught up: the replica again
