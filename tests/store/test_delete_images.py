"""`Store.delete_images`: deleted images, their detections and emptied sequences vanish from
every read a client reaches (entities, searches, node ids, both image tilesets), the lines of
the sequences that keep images go through what is left, and the epochs of the tiles that
showed them go up. Every backend (the `store` fixture)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from wayview.model.entities import (
    ComputedFields,
    DeletedImages,
    Detection,
    DetectionSearch,
    Image,
    ImageSearch,
    MapFeature,
    TileContent,
)
from wayview.store import Store
from wayview.testing import add_sequence, seed
from wayview.tiles.index import decode_parts, tile_pixels
from wayview.tiles.tilemath import project, tile_bounds

#: A z14 tile in Berlin and the latitude through its middle.
X, Y = 8802, 5373
WEST, SOUTH, EAST, NORTH = tile_bounds(14, X, Y)
LAT = (SOUTH + NORTH) / 2
#: (zoom, x, y) of the tile holding (X, Y) at a zoom of each layer: image, sequence, overview.
TILES = [(14, X, Y), (12, X >> 2, Y >> 2), (10, X >> 4, Y >> 4), (5, X >> 9, Y >> 9),
         (3, X >> 11, Y >> 11)]
#: Layers read at each zoom, as the tile service asks for them.
LAYERS = {14: ("image", "sequence"), 12: ("sequence",), 10: ("sequence",), 5: ("overview",),
          3: ("overview",)}
#: Where the other sequence lives: five z14 tiles east (no tile shared down to z12).
OTHER_X = X + 5
UNKNOWN_ID = 1933525276802129
BOX = ((0.4, 0.4), (0.6, 0.4), (0.6, 0.6), (0.4, 0.6))


async def epochs(store: Store, group: str, tiles: list[tuple[int, int, int]]) -> list[int]:
    return [await store.tile_epoch(group, z, x, y) for z, x, y in tiles]


def tile_ids(content: TileContent) -> dict[str, list[int]]:
    """The image ids of each image layer, and the sequences of the lines."""
    out: dict[str, list[int]] = {}
    for name in ("images", "overview"):
        cols = getattr(content, name)
        if cols is not None:
            out[name] = sorted(cols.ids.tolist())
    if content.lines is not None:
        out["lines"] = sorted(line.image_id for line in content.lines)
    return out


async def everything(store: Store, computed: bool) -> dict[tuple[int, int, int], object]:
    """What a client sees of every tile of TILES (and the other sequence's z14 tile)."""
    out: dict[tuple[int, int, int], object] = {}
    for z, x, y in [*TILES, (14, OTHER_X, Y)]:
        content = await store.tile_content(z, x, y, LAYERS[z], computed=computed)
        out[(z, x, y)] = (tile_ids(content), sorted(line.sequence_id for line in content.lines)
                          if content.lines is not None else None)
    return out


async def two_sequences(store: Store) -> tuple[list[Image], list[Image], list[MapFeature]]:
    """Sequence `a`: three images in (X, Y), no compass angle (each is drawn towards the
    next), turning north at the second; its first image has a computed angle. Sequence `b`:
    two images in (OTHER_X, Y). A detection on each of a's first two images, evidence of a
    feature each, and an unlinked one on the second."""
    user = await store.create_user("u")
    lon0 = WEST + 0.0008
    a = await add_sequence(store, user, [(lon0, LAT), (lon0 + 0.0002, LAT),
                                         (lon0 + 0.0002, LAT + 0.0002)],
                           start_ms=1_600_000_000_000, compass_angle_deg=None)
    west_b = tile_bounds(14, OTHER_X, Y)[0]
    b = await add_sequence(store, user, [(west_b + 0.0008, LAT), (west_b + 0.0010, LAT)],
                           start_ms=1_600_000_100_000)
    await store.set_computed_fields([ComputedFields(
        image_id=a[0].id, computed_lon=a[0].lon, computed_lat=a[0].lat,
        computed_altitude_m=None, computed_compass_angle_deg=10.0, computed_rotation=None,
        atomic_scale=None, camera_parameters=a[0].camera_parameters, assets=0)])
    feature_ids = await store.reserve_ids("map_feature", 2)
    features = [MapFeature(id=fid, object_value="object--street-light", object_type="point",
                           lon=lon0 + 0.0001, lat=LAT + 0.0001, first_seen_at_ms=0,
                           last_seen_at_ms=0) for fid in feature_ids]
    await store.insert_map_features(features)
    detection_ids = await store.reserve_ids("detection", 3)
    await store.insert_detections([
        Detection(id=detection_ids[0], image_id=a[0].id, value="object--street-light",
                  geometry=(BOX,), created_at_ms=1, map_feature_id=feature_ids[0]),
        Detection(id=detection_ids[1], image_id=a[1].id, value="object--street-light",
                  geometry=(BOX,), created_at_ms=2, map_feature_id=feature_ids[1]),
        Detection(id=detection_ids[2], image_id=a[1].id, value="object--bench",
                  geometry=(BOX,), created_at_ms=3),
    ])
    return a, b, features


def line_pixels(content: TileContent, z: int, x: int, y: int) -> list[list[tuple[int, int]]]:
    assert content.lines is not None
    return [[(int(px), int(py)) for px, py in part.tolist()]
            for line in content.lines for part in decode_parts(line.coords)]


def pixels_of(images: list[Image], z: int, x: int, y: int) -> list[tuple[int, int]]:
    px, py = project(np.array([im.lon for im in images]), np.array([im.lat for im in images]),
                     z, x, y)
    return list(zip(px.tolist(), py.tolist(), strict=True))


def near(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> bool:
    return len(a) == len(b) and all(
        abs(p[0] - q[0]) <= 1 and abs(p[1] - q[1]) <= 1 for p, q in zip(a, b, strict=True))


async def test_store_delete_images_one_image_of_a_sequence(store):
    a, b, features = await two_sequences(store)
    gone = a[1]
    detections = (await store.detections_for_images([gone.id]))[gone.id]
    assert len(detections) == 2
    images_before = await epochs(store, "images", TILES)
    computed_before = await epochs(store, "computed", TILES)
    other = [(14, OTHER_X, Y), (12, OTHER_X >> 2, Y >> 2)]
    other_before = (await epochs(store, "images", other), await epochs(store, "computed", other))
    b_tile = [await store.tile_content(14, OTHER_X, Y, LAYERS[14], computed=c)
              for c in (False, True)]

    deleted = await store.delete_images([gone.id, UNKNOWN_ID])

    assert deleted == DeletedImages(image_ids=(gone.id,), shrunk_sequence_ids=(gone.sequence_id,),
                                    feature_ids=(features[1].id,))
    # The entity, its node id and its detections are gone (GET /{id} answers 404).
    assert await store.get_images([gone.id]) == {}
    assert await store.get_node(gone.id) is None
    assert await store.node_kinds([gone.id, *(d.id for d in detections)]) == {}
    for d in detections:
        assert await store.get_node(d.id) is None
    assert await store.get_detections([d.id for d in detections]) == {}
    assert await store.detections_for_images([gone.id]) == {gone.id: []}
    found = await store.search_detections(DetectionSearch(bbox=(WEST, SOUTH, EAST, NORTH)))
    assert [d.image_id for d in found.items] == [a[0].id]
    # The feature is the caller's to re-place: still there, without that evidence.
    assert set(await store.get_map_features([f.id for f in features])) == {
        f.id for f in features}
    assert await store.detections_for_features([features[1].id]) == {features[1].id: []}
    # Searches.
    page = await store.search_images(ImageSearch(bbox=(WEST, SOUTH, EAST, NORTH)))
    assert [im.id for im in page.items] == [a[0].id, a[2].id]
    page = await store.search_images(ImageSearch(sequence_ids=(gone.sequence_id,)))
    assert [im.id for im in page.items] == [a[0].id, a[2].id]
    page = await store.search_images(ImageSearch(image_ids=(gone.id, a[2].id)))
    assert [im.id for im in page.items] == [a[2].id]
    assert await store.count_images() == 4
    # Both tilesets: the image is in no layer of any zoom; the line joins the other two.
    for computed in (False, True):
        for z, x, y in TILES:
            content = await store.tile_content(z, x, y, LAYERS[z], computed=computed)
            ids = tile_ids(content)
            others = {im.id for im in b}
            for name in ("images", "overview"):
                if name in ids:
                    mine = [i for i in ids[name] if i not in others]
                    # One representative per sequence and overview cell: the first image.
                    want = sorted([a[0].id, a[2].id]) if name == "images" else [a[0].id]
                    assert mine == want, (computed, z, name)
            if content.lines is not None:
                lines = [line for line in content.lines if line.sequence_id == gone.sequence_id]
                assert [line.image_id for line in lines] == [a[0].id]
                drawn = line_pixels(replace(content, lines=lines), z, x, y)
                assert near(drawn[0], pixels_of([a[0], a[2]], z, x, y)), (computed, z, drawn)
        here = await store.tile_content(14, X, Y, ("image",), computed=computed)
        assert here.images is not None
        angles = dict(zip(here.images.ids.tolist(), here.images.compass_deg.tolist(),
                          strict=True))
        # a[0] was drawn towards a[1] (east, 90), a[2] from a[1] (north, 0); now both along
        # a[0] → a[2] (north-east: 31 at this latitude). a[0]'s computed angle (10) stays in
        # mly1_computed_public.
        assert angles == {a[0].id: 10 if computed else 31, a[2].id: 31}
        px, py = tile_pixels(here.images.codes, 14, X, Y)
        at = dict(zip(here.images.ids.tolist(), zip(px.tolist(), py.tolist(), strict=True),
                      strict=True))
        assert near([at[a[0].id], at[a[2].id]], pixels_of([a[0], a[2]], 14, X, Y))
    # Every zoom's tile of both groups was invalidated; the other sequence's were not.
    assert all(n > o for n, o in zip(await epochs(store, "images", TILES), images_before,
                                     strict=True))
    assert all(n > o for n, o in zip(await epochs(store, "computed", TILES), computed_before,
                                     strict=True))
    assert (await epochs(store, "images", other), await epochs(store, "computed", other)) \
        == other_before
    for computed in (False, True):
        after = await store.tile_content(14, OTHER_X, Y, LAYERS[14], computed=computed)
        assert tile_ids(after) == tile_ids(b_tile[computed]) and after.lines == \
            b_tile[computed].lines
    assert tile_ids(b_tile[False]) == {"images": sorted(im.id for im in b),
                                       "lines": [b[0].id]}


async def test_store_delete_images_first_image_moves_the_line_and_overview(store):
    a, b, features = await two_sequences(store)
    assert await store.delete_images([a[0].id]) == DeletedImages(
        image_ids=(a[0].id,), shrunk_sequence_ids=(a[0].sequence_id,),
        feature_ids=(features[0].id,))
    for computed in (False, True):
        content = await store.tile_content(14, X, Y, LAYERS[14], computed=computed)
        assert content.lines is not None and len(content.lines) == 1
        line = content.lines[0]
        assert (line.image_id, line.captured_at_ms) == (a[1].id, a[1].captured_at_ms)
        assert near(line_pixels(content, 14, X, Y)[0], pixels_of(a[1:], 14, X, Y))
        for z in (5, 3):
            x, y = X >> (14 - z), Y >> (14 - z)
            overview = (await store.tile_content(z, x, y, ("overview",),
                                                 computed=computed)).overview
            assert overview is not None
            assert sorted(overview.ids.tolist()) == sorted([a[1].id, b[0].id])


async def test_store_delete_images_all_images_remove_the_sequence(store):
    a, b, features = await two_sequences(store)
    before = {c: await everything(store, c) for c in (False, True)}
    images_before = await epochs(store, "images", TILES)
    computed_before = await epochs(store, "computed", TILES)
    other = [(14, OTHER_X, Y)]
    other_before = (await epochs(store, "images", other), await epochs(store, "computed", other))

    deleted = await store.delete_images([im.id for im in reversed(a)])

    assert deleted == DeletedImages(image_ids=tuple(sorted(im.id for im in a)),
                                    emptied_sequence_ids=(a[0].sequence_id,),
                                    feature_ids=tuple(sorted(f.id for f in features)))
    for im in a:
        assert await store.get_node(im.id) is None
    assert await store.get_images([im.id for im in a]) == {}
    page = await store.search_images(ImageSearch(sequence_ids=(a[0].sequence_id,)))
    assert page.items == []
    page = await store.search_images(ImageSearch(bbox=(WEST, SOUTH, EAST, NORTH)))
    assert page.items == []
    assert (await store.search_detections(
        DetectionSearch(bbox=(WEST, SOUTH, EAST, NORTH)))).items == []
    # Every tile shows what it showed, without the sequence (the other one stays).
    mine = {im.id for im in a}
    for computed in (False, True):
        expected = {
            tile: ({name: [i for i in ids if i not in mine] for name, ids in shown.items()},
                   None if lines is None else [s for s in lines if s != a[0].sequence_id])
            for tile, (shown, lines) in before[computed].items()}
        assert await everything(store, computed) == expected
        assert any(mine & set(ids) for shown, _ in before[computed].values()
                   for ids in shown.values())
        z3 = expected[(3, X >> 11, Y >> 11)]
        assert z3 == ({"overview": [b[0].id]}, None)
    assert all(n > o for n, o in zip(await epochs(store, "images", TILES), images_before,
                                     strict=True))
    assert all(n > o for n, o in zip(await epochs(store, "computed", TILES), computed_before,
                                     strict=True))
    assert (await epochs(store, "images", other), await epochs(store, "computed", other)) \
        == other_before
    # The other sequence can still be shrunk.
    assert await store.delete_images([b[0].id]) == DeletedImages(
        image_ids=(b[0].id,), shrunk_sequence_ids=(b[0].sequence_id,))


async def test_store_delete_images_unknown_or_twice_is_a_no_op(store):
    a, _, _ = await two_sequences(store)
    assert await store.delete_images([]) == DeletedImages()
    snapshot = [await epochs(store, g, TILES) for g in ("images", "computed")]
    assert await store.delete_images([UNKNOWN_ID]) == DeletedImages()
    assert [await epochs(store, g, TILES) for g in ("images", "computed")] == snapshot
    first = await store.delete_images([a[2].id, a[2].id])
    assert first.image_ids == (a[2].id,)
    snapshot = [await epochs(store, g, TILES) for g in ("images", "computed")]
    tiles = {c: await everything(store, c) for c in (False, True)}
    assert await store.delete_images([a[2].id]) == DeletedImages()
    assert [await epochs(store, g, TILES) for g in ("images", "computed")] == snapshot
    assert {c: await everything(store, c) for c in (False, True)} == tiles


async def test_store_delete_images_across_sequences_of_the_seeded_world(store):
    world = await seed(store)
    s1, s2, s3 = world.sequences.values()
    count = await store.count_images()
    wanted = [s1[7].id, *(im.id for im in s3), s1[2].id, UNKNOWN_ID]
    deleted = await store.delete_images(wanted)
    assert deleted.image_ids == tuple(sorted([s1[7].id, s1[2].id, *(im.id for im in s3)]))
    assert deleted.emptied_sequence_ids == (s3[0].sequence_id,)
    assert deleted.shrunk_sequence_ids == (s1[0].sequence_id,)
    assert deleted.feature_ids == tuple(sorted(f.id for f in world.features))
    assert await store.count_images() == count - 6
    # Feature 0 keeps the evidence of s1[5]; feature 1 has none left.
    evidence = await store.detections_for_features([f.id for f in world.features])
    assert [d.image_id for d in evidence[world.features[0].id]] == [s1[5].id]
    assert evidence[world.features[1].id] == []
    page = await store.search_images(ImageSearch(sequence_ids=(s1[0].sequence_id,)))
    assert [im.id for im in page.items] == [im.id for im in s1 if im.id not in wanted]
    page = await store.search_images(ImageSearch(sequence_ids=(s2[0].sequence_id,)))
    assert [im.id for im in page.items] == [im.id for im in s2]


async def test_store_delete_images_concurrent_writers_of_the_same_tiles(store):
    """Deletions of the same sequences, and a new sequence in the same tiles, at once: every
    writer finishes (no deadlock on PostgreSQL) and the tiles show what is left."""
    import asyncio

    a, b, _ = await two_sequences(store)
    user = await store.create_user("v")
    results = await asyncio.gather(
        store.delete_images([a[1].id]), store.delete_images([a[0].id, b[0].id]),
        store.delete_images([a[1].id, b[1].id]),
        add_sequence(store, user, [(im.lon, im.lat + 0.00001) for im in a],
                     start_ms=1_700_000_000_000))
    deleted = sorted(i for r in results[:3] for i in r.image_ids)
    assert deleted == sorted([a[0].id, a[1].id, b[0].id, b[1].id])
    new = results[3]
    for computed in (False, True):
        content = await store.tile_content(14, X, Y, LAYERS[14], computed=computed)
        assert content.images is not None and content.lines is not None
        assert sorted(content.images.ids.tolist()) == sorted([a[2].id, *(im.id for im in new)])
        assert [line.sequence_id for line in content.lines] == [new[0].sequence_id]
        other = await store.tile_content(14, OTHER_X, Y, LAYERS[14], computed=computed)
        assert tile_ids(other) == {"images": [], "lines": []}
