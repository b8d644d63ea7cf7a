"""Vector tiles: layers, zooms, property types, errors, caching and freshness (spec §4)."""

from __future__ import annotations

import gzip

import mapbox_vector_tile
import pytest

from wayview.model.entities import MapFeature
from wayview.testing import Seeded, add_sequence
from wayview.tiles.tilemath import lnglat_to_tile

MVT = "application/vnd.mapbox-vector-tile"


def decode(body: bytes) -> dict:
    return mapbox_vector_tile.decode(body, default_options={"y_coord_down": True})


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    return lnglat_to_tile(lon, lat, z)


async def get_tile(client, token, tileset, z, x, y, **headers):
    headers.setdefault("Accept-Encoding", "identity")
    return await client.get(f"/maps/vtp/{tileset}/2/{z}/{x}/{y}?access_token={token}",
                            headers=headers)


async def test_tiles_z14_has_image_and_sequence_layers_with_spec_types(client, seeded: Seeded):
    im = seeded.images[0]
    x, y = tile_of(im.lon, im.lat, 14)
    r = await get_tile(client, seeded.client_token, "mly1_public", 14, x, y)
    assert r.status_code == 200 and r.headers["content-type"] == MVT
    assert "content-encoding" not in r.headers
    layers = decode(r.content)
    assert set(layers) == {"image", "sequence"}
    assert layers["image"]["extent"] == 4096 and layers["image"]["version"] == 2
    by_id = {f["properties"]["id"]: f for f in layers["image"]["features"]}
    assert set(by_id) == {i.id for i in seeded.images}
    f = by_id[im.id]
    assert f["id"] == im.id  # MVT feature id = entity id (spec §4.3 decision)
    p = f["properties"]
    assert p["captured_at"] == im.captured_at_ms and p["sequence_id"] == im.sequence_id
    assert p["compass_angle"] == 45 and p["is_pano"] is False and p["creator_id"] == seeded.alice.id
    assert "organization_id" not in p
    pano = next(i for i in seeded.images if i.is_pano)
    pp = by_id[pano.id]["properties"]
    assert pp["is_pano"] is True and pp["organization_id"] == seeded.org.id
    # Missing compass: derived from the direction to the next image (bob's line runs north).
    bob = [i for i in seeded.images if i.creator_id == seeded.bob.id]
    assert by_id[bob[0].id]["properties"]["compass_angle"] == 0
    seqs = {f["properties"]["id"]: f for f in layers["sequence"]["features"]}
    assert set(seqs) == set(seeded.sequences)
    first = seeded.sequences[im.sequence_id][0]
    sp = seqs[im.sequence_id]["properties"]
    assert sp["image_id"] == first.id and sp["captured_at"] == first.captured_at_ms
    assert sp["is_pano"] is False and sp["creator_id"] == seeded.alice.id
    assert "id" not in seqs[im.sequence_id] or seqs[im.sequence_id]["id"] in (None, 0)
    assert seqs[im.sequence_id]["geometry"]["type"] in ("LineString", "MultiLineString")


async def test_tiles_lower_zooms_serve_sequence_then_overview(client, seeded):
    im = seeded.images[0]
    for z in (6, 10, 13):
        x, y = tile_of(im.lon, im.lat, z)
        layers = decode((await get_tile(client, seeded.client_token, "mly1_public", z, x, y)).content)
        assert set(layers) == {"sequence"}, z
    for z in (0, 3, 5):
        x, y = tile_of(im.lon, im.lat, z)
        layers = decode((await get_tile(client, seeded.client_token, "mly1_public", z, x, y)).content)
        assert set(layers) == {"overview"}, z
        props = layers["overview"]["features"][0]["properties"]
        assert set(props) == {"id", "captured_at", "sequence_id", "is_pano"}
        # Every sequence is represented (sparse coverage).
        assert {f["properties"]["sequence_id"] for f in layers["overview"]["features"]} == set(
            seeded.sequences)


async def test_tiles_computed_tileset_serves_the_same_layers(client, seeded):
    im = seeded.images[0]
    x, y = tile_of(im.lon, im.lat, 14)
    layers = decode((await get_tile(client, seeded.client_token, "mly1_computed_public", 14, x, y)).content)
    assert set(layers) == {"image", "sequence"}


async def test_tiles_map_feature_tilesets(client, seeded):
    f = seeded.features[0]
    x, y = tile_of(f.lon, f.lat, 14)
    signs = decode((await get_tile(client, seeded.client_token, "mly_map_feature_traffic_sign", 14, x, y)).content)
    assert list(signs) == ["traffic_sign"]
    (feat,) = signs["traffic_sign"]["features"]
    assert feat["id"] == f.id and feat["properties"] == {
        "id": f.id, "value": "regulatory--stop--g1", "first_seen_at": f.first_seen_at_ms,
        "last_seen_at": f.last_seen_at_ms}
    points = decode((await get_tile(client, seeded.client_token, "mly_map_feature_point", 14, x, y)).content)
    assert [p["properties"]["value"] for p in points["point"]["features"]] == ["object--street-light"]
    low = await get_tile(client, seeded.client_token, "mly_map_feature_point", 13, x // 2, y // 2)
    assert low.status_code == 200 and low.content == b""


async def test_tiles_empty_tile_is_200_empty_body(client, seeded):
    r = await get_tile(client, seeded.client_token, "mly1_public", 14, 0, 0)
    assert r.status_code == 200 and r.content == b"" and r.headers["content-type"] == MVT
    assert r.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize("path", [
    "/maps/vtp/mly1_public/2/15/0/0", "/maps/vtp/mly1_public/2/14/16384/0",
    "/maps/vtp/mly1_public/2/1/0/2", "/maps/vtp/mly1_public/3/0/0/0",
    "/maps/vtp/unknown/2/0/0/0", "/maps/vtp/mly1_public/2/{z}/{x}/{y}",
    "/maps/vtp/mly1_public/2/-1/0/0", "/maps/vtp/mly1_public/2/0/0", "/maps/vtp",
])
async def test_tiles_out_of_contract_is_e15_404(client, seeded, path):
    r = await client.get(path, params={"access_token": seeded.client_token})
    assert r.status_code == 404
    assert r.json()["error"] == {**r.json()["error"], "message": "Unsupported tile request",
                                 "type": "MLYApiException", "code": 100}


async def test_tiles_need_a_token_checked_first(client, seeded):
    r = await client.get("/maps/vtp/mly1_public/2/15/0/0")
    assert r.status_code == 401 and r.json()["error"]["code"] == 190


async def test_tiles_gzip_only_when_accepted_and_labelled(client, seeded):
    im = seeded.images[0]
    x, y = tile_of(im.lon, im.lat, 14)
    plain = await get_tile(client, seeded.client_token, "mly1_public", 14, x, y,
                           **{"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    # httpx would inflate transparently; read the raw bytes through a stream.
    req = client.build_request("GET", f"/maps/vtp/mly1_public/2/14/{x}/{y}",
                               params={"access_token": seeded.client_token},
                               headers={"Accept-Encoding": "gzip"})
    resp = await client.send(req, stream=True)
    raw = b"".join([chunk async for chunk in resp.aiter_raw()])
    assert resp.headers["content-encoding"] == "gzip"
    assert gzip.decompress(raw) == plain.content


async def test_tiles_etag_and_if_none_match(client, seeded):
    im = seeded.images[0]
    x, y = tile_of(im.lon, im.lat, 14)
    r = await get_tile(client, seeded.client_token, "mly1_public", 14, x, y)
    assert r.headers["cache-control"] == "public, max-age=300"
    r2 = await get_tile(client, seeded.client_token, "mly1_public", 14, x, y,
                        **{"If-None-Match": r.headers["etag"]})
    assert r2.status_code == 304 and r2.content == b""


async def test_tiles_write_then_read_is_never_stale(client, store, seeded):
    im = seeded.images[0]
    x, y = tile_of(im.lon, im.lat, 14)
    before = await get_tile(client, seeded.client_token, "mly1_public", 14, x, y)
    low_before = await get_tile(client, seeded.client_token, "mly1_public", 3, *tile_of(im.lon, im.lat, 3))
    new = await add_sequence(store, seeded.bob, [(im.lon + 0.00002, im.lat + 0.00002),
                                                  (im.lon + 0.00004, im.lat + 0.00004)],
                             start_ms=1_700_000_000_000)
    after = await get_tile(client, seeded.client_token, "mly1_public", 14, x, y)
    assert after.headers["etag"] != before.headers["etag"]
    ids = {f["properties"]["id"] for f in decode(after.content)["image"]["features"]}
    assert {i.id for i in new} <= ids
    seqs = {f["properties"]["id"] for f in decode(after.content)["sequence"]["features"]}
    assert new[0].sequence_id in seqs
    stale = await get_tile(client, seeded.client_token, "mly1_public", 14, x, y,
                           **{"If-None-Match": before.headers["etag"]})
    assert stale.status_code == 200
    low_after = await get_tile(client, seeded.client_token, "mly1_public", 3, *tile_of(im.lon, im.lat, 3))
    assert low_after.headers["etag"] != low_before.headers["etag"] or new[0].sequence_id in {
        f["properties"]["sequence_id"] for f in decode(low_after.content)["overview"]["features"]}
    # Map features too.
    (fid,) = await store.reserve_ids("map_feature", 1)
    await store.insert_map_features([MapFeature(id=fid, object_value="object--bench",
                                                object_type="point", lon=im.lon, lat=im.lat,
                                                first_seen_at_ms=1, last_seen_at_ms=2)])
    pts = decode((await get_tile(client, seeded.client_token, "mly_map_feature_point", 14, x, y)).content)
    assert fid in {f["id"] for f in pts["point"]["features"]}


async def test_tiles_points_only_in_their_own_tile(client, store, seeded):
    # An image right at a tile edge appears in one tile only (the SDK merges tiles).
    from wayview.tiles.tilemath import tile_bounds

    x, y = 8000, 5000
    west, south, east, north = tile_bounds(14, x, y)
    (edge,) = await add_sequence(store, seeded.bob, [(east - 1e-9, (south + north) / 2)],
                                 start_ms=1_600_000_000_000)
    inside = decode((await get_tile(client, seeded.client_token, "mly1_public", 14, x, y)).content)
    neighbour = (await get_tile(client, seeded.client_token, "mly1_public", 14, x + 1, y)).content
    assert [f["id"] for f in inside["image"]["features"]] == [edge.id]
    assert "image" not in decode(neighbour) if neighbour else True
    assert "sequence" not in inside  # a one-image sequence has no line
