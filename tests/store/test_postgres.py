"""PostgreSQL specifics: migrations under concurrent start-up, SKIP LOCKED claims across
processes (separate pools), id reservation races, the GiST index, hashed secrets, packed tile
records. Each test gets a fresh migrated database (`pg_database_url`, tests/conftest.py)."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest
from psycopg import sql
from tests.pg_server import with_database

from wayview.errors import InvalidInput, StoreUnavailable
from wayview.store import open_store
from wayview.store.migrate import load_migrations
from wayview.store.postgres.store import PostgresStore, _bbox_clause
from wayview.testing import add_sequence, make_settings, seed


def _now() -> int:
    return int(time.time() * 1000)


async def _opened(url: str, pool_size: int = 4) -> PostgresStore:
    store = PostgresStore(url, pool_size=pool_size)
    await store.open()
    return store


async def test_postgres_migrations_apply_once_when_processes_start_together(pg_server_url):
    name = "fresh_migrations"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(pg_server_url, name)
    try:
        stores = [PostgresStore(url, pool_size=1) for _ in range(3)]
        await asyncio.gather(*(s.open() for s in stores))  # racing on an empty database
        newest = load_migrations("wayview.store.postgres")[-1].version
        assert [await s.schema_version() for s in stores] == [newest] * 3
        for s in stores:
            await s.close()
        again = await _opened(url)
        await again.close()
        with psycopg.connect(url) as conn:
            count = conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()
        assert count == (len(load_migrations("wayview.store.postgres")),)
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


async def test_postgres_claim_skips_a_locked_job_instead_of_waiting(pg_database_url):
    store = await _opened(pg_database_url)
    first = await store.enqueue_job("k", {"n": 1})
    second = await store.enqueue_job("k", {"n": 2})
    # Another process is in the middle of claiming `first`: its row is locked.
    async with await psycopg.AsyncConnection.connect(pg_database_url) as other:
        await other.execute("SELECT id FROM jobs WHERE id = %s FOR UPDATE", (first.id,))
        taken = await asyncio.wait_for(store.claim_job("w1", lease_s=60), timeout=5)
        assert taken is not None and taken.id == second.id
        assert await asyncio.wait_for(store.claim_job("w2", lease_s=60), timeout=5) is None
        await other.rollback()
    again = await store.claim_job("w2", lease_s=60)
    assert again is not None and again.id == first.id and again.attempts == 1
    await store.close()


async def test_postgres_two_processes_claiming_at_once_never_share_a_job(pg_database_url):
    a, b = await _opened(pg_database_url, 8), await _opened(pg_database_url, 8)
    queued = {(await a.enqueue_job("k", {"n": n})).id for n in range(40)}
    claims = await asyncio.gather(*(
        (a if k % 2 else b).claim_job(f"w{k}", lease_s=60) for k in range(60)))
    got = [job.id for job in claims if job is not None]
    assert len(got) == 40 and set(got) == queued
    assert (await a.job_counts())["running"] == 40
    await a.close()
    await b.close()


async def test_postgres_jobs_survive_a_restart(pg_database_url):
    store = await _opened(pg_database_url)
    running = await store.enqueue_job("k", {"b": 1})
    assert (await store.claim_job("gone", lease_s=1)).id == running.id
    queued = await store.enqueue_job("k", {"a": [1, 2]}, dedupe_key="d")
    await store.close()
    store = await _opened(pg_database_url)
    assert [j.id for j in await store.list_jobs()] == [queued.id, running.id]
    assert (await store.enqueue_job("k", {}, dedupe_key="d")).id == queued.id
    assert (await store.claim_job("w", lease_s=60)).payload == {"a": [1, 2]}
    taken = await store.claim_job("w", lease_s=60, now_ms=_now() + 2_000)
    assert taken is not None and taken.payload == {"b": 1} and taken.attempts == 2
    await store.close()


async def test_postgres_concurrent_dedupe_keys_queue_one_job(pg_database_url):
    a, b = await _opened(pg_database_url), await _opened(pg_database_url)
    jobs = await asyncio.gather(*(
        (a if k % 2 else b).enqueue_job("k", {"k": k}, dedupe_key="same") for k in range(10)))
    assert len({j.id for j in jobs}) == 1
    await a.close()
    await b.close()


async def test_postgres_id_reservations_of_two_processes_are_disjoint(pg_database_url):
    a, b = await _opened(pg_database_url), await _opened(pg_database_url)
    got = await asyncio.gather(*(
        s.reserve_ids(kind, 700) for s in (a, b) for kind in ("image", "detection")))
    ids = [i for chunk in got for i in chunk]
    assert len(ids) == len(set(ids)) == 2800
    assert len(await a.node_kinds(ids)) == 2800
    await a.close()
    await b.close()


async def test_postgres_bbox_search_uses_the_gist_index(pg_database_url):
    store = await _opened(pg_database_url)
    user = await store.create_user("u")
    for row in range(20):
        await add_sequence(store, user, [(10 + k * 0.01, 40 + row * 0.01) for k in range(100)],
                           start_ms=row * 1000)
    bbox = (10.205, 40.105, 10.225, 40.115)
    params: list[object] = []
    where = _bbox_clause("i", bbox, params)
    async with await psycopg.AsyncConnection.connect(pg_database_url, autocommit=True) as conn:
        await conn.execute("ANALYZE images")
        cur = await conn.execute(
            f"EXPLAIN SELECT i.id FROM images i WHERE {where}"
            " ORDER BY i.captured_at_ms, i.id LIMIT 11", params)
        plan = "\n".join(r[0] for r in await cur.fetchall())
    assert "images_geom" in plan, plan
    from wayview.model.entities import ImageSearch

    page = await store.search_images(ImageSearch(bbox=bbox, limit=10))
    assert sorted((round(im.lon, 2), round(im.lat, 2)) for im in page.items) == [
        (10.21, 40.11), (10.22, 40.11)]
    await store.close()


async def test_postgres_no_token_or_secret_in_clear(pg_database_url):
    store = await _opened(pg_database_url)
    world = await seed(store)
    await store.close()
    with psycopg.connect(pg_database_url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename <> 'spatial_ref_sys'")]
        dump = "\n".join(
            str(row[0]) for table in tables
            for row in conn.execute(sql.SQL("SELECT t::text FROM {} t").format(
                sql.Identifier(table))))
    assert "alice" in dump  # the dump does hold the data
    for secret in (world.client_token, world.user_token, world.bob_token):
        assert secret not in dump
        assert secret.split("|")[-1] not in dump


async def test_postgres_packed_tile_records_follow_the_image_columns(pg_database_url):
    """The generated `tile_rec` column must equal the columns it packs, after later updates
    of those columns too (it cannot go stale)."""
    from wayview.tiles.index import IMAGE_ZOOM, tile_range
    from wayview.tiles.tilemath import lnglat_to_tile

    store = await _opened(pg_database_url)
    world = await seed(store)
    im = world.images[0]
    z, x, y = IMAGE_ZOOM, *lnglat_to_tile(im.lon, im.lat, IMAGE_ZOOM)
    low, high = tile_range(z, x, y)

    def expected() -> list[tuple[int, ...]]:
        with psycopg.connect(pg_database_url) as conn:
            return [tuple(r) for r in conn.execute(
                "SELECT id, qk, captured_at_ms, tile_compass_deg, is_pano::int,"
                " COALESCE(organization_id, 0), creator_id FROM images"
                " WHERE qk BETWEEN %s AND %s ORDER BY qk, id", (low, high))]

    def got(cols) -> list[tuple[int, ...]]:
        return [tuple(int(v) for v in r) for r in zip(
            cols.ids, cols.codes, cols.captured_at_ms, cols.compass_deg,
            cols.is_pano.astype(int), cols.organization_ids, cols.creator_ids, strict=True)]

    cols = await store.tile_images(z, x, y)
    assert len(cols.ids) > 0 and got(cols) == expected()
    assert set(cols.sequence_keys) == {i.sequence_id for i in world.images
                                       if int(i.id) in {int(v) for v in cols.ids}}
    with psycopg.connect(pg_database_url) as conn:  # a change made outside insert_sequence
        conn.execute("UPDATE images SET captured_at_ms = 42, creator_id = %s WHERE id = %s",
                     (world.bob.id, im.id))
    cols = await store.tile_images(z, x, y)
    assert got(cols) == expected()
    assert (42, world.bob.id) in {(r[2], r[6]) for r in got(cols)}
    await store.close()


async def test_postgres_tile_packs_carry_the_keys_of_their_sequences(pg_database_url):
    """A z14 pack holds its sequences' keys (migration 0015), aligned with their numbers:
    what a tile reads must equal the range read (which looks the keys up), after an image
    moves to another sequence outside any wayview code path, after a delete, after
    `migrate-store`'s build of every pack, and in a database from before 0015."""
    from wayview.store.postgres.tiles import SQL_BUILD_ALL_PACKS, TILE_IMAGES_RANGE, image_columns
    from wayview.tiles.index import IMAGE_ZOOM, tile_range
    from wayview.tiles.tilemath import lnglat_to_tile

    store = await _opened(pg_database_url)
    world = await seed(store)
    tiles = sorted({lnglat_to_tile(i.lon, i.lat, IMAGE_ZOOM) for i in world.images})

    async def check() -> None:
        for x, y in tiles:
            both = await store.tile_content(IMAGE_ZOOM, x, y, ("sequence", "image"))
            packed = both.images
            async with store.db.connection() as conn:
                cur = await conn.execute(TILE_IMAGES_RANGE, tile_range(IMAGE_ZOOM, x, y),
                                         binary=True)
                ranged = image_columns(await cur.fetchall())
            assert packed is not None and packed.ids.tolist() == ranged.ids.tolist()
            assert packed.sequence_keys == ranged.sequence_keys
            assert packed.sequence_index.tolist() == ranged.sequence_index.tolist()
            alone = await store.tile_sequence_lines(IMAGE_ZOOM, x, y)
            assert both.lines == alone

    await check()
    im, other = world.images[0], next(i for i in world.images
                                      if i.sequence_id != world.images[0].sequence_id)
    with psycopg.connect(pg_database_url, autocommit=True) as conn:
        conn.execute("UPDATE images SET sequence_id = %s, sequence_no = (SELECT seq_no FROM"
                     " sequences WHERE id = %s) WHERE id = %s",
                     (other.sequence_id, other.sequence_id, im.id))
    await check()
    x, y = lnglat_to_tile(im.lon, im.lat, IMAGE_ZOOM)
    assert other.sequence_id in (await store.tile_images(IMAGE_ZOOM, x, y)).sequence_keys
    with psycopg.connect(pg_database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM images WHERE sequence_id = %s", (world.images[1].sequence_id,))
    await check()
    with psycopg.connect(pg_database_url, autocommit=True) as conn:  # migrate-store's way
        conn.execute("DELETE FROM tile_image_packs")
        conn.execute(SQL_BUILD_ALL_PACKS)
    await check()
    await store.close()
    with psycopg.connect(pg_database_url, autocommit=True) as conn:  # a database before 0015
        conn.execute("ALTER TABLE tile_image_packs DROP COLUMN keys")
        conn.execute("DROP FUNCTION wv_refresh_tile_packs(bigint[])")
        conn.execute("CREATE FUNCTION wv_refresh_tile_packs(keys bigint[]) RETURNS void"
                     " LANGUAGE sql AS ''")
        conn.execute("DELETE FROM schema_migrations WHERE version = 15")
    store = await _opened(pg_database_url)
    await check()
    await store.close()


async def test_postgres_concurrent_z14_tiles_share_one_statement_and_match_lone_reads(
        pg_database_url):
    """Concurrent requests for z14 tiles (the same tile several times, and a tile with
    nothing in it) are read in one statement, and each gets exactly what its layers read
    alone give; a request cancelled while it waits leaves the others their tiles."""
    from wayview.tiles.index import IMAGE_ZOOM
    from wayview.tiles.tilemath import lnglat_to_tile

    store = await _opened(pg_database_url)
    world = await seed(store)
    far = await add_sequence(store, await store.create_user("far"),  # across four z14 tiles
                             [(13.40 + 0.01 * i, 52.52) for i in range(8)],
                             start_ms=1_600_000_000_000)
    tiles = sorted({lnglat_to_tile(i.lon, i.lat, IMAGE_ZOOM) for i in [*world.images, *far]})
    tiles.append((0, 0))
    assert len(tiles) >= 4
    alone = {}
    for x, y in tiles:
        images = await store.tile_images(IMAGE_ZOOM, x, y)
        alone[(x, y)] = (images.ids.tolist(), images.codes.tolist(), images.sequence_keys,
                         images.sequence_index.tolist(),
                         await store.tile_sequence_lines(IMAGE_ZOOM, x, y))
    assert any(v[0] for v in alone.values()) and any(v[4] for v in alone.values())
    asks = [t for t in tiles for _ in range(3)]
    before = store.z14_reads.statements
    got = await asyncio.gather(*(store.tile_content(IMAGE_ZOOM, x, y, ("sequence", "image"))
                                 for x, y in asks))
    assert store.z14_reads.statements == before + 1
    for (x, y), content in zip(asks, got, strict=True):
        images = content.images
        assert images is not None
        assert (images.ids.tolist(), images.codes.tolist(), images.sequence_keys,
                images.sequence_index.tolist(), content.lines) == alone[(x, y)]

    kept, dropped = tiles[0], tiles[1]
    tasks = [asyncio.create_task(store.tile_content(IMAGE_ZOOM, *t, ("sequence", "image")))
             for t in (kept, dropped, kept)]
    await asyncio.sleep(0)  # every request is waiting for the statement
    tasks[1].cancel()
    first, cancelled, third = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(cancelled, asyncio.CancelledError)
    for content in (first, third):
        assert not isinstance(content, BaseException) and content.images is not None
        assert content.images.ids.tolist() == alone[kept][0] and content.lines == alone[kept][4]
    await store.close()


async def test_postgres_a_failed_shared_z14_statement_fails_each_request_and_the_next_works(
        pg_database_url):
    """When the shared statement fails (the store is unreachable), every request waiting on
    it gets the error, none is left hanging, and the next requests are read again."""
    from wayview.tiles.index import IMAGE_ZOOM
    from wayview.tiles.tilemath import lnglat_to_tile

    store = await _opened(pg_database_url)
    world = await seed(store)
    x, y = lnglat_to_tile(world.images[0].lon, world.images[0].lat, IMAGE_ZOOM)
    working = store.z14_reads.db

    class Unreachable:
        def connection(self) -> object:
            raise StoreUnavailable("database unavailable")

    store.z14_reads.db = Unreachable()  # type: ignore[assignment]
    results = await asyncio.wait_for(asyncio.gather(
        *(store.tile_content(IMAGE_ZOOM, x + dx, y, ("sequence", "image")) for dx in range(4)),
        return_exceptions=True), timeout=10)
    assert all(isinstance(r, StoreUnavailable) for r in results)
    store.z14_reads.db = working
    content = await store.tile_content(IMAGE_ZOOM, x, y, ("sequence", "image"))
    assert content.images is not None and world.images[0].id in content.images.ids.tolist()
    await store.close()


def test_open_store_picks_the_backend_from_database_url(tmp_path):
    for url in ("postgresql://u@db.example/w", "postgres://u@db.example/w"):
        assert isinstance(open_store(make_settings(tmp_path, database_url=url)), PostgresStore)
    with pytest.raises(InvalidInput, match="mysql"):
        open_store(make_settings(tmp_path, database_url="mysql://u@db/w"))
    assert not (tmp_path / "data").exists()  # PostgreSQL needs no local database file


async def test_postgres_unreachable_server_is_store_unavailable(tmp_path):
    url = f"postgresql://nobody:s3cret@/w?host={tmp_path}&connect_timeout=1"
    store = PostgresStore(url)
    with pytest.raises(StoreUnavailable) as caught:
        await store.open()
    assert "s3cret" not in caught.value.message


async def test_postgres_text_it_cannot_hold_is_invalid_input(pg_database_url):
    from wayview.model.entities import ImageSearch

    store = await _opened(pg_database_url)
    with pytest.raises(InvalidInput):
        await store.search_images(ImageSearch(make="a\x00b"))
    assert await store.get_user_by_username("ok") is None  # the pool is still usable
    await store.close()


async def test_postgres_value_wildcards_keep_like_metacharacters_literal(pg_database_url):
    from wayview.model.entities import MapFeature, MapFeatureSearch

    store = await _opened(pg_database_url)
    ids = await store.reserve_ids("map_feature", 3)
    values = ("a_b%c--x", "aXbYc--x", "a\\b--x")
    await store.insert_map_features([
        MapFeature(id=i, object_value=v, object_type="point", lon=1.0, lat=1.0,
                   first_seen_at_ms=0, last_seen_at_ms=0) for i, v in zip(ids, values, strict=True)])

    async def found(pattern: str) -> list[int]:
        page = await store.search_map_features(
            MapFeatureSearch(bbox=(0.9, 0.9, 1.1, 1.1), object_values=(pattern,)))
        return [f.id for f in page.items]

    assert await found("a_b%c*") == [ids[0]]
    assert await found("a\\b*") == [ids[2]]
    assert await found("a*--x") == sorted(ids)
    await store.close()


async def test_postgres_tile_packs_hold_every_image_of_concurrent_writers(pg_database_url):
    """Several processes writing sequences into the same z14 tile at once: the tile's pack
    (what z14 tiles are read from) ends up with every image, equal to a range read, and to
    the computed tileset's tile (no computed positions: the same places)."""
    from wayview.store.postgres.tiles import TILE_IMAGES_RANGE, image_columns
    from wayview.tiles.index import IMAGE_ZOOM, tile_range
    from wayview.tiles.tilemath import lnglat_to_tile

    stores = [await _opened(pg_database_url) for _ in range(3)]
    user = await stores[0].create_user("packer")
    lon0, lat0 = 13.4050, 52.5200

    async def writer(k: int, store: PostgresStore) -> list[int]:
        written = []
        for j in range(4):
            points = [(lon0 + 0.00005 * i, lat0 + 0.0001 * (k * 4 + j)) for i in range(15)]
            written += [im.id for im in await add_sequence(
                store, user, points, start_ms=1_600_000_000_000 + (k * 4 + j) * 100_000)]
        return written

    ids = [i for part in await asyncio.gather(*(writer(k, s) for k, s in enumerate(stores)))
           for i in part]
    x, y = lnglat_to_tile(lon0 + 0.0003, lat0 + 0.0005, IMAGE_ZOOM)
    packed = await stores[0].tile_images(IMAGE_ZOOM, x, y)
    async with stores[0].db.connection() as conn:
        cur = await conn.execute(TILE_IMAGES_RANGE, tile_range(IMAGE_ZOOM, x, y), binary=True)
        ranged = image_columns(await cur.fetchall())
    assert sorted(packed.ids.tolist()) == sorted(ids)  # all 180 images fall in this tile
    assert packed.ids.tolist() == ranged.ids.tolist()
    assert packed.sequence_keys == ranged.sequence_keys
    assert packed.sequence_index.tolist() == ranged.sequence_index.tolist()
    computed = (await stores[0].tile_content(IMAGE_ZOOM, x, y, ("image",), computed=True)).images
    assert computed is not None and computed.ids.tolist() == packed.ids.tolist()
    assert computed.codes.tolist() == packed.codes.tolist()
    for store in stores:
        await store.close()
