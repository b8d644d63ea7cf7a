"""`mly1_computed_public` (spec §4.2): images, lines and overview points at the computed
positions and angles, falling back to the original ones; its own cache entries (in-process and
Redis) that follow `Store.set_computed_fields`; `mly1_public` unaffected."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from tests.api.test_tiles import decode, get_tile, tile_of
from tests.redis_server import redis_server

from wayview.kv import RedisTileCache
from wayview.model.entities import ComputedFields, Image, Sequence
from wayview.store import Store
from wayview.testing import Seeded, make_image
from wayview.tiles.service import TileService
from wayview.tiles.tilemath import project, tile_bounds

#: An empty z14 tile (no seeded image) and the latitude through its middle.
X, Y = 8000, 5000
WEST, SOUTH, EAST, NORTH = tile_bounds(14, X, Y)
LAT = (SOUTH + NORTH) / 2
#: 14 m east of the tile's east edge: the neighbouring tile (X + 1, Y).
BEYOND = (EAST + 0.0002, LAT)


def moved_to(image: Image, lon: float, lat: float, angle: float) -> ComputedFields:
    return ComputedFields(image_id=image.id, computed_lon=lon, computed_lat=lat,
                          computed_altitude_m=30.0, computed_compass_angle_deg=angle,
                          computed_rotation=(0.0, 0.0, 0.0), atomic_scale=1.0,
                          camera_parameters=None, assets=0)


async def edge_sequence(store: Store, seeded: Seeded, *, last_beyond: bool) -> list[Image]:
    """Three images 40, 27 and 13 m inside the east edge of (X, Y), captured west to east.

    The first two have computed positions 2 m north of the original ones and no computed angle
    (the original 45 applies); with `last_beyond`, the last one's computed position is BEYOND
    the edge, with computed angle 123.
    """
    seq = Sequence(id=uuid.uuid4().hex[:22], creator_id=seeded.bob.id)
    ids = await store.reserve_ids("image", 3)
    images = []
    for k, image_id in enumerate(ids):
        lon = EAST - 0.0006 + k * 0.0002
        computed: dict[str, float] = {"computed_lon": lon, "computed_lat": LAT + 0.00002}
        if last_beyond and k == 2:
            computed = {"computed_lon": BEYOND[0], "computed_lat": BEYOND[1],
                        "computed_compass_angle_deg": 123.0}
        images.append(make_image(id=image_id, sequence_id=seq.id, creator_id=seeded.bob.id,
                                 captured_at_ms=1_650_000_000_000 + 1000 * k, lon=lon, lat=LAT,
                                 content_sha256=f"{seq.id}-{k}", **computed))
    await store.insert_sequence(seq, images)
    return images


async def layers_of(client, seeded: Seeded, tileset: str, z: int, x: int, y: int) -> dict:
    r = await get_tile(client, seeded.client_token, tileset, z, x, y)
    assert r.status_code == 200
    return decode(r.content) if r.content else {}


def points(layers: dict, name: str = "image") -> dict[int, dict]:
    """Features of a point layer by id."""
    return {f["properties"]["id"]: f for f in layers.get(name, {}).get("features", [])}


def pixel(lon: float, lat: float, z: int, x: int, y: int) -> tuple[float, float]:
    px, py = project(np.array([lon]), np.array([lat]), z, x, y)
    return float(px[0]), float(py[0])


def near(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return abs(a[0] - b[0]) <= 1 and abs(a[1] - b[1]) <= 1


def line_vertices(layers: dict, sequence_id: str) -> list[tuple[float, float]]:
    (feature,) = [f for f in layers["sequence"]["features"]
                  if f["properties"]["id"] == sequence_id]
    geometry = feature["geometry"]
    parts = [geometry["coordinates"]] if geometry["type"] == "LineString" \
        else geometry["coordinates"]
    return [(float(px), float(py)) for part in parts for px, py in part]


async def test_tiles_computed_image_lies_in_the_tile_of_its_computed_position(
        client, store, seeded):
    images = await edge_sequence(store, seeded, last_beyond=True)
    last = images[2]
    public = await layers_of(client, seeded, "mly1_public", 14, X, Y)
    public_next = await layers_of(client, seeded, "mly1_public", 14, X + 1, Y)
    computed = await layers_of(client, seeded, "mly1_computed_public", 14, X, Y)
    computed_next = await layers_of(client, seeded, "mly1_computed_public", 14, X + 1, Y)
    # mly1_public: every image in its original tile, none beside it.
    assert set(points(public)) == {im.id for im in images} and not points(public_next)
    # mly1_computed_public: the last one only in the tile of its computed position.
    assert set(points(computed)) == {images[0].id, images[1].id}
    assert set(points(computed_next)) == {last.id}
    there = points(computed_next)[last.id]
    assert there["id"] == last.id and there["properties"]["compass_angle"] == 123
    assert near(tuple(there["geometry"]["coordinates"]), pixel(*BEYOND, 14, X + 1, Y))
    for im in images[:2]:  # computed positions, the original angle (no computed one)
        feature = points(computed)[im.id]
        assert feature["properties"]["compass_angle"] == 45
        assert near(tuple(feature["geometry"]["coordinates"]),
                    pixel(im.lon, LAT + 0.00002, 14, X, Y))
        assert near(tuple(points(public)[im.id]["geometry"]["coordinates"]),
                    pixel(im.lon, LAT, 14, X, Y))
    assert points(public)[last.id]["properties"]["compass_angle"] == 45
    # The sequence line runs through the computed positions, into the neighbouring tile.
    vertices = line_vertices(computed_next, last.sequence_id)
    assert any(near(v, pixel(*BEYOND, 14, X + 1, Y)) for v in vertices)
    assert not any(near(v, pixel(last.lon, LAT, 14, X + 1, Y)) for v in vertices)
    original_line = line_vertices(public, last.sequence_id)
    assert any(near(v, pixel(last.lon, LAT, 14, X, Y)) for v in original_line)
    # Lower zooms draw the computed line too.
    z, x, y = 12, X >> 2, Y >> 2
    low = await layers_of(client, seeded, "mly1_computed_public", z, x, y)
    assert any(near(v, pixel(*BEYOND, z, x, y))
               for v in line_vertices(low, last.sequence_id))


async def test_tiles_computed_cached_tile_follows_set_computed_fields(client, store, seeded):
    images = await edge_sequence(store, seeded, last_beyond=False)
    last = images[2]
    first = await get_tile(client, seeded.client_token, "mly1_computed_public", 14, X, Y)
    cached = await get_tile(client, seeded.client_token, "mly1_computed_public", 14, X, Y)
    assert cached.headers["etag"] == first.headers["etag"]
    public_first = await get_tile(client, seeded.client_token, "mly1_public", 14, X, Y)
    assert last.id in points(decode(first.content))
    assert not points(await layers_of(client, seeded, "mly1_computed_public", 14, X + 1, Y))

    assert await store.set_computed_fields([moved_to(last, *BEYOND, 200.0)]) == 1

    after = await get_tile(client, seeded.client_token, "mly1_computed_public", 14, X, Y)
    assert after.headers["etag"] != first.headers["etag"]
    assert set(points(decode(after.content))) == {images[0].id, images[1].id}
    stale = await get_tile(client, seeded.client_token, "mly1_computed_public", 14, X, Y,
                           **{"If-None-Match": first.headers["etag"]})
    assert stale.status_code == 200
    there = points(await layers_of(client, seeded, "mly1_computed_public", 14, X + 1, Y))
    assert set(there) == {last.id} and there[last.id]["properties"]["compass_angle"] == 200
    assert near(tuple(there[last.id]["geometry"]["coordinates"]), pixel(*BEYOND, 14, X + 1, Y))
    # mly1_public is the same tile as before (same ETag: still the cached render).
    public_after = await get_tile(client, seeded.client_token, "mly1_public", 14, X, Y)
    assert public_after.headers["etag"] == public_first.headers["etag"]
    assert last.id in points(decode(public_after.content))


async def test_tiles_computed_falls_back_to_the_original_positions(client, seeded):
    """Nothing computed (the seeded world): both tilesets draw the same tiles."""
    im = seeded.images[0]
    for z in (14, 10, 3):
        x, y = tile_of(im.lon, im.lat, z)
        public = await get_tile(client, seeded.client_token, "mly1_public", z, x, y)
        computed = await get_tile(client, seeded.client_token, "mly1_computed_public", z, x, y)
        assert computed.status_code == 200 and computed.content
        assert decode(computed.content) == decode(public.content), z


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


async def test_tiles_computed_has_its_own_shared_cache_entries(
        redis_url: str, store, seeded, tmp_path: Path):
    """Two API processes on one Redis: each tileset's render is shared under its own key, and
    a change of computed positions renders the computed tile again, not `mly1_public`'s."""
    images = await edge_sequence(store, seeded, last_beyond=False)
    prefix = f"test-{uuid.uuid4().hex}:"
    shared = [RedisTileCache(redis_url, prefix=prefix) for _ in range(2)]
    try:
        a, b = (TileService(store, shared=cache) for cache in shared)
        public = await a.tile("mly1_public", 14, X, Y)
        computed = await a.tile("mly1_computed_public", 14, X, Y)
        assert a.renders == 2 and public.body != computed.body  # positions 2 m apart
        assert (await b.tile("mly1_public", 14, X, Y)).body == public.body
        assert (await b.tile("mly1_computed_public", 14, X, Y)).body == computed.body
        assert b.renders == 0  # both from Redis, each under its own key

        await store.set_computed_fields([moved_to(images[2], *BEYOND, 200.0)])

        fresh = await b.tile("mly1_computed_public", 14, X, Y)
        assert b.renders == 1 and fresh.etag != computed.etag
        assert images[2].id not in points(decode(fresh.body))
        assert (await b.tile("mly1_public", 14, X, Y)).etag == public.etag
        assert b.renders == 1  # mly1_public was not invalidated
        assert (await a.tile("mly1_computed_public", 14, X, Y)).etag == fresh.etag
        assert a.renders == 2  # a took b's new render from Redis
    finally:
        for cache in shared:
            await cache.close()
