"""The shared (Redis) tile cache: epochs decide, newer never replaced by older, outages
degrade to rendering."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from tests.api.test_tiles import tile_of
from tests.redis_server import redis_server
from wayview.kv import RedisTileCache, open_tile_cache
from wayview.store import Store
from wayview.testing import add_sequence, seed
from wayview.tiles.service import TileService


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
async def caches(redis_url: str) -> AsyncIterator[Callable[..., RedisTileCache]]:
    """Make caches on the test Redis, under a key prefix of this test's own (as one deployment
    would have); all closed afterwards, whatever the test did."""
    made: list[RedisTileCache] = []
    prefix = f"test-{uuid.uuid4().hex}:"

    def make(**kw: object) -> RedisTileCache:
        made.append(RedisTileCache(redis_url, prefix=prefix, **kw))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for cache in made:
        await cache.close()


def tile_key() -> str:
    return f"images:14:{uuid.uuid4().int % 16384}:{uuid.uuid4().hex}"


async def test_a_tile_shared_by_one_process_is_read_by_another(caches) -> None:
    a, b = caches(), caches()
    key = tile_key()
    assert await b.get(key, 3) is None
    await a.put(key, 3, b"\x1a\x05layer", '"e3"')
    assert await b.get(key, 3) == (b"\x1a\x05layer", '"e3"')
    assert await b.get(key, 4) is None  # the store moved on: the shared tile is stale
    assert (b.hits, b.misses) == (1, 2)


async def test_an_older_render_never_replaces_a_newer_one(caches) -> None:
    cache = caches()
    key = tile_key()
    await cache.put(key, 9, b"new", '"n"')
    await cache.put(key, 8, b"old", '"o"')  # a slow process finishing late
    assert await cache.get(key, 9) == (b"new", '"n"')
    assert await cache.get(key, 8) is None
    await cache.put(key, 10, b"newer", '"n2"')
    assert await cache.get(key, 10) == (b"newer", '"n2"')
    await asyncio.gather(*(cache.put(key, 11 + k % 3, b"x%d" % k, f'"{k}"') for k in range(30)))
    body, _ = await cache.get(key, 13) or (b"", "")
    assert body.startswith(b"x")  # concurrent writers end on the newest epoch


async def test_large_tiles_and_foreign_entries_are_not_served(caches) -> None:
    cache = caches(max_tile_bytes=10)
    key = tile_key()
    await cache.put(key, 1, b"x" * 11, '"big"')
    assert await cache.get(key, 1) is None
    await cache._redis.hset(cache._prefix + key, mapping={"epoch": "junk", "etag": "e",
                                                           "body": b"b"})
    assert await cache.get(key, 1) is None
    await cache.put(key, 1, b"ok", '"k"')
    assert await cache.get(key, 1) == (b"ok", '"k"')


async def test_an_unreachable_redis_means_rendering_not_errors(tmp_path) -> None:
    cache = RedisTileCache(f"unix://{tmp_path}/nothing.sock")
    assert await cache.get(tile_key(), 1) is None
    await cache.put(tile_key(), 1, b"x", '"x"')  # logged, not raised
    await cache.close()
    assert open_tile_cache("") is None


async def test_two_processes_render_a_tile_once_and_a_write_is_seen_by_both(
        caches, store: Store) -> None:
    world = await seed(store)
    image = world.images[0]
    x, y = tile_of(image.lon, image.lat, 14)
    a = TileService(store, shared=caches())  # two API processes, one Redis
    b = TileService(store, shared=caches())
    first = await a.tile("mly1_public", 14, x, y)
    again = await b.tile("mly1_public", 14, x, y)
    assert (a.renders, b.renders) == (1, 0)  # b took a's render from Redis
    assert (again.body, again.etag) == (first.body, first.etag)
    await add_sequence(store, world.alice, [(image.lon, image.lat)], start_ms=1_700_000_000_000)
    fresh = await b.tile("mly1_public", 14, x, y)  # the write bumped the tile's epoch
    assert b.renders == 1 and fresh.etag != first.etag
    assert (await a.tile("mly1_public", 14, x, y)).etag == fresh.etag
    assert a.renders == 1  # ... and a reads b's new render
    off = TileService(store, cache_max_bytes=0, shared=caches())
    await off.tile("mly1_public", 14, x, y)
    assert off.renders == 1  # caching off means off, shared cache included
