"""Computed fields and the `mly1_computed_public` tile index: `set_computed_fields` writes the
SfM results, counts real changes, and moves the computed index (not the original one) with
its epochs; `insert_sequence` indexes computed positions, falling back to the original ones.
Every backend (the `store` fixture)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from wayview.model.entities import ComputedFields, Image, Sequence
from wayview.store import Store
from wayview.testing import add_sequence, make_image, seed
from wayview.tiles.index import tile_pixels
from wayview.tiles.tilemath import project, tile_bounds

#: A z14 tile in Berlin and the latitude through its middle.
X, Y = 8802, 5373
WEST, SOUTH, EAST, NORTH = tile_bounds(14, X, Y)
LAT = (SOUTH + NORTH) / 2


def fields(image: Image, lon: float | None = None, lat: float | None = None, *,
           angle: float = 91.0, merge_cc: int | None = None) -> ComputedFields:
    """SfM results for `image`: a computed position (default: 2 m north of the original)."""
    return ComputedFields(
        image_id=image.id, computed_lon=image.lon if lon is None else lon,
        computed_lat=image.lat + 0.00002 if lat is None else lat, computed_altitude_m=31.5,
        computed_compass_angle_deg=angle, computed_rotation=(0.1, -0.2, 1.5), atomic_scale=1.0,
        camera_parameters=(0.8, 0.01, -0.002), assets=3, merge_cc=merge_cc)


async def epochs(store: Store, group: str, *tiles: tuple[int, int, int]) -> list[int]:
    return [await store.tile_epoch(group, z, x, y) for z, x, y in tiles]


def pixels(cols, z: int, x: int, y: int) -> list[tuple[int, int]]:
    px, py = tile_pixels(cols.codes, z, x, y)
    return list(zip(px.tolist(), py.tolist(), strict=True))


async def test_store_set_computed_fields_writes_them_and_counts_real_changes(store):
    world = await seed(store)
    a, b = world.images[0], world.images[1]
    stored = (await store.get_images([a.id]))[a.id]
    assert await store.set_computed_fields([]) == 0
    unknown = replace(fields(a), image_id=1933525276802129)
    assert await store.set_computed_fields([fields(a, merge_cc=7), fields(b), unknown]) == 2
    got = await store.get_images([a.id, b.id])
    ga = got[a.id]
    assert (ga.computed_lon, ga.computed_lat) == (a.lon, a.lat + 0.00002)
    assert (ga.computed_altitude_m, ga.computed_compass_angle_deg) == (31.5, 91.0)
    assert ga.computed_rotation == (0.1, -0.2, 1.5) and ga.atomic_scale == 1.0
    assert ga.camera_parameters == (0.8, 0.01, -0.002) and ga.assets == 3
    assert ga.merge_cc == 7 and got[b.id].merge_cc is None
    # Nothing else of the image moves.
    assert replace(ga, computed_lon=None, computed_lat=None, computed_altitude_m=None,
                   computed_compass_angle_deg=None, computed_rotation=None, atomic_scale=None,
                   camera_parameters=a.camera_parameters, assets=0, merge_cc=None) == stored
    # The same values again change nothing (merge_cc None keeps the stored 7).
    assert await store.set_computed_fields([fields(a), fields(b)]) == 0
    assert await store.set_computed_fields([replace(fields(a), atomic_scale=2.0)]) == 1
    again = (await store.get_images([a.id]))[a.id]
    assert again.atomic_scale == 2.0 and again.merge_cc == 7
    # The last entry of an id wins.
    assert await store.set_computed_fields([fields(b, angle=10.0), fields(b, angle=20.0)]) == 1
    assert (await store.get_images([b.id]))[b.id].computed_compass_angle_deg == 20.0


async def test_store_set_computed_fields_moves_the_computed_tiles_only(store):
    user = await store.create_user("u")
    points = [(EAST - 0.0004 + k * 0.0001, LAT) for k in range(3)]  # inside (X, Y)
    images = await add_sequence(store, user, points, start_ms=1_600_000_000_000)
    moved = images[2]
    target = (EAST + 0.0002, LAT)  # about 14 m east: the neighbouring tile (X + 1, Y)
    tiles = [(14, X, Y), (14, X + 1, Y), (10, X >> 4, Y >> 4), (3, X >> 11, Y >> 11)]
    images_before = await epochs(store, "images", *tiles)
    computed_before = await epochs(store, "computed", *tiles)
    assert computed_before == images_before  # (X + 1, Y): the line's buffer reaches it
    unchanged_before = await store.tile_content(14, X, Y, ("image", "sequence"))

    assert await store.set_computed_fields([fields(moved, *target, angle=271.4)]) == 1

    # mly1_computed_public: the image moved to the neighbouring tile, the line follows it.
    there = await store.tile_content(14, X + 1, Y, ("image", "sequence"), computed=True)
    assert there.images is not None and there.images.ids.tolist() == [moved.id]
    assert there.images.compass_deg.tolist() == [271]
    px, py = project(np.array([target[0]]), np.array([target[1]]), 14, X + 1, Y)
    ((cx, cy),) = pixels(there.images, 14, X + 1, Y)
    assert abs(cx - float(px[0])) <= 1 and abs(cy - float(py[0])) <= 1
    assert [line.sequence_id for line in there.lines or []] == [moved.sequence_id]
    here = await store.tile_content(14, X, Y, ("image",), computed=True)
    assert here.images is not None and here.images.ids.tolist() == [im.id for im in images[:2]]
    # The image's computed compass; the others derive theirs from the computed positions.
    # mly1_public: untouched, rows and epochs.
    unchanged = await store.tile_content(14, X, Y, ("image", "sequence"))
    assert unchanged.images is not None and unchanged_before.images is not None
    assert unchanged.images.ids.tolist() == unchanged_before.images.ids.tolist()
    assert unchanged.images.codes.tolist() == unchanged_before.images.codes.tolist()
    assert unchanged.lines == unchanged_before.lines
    assert await epochs(store, "images", *tiles) == images_before
    # Old and new positions' tiles of every zoom are invalidated.
    after = await epochs(store, "computed", *tiles)
    assert all(a > b for a, b in zip(after, computed_before, strict=True)), after
    # Writing the same position again changes nothing, and invalidates nothing.
    assert await store.set_computed_fields([fields(moved, *target, angle=271.4)]) == 0
    assert await epochs(store, "computed", *tiles) == after
    # A change that leaves the computed position and angle alone rebuilds no tile.
    assert await store.set_computed_fields(
        [replace(fields(moved, *target, angle=271.4), assets=1)]) == 1
    assert await epochs(store, "computed", *tiles) == after
    # Moving it back empties the neighbouring tile again.
    assert await store.set_computed_fields([fields(moved, *points[2], angle=271.4)]) == 1
    there = await store.tile_content(14, X + 1, Y, ("image",), computed=True)
    assert there.images is not None and len(there.images) == 0
    assert (await epochs(store, "computed", (14, X + 1, Y)))[0] > after[1]


async def test_store_insert_sequence_indexes_computed_positions_with_fallback(store):
    user = await store.create_user("u")
    seq = Sequence(id="cccccccccccccccccccccc", creator_id=user.id)
    ids = await store.reserve_ids("image", 4)
    lon0 = EAST - 0.0003

    def image(k: int, lon: float, lat: float, **kw) -> Image:
        return make_image(id=ids[k], sequence_id=seq.id, creator_id=user.id,
                          captured_at_ms=1000 * (k + 1), lon=lon, lat=lat,
                          content_sha256=str(k), **kw)

    images = [
        # no angle, nothing computed: the bearing to the next image as drawn (east in
        # mly1_public, north in mly1_computed_public)
        image(0, lon0, LAT, compass_angle_deg=None),
        # a computed position but no computed angle: the original angle (45)
        image(1, lon0 + 0.0001, LAT, computed_lon=lon0, computed_lat=LAT + 0.0001),
        # computed position in the neighbouring tile, computed angle
        image(2, lon0 + 0.0002, LAT, computed_lon=EAST + 0.0001, computed_lat=LAT,
              computed_compass_angle_deg=80.0),
        # a computed angle only: drawn at its original position
        image(3, lon0 + 0.00025, LAT, computed_compass_angle_deg=100.0),
    ]
    await store.insert_sequence(seq, images)

    def angles(cols) -> dict[int, int]:
        return dict(zip(cols.ids.tolist(), cols.compass_deg.tolist(), strict=True))

    there = await store.tile_content(14, X + 1, Y, ("image",), computed=True)
    assert there.images is not None and angles(there.images) == {ids[2]: 80}
    here = await store.tile_content(14, X, Y, ("image",), computed=True)
    assert here.images is not None
    assert angles(here.images) == {ids[0]: 0, ids[1]: 45, ids[3]: 100}
    original = await store.tile_content(14, X, Y, ("image",))
    assert original.images is not None
    assert angles(original.images) == {ids[0]: 90, ids[1]: 45, ids[2]: 45, ids[3]: 45}
    assert (await epochs(store, "computed", (14, X + 1, Y)))[0] > 0
    beside = await store.tile_content(14, X + 1, Y, ("image",))
    assert beside.images is not None and len(beside.images) == 0
    # Overview (z0–5) points too: a one-image sequence's representative is drawn at its
    # computed position (far off here, so that it shows at z5).
    lone = make_image(id=(await store.reserve_ids("image", 1))[0], sequence_id="d" * 22,
                      creator_id=user.id, lon=lon0, lat=LAT - 0.01, computed_lon=lon0 + 0.05,
                      computed_lat=LAT - 0.01, content_sha256="lone")
    await store.insert_sequence(Sequence(id="d" * 22, creator_id=user.id), [lone])
    z, x5, y5 = 5, X >> 9, Y >> 9
    for computed, lon in ((False, lon0), (True, lon0 + 0.05)):
        view = await store.tile_content(z, x5, y5, ("overview",), computed=computed)
        assert view.overview is not None
        at = dict(zip(view.overview.ids.tolist(), pixels(view.overview, z, x5, y5),
                      strict=True))
        px, py = project(np.array([lon]), np.array([LAT - 0.01]), z, x5, y5)
        assert abs(at[lone.id][0] - float(px[0])) <= 1 and abs(at[lone.id][1] - float(py[0])) <= 1


async def test_store_seeded_computed_tiles_equal_the_original_ones_without_computed_values(
        store):
    await seed(store)
    for z, layers in ((14, ("image", "sequence")), (10, ("sequence",)), (3, ("overview",))):
        x, y = X >> (14 - z), Y >> (14 - z)
        original = await store.tile_content(z, x, y, layers)
        computed = await store.tile_content(z, x, y, layers, computed=True)
        for name in ("images", "overview"):
            a, b = getattr(original, name), getattr(computed, name)
            assert (a is None) == (b is None)
            if a is not None:
                assert len(a) > 0 and a.ids.tolist() == b.ids.tolist()
                assert a.codes.tolist() == b.codes.tolist()
                assert a.compass_deg.tolist() == b.compass_deg.tolist()
        assert original.lines == computed.lines
        assert await store.tile_epoch("computed", z, x, y) > 0


#: What undoes migration 0010 (SQLite) / 0006 (PostgreSQL): a store as it was before them.
_UNDO_COMPUTED_INDEX = (
    "DROP INDEX images_computed_tile",
    "DROP INDEX sequences_computed_pending",
    "DROP TABLE tile_overview_computed",
    "DROP TABLE tile_sequence_lines_computed",
    "ALTER TABLE images DROP COLUMN computed_tile_rec",
    "ALTER TABLE images DROP COLUMN computed_tile_compass_deg",
    "ALTER TABLE images DROP COLUMN computed_qk",
    "ALTER TABLE sequences DROP COLUMN computed_tiles",
    "DELETE FROM tile_epochs WHERE grp = 'computed'",
)


def _undo_computed_index(store: Store, settings) -> None:
    """Turn the store's database back into one written before the computed tile index."""
    from wayview.store.migrate import load_migrations

    backend = "sqlite" if type(store).__name__ == "SqliteStore" else "postgres"
    (version,) = [m.version for m in load_migrations(f"wayview.store.{backend}")
                  if m.name.endswith("_computed_tiles.sql")]
    statements = [*_UNDO_COMPUTED_INDEX, f"DELETE FROM schema_migrations WHERE version = {version}"]
    if backend == "sqlite":
        statements.insert(0, "DROP TRIGGER images_computed_tile_rec")
        import sqlite3

        conn = sqlite3.connect(settings.database_path)
        for statement in statements:
            conn.execute(statement)
        conn.commit()
        conn.close()
    else:
        import psycopg

        with psycopg.connect(settings.database_url) as pg:
            for statement in statements:
                pg.execute(statement)


async def _computed_tiles(store: Store) -> list[object]:
    out: list[object] = []
    for z, layers in ((14, ("image", "sequence")), (10, ("sequence",)), (5, ("overview",))):
        for x, y in ((X >> (14 - z), Y >> (14 - z)), ((X + 1) >> (14 - z), Y >> (14 - z))):
            content = await store.tile_content(z, x, y, layers, computed=True)
            for cols in (content.images, content.overview):
                out.append(None if cols is None else (
                    cols.ids.tolist(), cols.codes.tolist(), cols.compass_deg.tolist(),
                    [cols.sequence_keys[i] for i in cols.sequence_index]))
            out.append(content.lines)
            out.append(await store.tile_epoch("computed", z, x, y) > 0)
    return out


async def test_store_opened_after_the_migration_builds_the_computed_index_of_old_sequences(
        store, settings):
    """A store written before the computed tile index existed: the migration copies the rows
    of sequences without computed values, the first open builds the others; the computed
    tiles are then those a fresh write gives."""
    from wayview.testing import open_test_store

    world = await seed(store)
    points = [(EAST - 0.0004 + k * 0.0001, LAT) for k in range(3)]
    moved = await add_sequence(store, world.bob, points, start_ms=1_700_000_000_000)
    await store.set_computed_fields([fields(im, EAST + 0.0001 + k * 0.0001, LAT, angle=10.0 * k)
                                     for k, im in enumerate(moved)])
    expected = await _computed_tiles(store)
    assert expected[0] is not None and moved[0].id in expected[0][0] + expected[4][0]
    _undo_computed_index(store, settings)
    async with open_test_store(settings) as again:
        assert await _computed_tiles(again) == expected
        # and it keeps working: a new write moves the computed tiles again
        assert await again.set_computed_fields([fields(moved[0], *points[0])]) == 1
        here = await again.tile_content(14, X, Y, ("image",), computed=True)
        assert here.images is not None and moved[0].id in here.images.ids.tolist()
