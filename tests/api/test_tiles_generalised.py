"""z6–13 image tiles: sequence lines thinned by pixel coverage, kept rendered in the store and
never stale after a write (issue #21; wayview.tiles.generalise, wayview.tiles.prerender)."""

from __future__ import annotations

import mapbox_vector_tile

from wayview.settings import Settings
from wayview.testing import Seeded, add_sequence
from wayview.tiles.prerender import Prerenderer
from wayview.tiles.service import TileService
from wayview.tiles.tilemath import lnglat_to_tile

LON, LAT = 13.30, 52.40  # away from the seeded world


def decode(body: bytes) -> dict:
    return mapbox_vector_tile.decode(body, default_options={"y_coord_down": True})


async def sequence_features(client, token: str, z: int, lon: float = LON, lat: float = LAT,
                            tileset: str = "mly1_public") -> dict[str, dict]:
    x, y = lnglat_to_tile(lon, lat, z)
    r = await client.get(f"/maps/vtp/{tileset}/2/{z}/{x}/{y}?access_token={token}",
                         headers={"Accept-Encoding": "identity"})
    assert r.status_code == 200
    layers = decode(r.content) if r.content else {}
    return {f["properties"]["id"]: f for f in layers.get("sequence", {}).get("features", [])}


async def drive_the_same_street(store, seeded: Seeded, times: int) -> list[list]:
    """`times` sequences along one street (a few metres of GPS noise apart), a year apart."""
    out = []
    for k in range(times):
        offset = (k % 3 - 1) * 0.00002
        points = [(LON + j * 0.0004, LAT + offset) for j in range(12)]
        out.append(await add_sequence(store, seeded.bob, points,
                                      start_ms=1_500_000_000_000 + k * 31_536_000_000,
                                      organization_id=seeded.org.id if k == 2 else None))
    return out


async def test_low_zooms_draw_a_street_once_with_the_newest_sequence(client, store, seeded):
    drives = await drive_the_same_street(store, seeded, 6)
    other = await add_sequence(store, seeded.alice,
                               [(LON, LAT + 0.003 + j * 0.0004) for j in range(12)],
                               start_ms=1_400_000_000_000)
    newest = drives[-1]
    for z in (8, 10, 12):
        seqs = await sequence_features(client, seeded.client_token, z)
        assert set(seqs) == {newest[0].sequence_id, other[0].sequence_id}, z
        p = seqs[newest[0].sequence_id]["properties"]
        assert p == {"id": newest[0].sequence_id, "image_id": newest[0].id,
                     "captured_at": newest[0].captured_at_ms, "is_pano": False,
                     "creator_id": seeded.bob.id}
    # z14 carries every sequence, properties included (the other street is in another tile).
    seqs = await sequence_features(client, seeded.client_token, 14)
    assert set(seqs) == {d[0].sequence_id for d in drives}
    assert seqs[drives[2][0].sequence_id]["properties"]["organization_id"] == seeded.org.id


async def test_a_write_is_never_followed_by_an_old_low_zoom_tile(client, store, seeded):
    drives = await drive_the_same_street(store, seeded, 2)
    before = await sequence_features(client, seeded.client_token, 10)
    assert set(before) == {drives[-1][0].sequence_id}
    # A newer drive of the same street takes its place at once, in the stored body too.
    (newer,) = await drive_the_same_street(store, seeded, 1)
    newer_id = newer[0].sequence_id
    await add_sequence(store, seeded.bob, [(LON + j * 0.0004, LAT) for j in range(12)],
                       start_ms=1_800_000_000_000)
    after = await sequence_features(client, seeded.client_token, 10)
    assert newer_id not in after and drives[-1][0].sequence_id not in after
    assert len(after) == 1 and next(iter(after.values()))["properties"]["captured_at"] == (
        1_800_000_000_000)
    # A street never driven before shows up in the tile kept in the store.
    new_street = await add_sequence(store, seeded.alice,
                                    [(LON + 0.002, LAT - 0.002 - j * 0.0004) for j in range(8)],
                                    start_ms=1_300_000_000_000)
    assert new_street[0].sequence_id in await sequence_features(client, seeded.client_token, 10)


async def test_prerendered_tiles_are_reads_and_follow_writes(store, seeded, settings: Settings):
    await drive_the_same_street(store, seeded, 3)
    assert await store.stale_rendered_tiles(6, 13, 1000)
    prerenderer = Prerenderer(store)
    rendered = await prerenderer.run_all()
    # Every z6–13 tile of both image tilesets holding the seeded world or the street.
    assert rendered >= 2 * 8
    assert await store.stale_rendered_tiles(6, 13, 1000) == []
    # A process without any tile cache reads them (no render) with a stable ETag.
    cold = TileService(store, cache_max_bytes=0)
    for z in range(6, 14):
        x, y = lnglat_to_tile(LON, LAT, z)
        first = await cold.tile("mly1_public", z, x, y)
        again = await cold.tile("mly1_public", z, x, y)
        assert first.body and first.etag == again.etag
    assert cold.renders == 0
    # A write makes exactly the tiles it touches stale; the next pass renders them again.
    await add_sequence(store, seeded.alice, [(LON, LAT + 0.001 * j) for j in range(3)],
                       start_ms=1_900_000_000_000)
    stale = await store.stale_rendered_tiles(6, 13, 1000)
    assert {(g, z) for g, z, _, _ in stale} == {(g, z) for g in ("images", "computed")
                                                 for z in range(6, 14)}
    assert all((x, y) == lnglat_to_tile(LON, LAT, z) or (x, y) == lnglat_to_tile(
        LON, LAT + 0.002, z) for _, z, x, y in stale)
    await prerenderer.run_all()
    x, y = lnglat_to_tile(LON, LAT, 9)
    tile = await cold.tile("mly1_public", 9, x, y)
    assert cold.renders == 0
    captured = {f["properties"]["captured_at"] for f in decode(tile.body)["sequence"]["features"]}
    assert 1_900_000_000_000 in captured


async def test_a_rendering_older_than_the_tile_is_never_stored(store, seeded):
    x, y = lnglat_to_tile(13.4050, 52.5200, 9)
    epoch, etag, body = await store.rendered_tile("images", 9, x, y)
    assert epoch > 0 and body is None and etag is None
    assert await store.put_rendered_tile("images", 9, x, y, epoch, '"a"', b"one")
    assert await store.rendered_tile("images", 9, x, y) == (epoch, '"a"', b"one")
    # A write bumps the epoch: the body goes stale and an old rendering is refused.
    await add_sequence(store, seeded.bob, [(13.4050, 52.5200), (13.4052, 52.5201)],
                       start_ms=1_900_000_000_000)
    new_epoch, etag, body = await store.rendered_tile("images", 9, x, y)
    assert new_epoch > epoch and body is None
    assert not await store.put_rendered_tile("images", 9, x, y, epoch, '"b"', b"old")
    assert await store.put_rendered_tile("images", 9, x, y, new_epoch, '"c"', b"new")
    assert await store.rendered_tile("images", 9, x, y) == (new_epoch, '"c"', b"new")
    # Nothing written there: epoch 0.
    assert await store.rendered_tile("images", 9, 0, 0) == (0, None, None)
    assert not await store.put_rendered_tile("images", 9, 0, 0, 0, '"d"', b"x")


async def test_the_job_runner_renders_stale_tiles_in_the_background(store, seeded, settings):
    import asyncio

    from wayview.blobs import open_blobs
    from wayview.pipeline.worker import JobRunner

    fast = settings.model_copy(update={"tiles": settings.tiles.model_copy(
        update={"prerender_interval_s": 0.05})})
    runner = JobRunner(fast, store, open_blobs(fast))
    task = asyncio.create_task(runner.run_forever())
    try:
        for _ in range(200):
            if not await store.stale_rendered_tiles(6, 13, 1):
                break
            await asyncio.sleep(0.05)
        assert await store.stale_rendered_tiles(6, 13, 1) == []
        await drive_the_same_street(store, seeded, 1)
        assert await store.stale_rendered_tiles(6, 13, 1)
        for _ in range(200):
            if not await store.stale_rendered_tiles(6, 13, 1):
                break
            await asyncio.sleep(0.05)
        assert await store.stale_rendered_tiles(6, 13, 1) == []
    finally:
        runner.stop()
        await asyncio.wait_for(task, 10)


async def test_a_tile_is_served_when_it_cannot_be_kept(store, seeded, monkeypatch, caplog):
    async def full(*args: object) -> bool:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "put_rendered_tile", full)
    x, y = lnglat_to_tile(13.4050, 52.5200, 10)
    tile = await TileService(store, cache_max_bytes=0).tile("mly1_public", 10, x, y)
    assert decode(tile.body)["sequence"]["features"]
    assert "could not keep the rendered tile" in caplog.text


async def test_a_store_that_refuses_renderings_is_logged_once_and_not_retried_per_tile(
        store, seeded, monkeypatch, caplog):
    calls = []

    async def full(*args: object) -> bool:
        calls.append(args)
        raise OSError(28, "No space left on device")

    await drive_the_same_street(store, seeded, 1)
    monkeypatch.setattr(store, "put_rendered_tile", full)
    service = TileService(store, cache_max_bytes=0)
    for z in (6, 8, 10, 12):
        x, y = lnglat_to_tile(LON, LAT, z)
        assert decode((await service.tile("mly1_public", z, x, y)).body)["sequence"]
    assert len(calls) == 1  # the next attempt waits for the probe interval
    assert caplog.text.count("could not keep the rendered tile") == 1
    # The background pass stops at the first refusal instead of rendering every stale tile.
    done = await Prerenderer(store).run_once()
    assert done.rendered == 1 and not done.more
