"""SQLite specifics: migrations are recorded and idempotent; secrets are never stored in clear."""

from __future__ import annotations

import sqlite3

import pytest

from wayview.store.migrate import load_migrations
from wayview.store.sqlite.connection import tile_rec
from wayview.store.sqlite.store import SqliteStore
from wayview.testing import seed


async def test_sqlite_migrations_apply_once(tmp_path):
    path = tmp_path / "w.db"
    newest = load_migrations("wayview.store.sqlite")[-1].version
    assert newest >= 2
    for _ in range(2):
        store = SqliteStore(path)
        await store.open()
        assert await store.schema_version() == newest
        await store.close()
    conn = sqlite3.connect(path)
    count = len(load_migrations("wayview.store.sqlite"))
    assert conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone() == (count,)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_sqlite_no_token_or_secret_in_clear(tmp_path):
    store = SqliteStore(tmp_path / "w.db")
    await store.open()
    world = await seed(store)
    await store.close()
    raw = (tmp_path / "w.db").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("w.db-*")
    )
    for secret in (world.client_token, world.user_token, world.bob_token):
        assert secret.encode() not in raw


async def test_sqlite_point_reads_inline_or_threaded_agree(tmp_path):
    results = []
    for inline in (True, False):
        store = SqliteStore(tmp_path / f"p{inline}.db", inline_point_reads=inline)
        await store.open()
        world = await seed(store)
        image = world.images[0]
        kind, entity = await store.get_node(image.id)
        assert kind == "image" and entity.id == image.id and entity.creator_username == "alice"
        assert await store.get_node(1933525276802129) is None
        # A z14 tile of mly1_public is read inline too (its pack, its lines, their keys).
        from wayview.tiles.index import IMAGE_ZOOM
        from wayview.tiles.tilemath import lnglat_to_tile

        x, y = lnglat_to_tile(image.lon, image.lat, IMAGE_ZOOM)
        tile = await store.tile_content(IMAGE_ZOOM, x, y, ("image", "sequence"))
        assert tile.images is not None and tile.lines
        keys = [tile.images.sequence_keys[int(c)] for c in tile.images.sequence_index]
        assert (image.id, image.sequence_id) in set(zip(tile.images.ids.tolist(), keys,
                                                        strict=True))
        results.append((kind, entity.captured_at_ms, len(tile.images), len(tile.lines)))
        await store.close()
    assert results[0] == results[1]


async def test_packed_tile_records_follow_the_image_columns(tmp_path):
    """Tile reads come from packed per-image records (migration 0004): they must equal the
    columns they pack, after inserts and after any later update of those columns."""
    from wayview.tiles.index import IMAGE_ZOOM
    from wayview.tiles.tilemath import lnglat_to_tile

    path = tmp_path / "w.db"
    store = SqliteStore(path)
    await store.open()
    world = await seed(store)
    im = world.images[0]
    z, x, y = IMAGE_ZOOM, *lnglat_to_tile(im.lon, im.lat, IMAGE_ZOOM)

    def expected() -> list[tuple[int, ...]]:
        conn = sqlite3.connect(path)
        low, high = _tile_bounds(z, x, y)
        rows = conn.execute(
            "SELECT id, qk, captured_at_ms, tile_compass_deg, is_pano,"
            " IFNULL(organization_id, 0), creator_id FROM images WHERE qk BETWEEN ? AND ?"
            " ORDER BY qk", (low, high)).fetchall()
        conn.close()
        return rows

    def got(cols) -> list[tuple[int, ...]]:
        return [tuple(int(v) for v in r) for r in zip(
            cols.ids, cols.codes, cols.captured_at_ms, cols.compass_deg,
            cols.is_pano.astype(int), cols.organization_ids, cols.creator_ids, strict=True)]

    cols = await store.tile_images(z, x, y)
    assert len(cols.ids) > 0 and got(cols) == expected()
    assert im.id in {int(i) for i in cols.ids}
    assert set(cols.sequence_keys) == {i.sequence_id for i in world.images
                                       if int(i.id) in {int(v) for v in cols.ids}}
    conn = sqlite3.connect(path)  # a change made outside insert_sequence (trigger keeps it)
    with pytest.raises(sqlite3.OperationalError, match="wv_tile_rec"):  # never silently stale
        conn.execute("UPDATE images SET captured_at_ms = 42 WHERE id = ?", (im.id,))
    conn.create_function("wv_tile_rec", 8, tile_rec, deterministic=True)
    conn.execute("UPDATE images SET captured_at_ms = 42, creator_id = ? WHERE id = ?",
                 (world.bob.id, im.id))
    conn.commit()
    conn.close()
    cols = await store.tile_images(z, x, y)
    assert got(cols) == expected()
    assert (42, world.bob.id) in {(r[2], r[6]) for r in got(cols)}
    # Nothing computed: mly1_computed_public's records (migration 0010) are the same, and their
    # own trigger keeps them in step too.
    computed = (await store.tile_content(z, x, y, ("image",), computed=True)).images
    assert computed is not None and got(computed) == got(cols)
    await store.close()


async def test_z14_packs_follow_moves_hiding_deletes_and_are_backfilled(tmp_path):
    """A z14 tile of `mly1_public` is read from its pack (migration 0019): the pack must hold
    exactly what the range scan over the images finds, after an image moves to another
    tile, is hidden (qk = -1), shown again and deleted, whatever statement made the change;
    an older store gets its packs from the migration."""
    import numpy as np

    from wayview.store.deletion import PACK_SHIFT
    from wayview.store.sqlite.tiles import SQL_BUILD_ALL_PACKS
    from wayview.tiles.index import IMAGE_ZOOM, unmorton_array

    path = tmp_path / "w.db"
    store = SqliteStore(path)
    await store.open()
    world = await seed(store)

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path)
        conn.create_function("wv_tile_rec", 8, tile_rec, deterministic=True)
        return conn

    def scanned() -> dict[int, bytes]:
        with connect() as conn:
            tiles = [t for (t,) in conn.execute(
                "SELECT DISTINCT qk >> ? FROM images WHERE qk >= 0", (PACK_SHIFT,))]
            return {t: conn.execute(
                "SELECT CAST(group_concat(tile_rec, '') AS BLOB) FROM (SELECT tile_rec"
                " FROM images WHERE qk BETWEEN ? AND ? ORDER BY qk)",
                (t << PACK_SHIFT, ((t + 1) << PACK_SHIFT) - 1)).fetchone()[0] for t in tiles}

    def packed() -> dict[int, bytes]:
        with connect() as conn:
            return dict(conn.execute("SELECT tile, recs FROM tile_image_packs"))

    async def served(tile: int) -> set[int]:
        xs, ys = unmorton_array(np.array([tile]))
        x, y = int(xs[0]), int(ys[0])
        return {int(i) for i in (await store.tile_images(IMAGE_ZOOM, x, y)).ids}

    assert packed() == scanned() and packed()
    home = int(world.images[0].id)
    with connect() as conn:  # moved into another z14 tile, outside any wayview code path
        (qk,) = conn.execute("SELECT qk FROM images WHERE id = ?", (home,)).fetchone()
        source = qk >> PACK_SHIFT
        target = source + 1  # the neighbouring z14 tile in Morton order
        conn.execute("UPDATE images SET qk = ? WHERE id = ?", ((target << PACK_SHIFT) + 5, home))
    assert packed() == scanned()
    assert home in await served(target) and home not in await served(source)
    with connect() as conn:  # hidden: in no pack
        conn.execute("UPDATE images SET qk = -1 WHERE id = ?", (home,))
    assert packed() == scanned() and home not in await served(target)
    assert target not in packed()
    with connect() as conn:  # shown again
        conn.execute("UPDATE images SET qk = ? WHERE id = ?", ((target << PACK_SHIFT) + 5, home))
    assert packed() == scanned() and home in await served(target)
    with connect() as conn:  # the tile's only image deleted: its pack goes
        conn.execute("DELETE FROM images WHERE id = ?", (home,))
    assert packed() == scanned() and target not in packed() and await served(target) == set()
    assert await served(source)
    await store.close()

    with connect() as conn:  # a store from before 0019
        conn.execute("DROP TABLE tile_image_packs")
        for name in ("images_pack_record", "images_pack_leave", "images_pack_delete"):
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute("DELETE FROM schema_migrations WHERE version = 19")
    store = SqliteStore(path)
    await store.open()
    assert packed() == scanned() and packed()
    await store.close()
    with connect() as conn:  # bench/bulkload.py's way: every pack at once, the same
        conn.execute("DELETE FROM tile_image_packs")
        conn.execute(SQL_BUILD_ALL_PACKS)
    assert packed() == scanned() and packed()


def _tile_bounds(z: int, x: int, y: int) -> tuple[int, int]:
    from wayview.tiles.index import tile_range

    return tile_range(z, x, y)
