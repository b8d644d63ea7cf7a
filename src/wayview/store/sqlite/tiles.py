"""wayview.store.sqlite.tiles: the tile index on SQLite: reading one tile's rows, writing a
sequence's rows, and rebuilding the `mly1_computed_public` index of stored sequences.

Every function runs on a connection of `Database` (a reader thread, or the writer thread
inside its transaction); `SqliteStore` calls them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from collections.abc import Sequence as Seq
from typing import Any

import numpy as np

from wayview.model.entities import TileImageColumns, TileLine
from wayview.store.columns import (
    COMPUTED_INDEX,
    COMPUTED_SOURCE_COLUMNS,
    TILE_INDEXES,
    TileIndex,
    tile_image_columns,
    tile_line_from_row,
    unique_codes,
)
from wayview.store.deletion import PACK_SHIFT
from wayview.tiles.index import (
    IMAGE_ZOOM,
    OVERVIEW_PER_CELL,
    SequenceTileRows,
    code_tiles,
    computed_position,
    morton,
    rows_at,
    tile_range,
)

# SQLite allows 32,766 host parameters; batch below that.
_BATCH = 900

SQL_BUMP_EPOCH = (
    "INSERT INTO tile_epochs (grp, z, tile, epoch) VALUES (?, ?, ?, 1)"
    " ON CONFLICT (grp, z, tile) DO UPDATE SET epoch = epoch + 1"
)
#: A tile's packed image records in one BLOB (migration 0004); the subquery fixes the order.
_TILE_RECS = "SELECT CAST(group_concat(tile_rec, '') AS BLOB) FROM ({}) AS recs"
#: Per index (by `computed`): a tile's image records, its overview records, its lines. Images
#: with one computed position (a tie) come by id, as on PostgreSQL (migration 0010's index).
_IMAGES_SQL = {
    False: _TILE_RECS.format(
        "SELECT tile_rec FROM images WHERE qk BETWEEN ? AND ? ORDER BY qk"),
    True: _TILE_RECS.format(
        f"SELECT {COMPUTED_INDEX.rec} AS tile_rec FROM images"
        f" WHERE {COMPUTED_INDEX.qk} BETWEEN ? AND ? ORDER BY {COMPUTED_INDEX.qk}, id"),
}
#: A z14 tile's `image` records from its pack (migration 0019: `_IMAGES_SQL[False]` kept).
_PACK_SQL = "SELECT recs FROM tile_image_packs WHERE tile = ?"
#: Rebuild the pack of one z14 tile from its images' records (no image left: no pack), as the
#: triggers of migration 0019 do: the very read a pack replaces, kept.
_SQL_DROP_PACK = "DELETE FROM tile_image_packs WHERE tile = ?"
_SQL_PACK = (f"INSERT INTO tile_image_packs (tile, recs) SELECT ?, r FROM"
             f" (SELECT ({_IMAGES_SQL[False]}) AS r) WHERE r IS NOT NULL")
#: Every pack from scratch (the last statement of migration 0019; bench/bulkload.py).
SQL_BUILD_ALL_PACKS = (
    "INSERT INTO tile_image_packs (tile, recs) SELECT t.tile, (SELECT CAST(group_concat("
    "tile_rec, '') AS BLOB) FROM (SELECT tile_rec FROM images WHERE qk BETWEEN t.tile << 24"
    " AND (t.tile << 24) + 16777215 ORDER BY qk)) FROM (SELECT DISTINCT qk >> 24 AS tile"
    " FROM images WHERE qk >= 0) AS t"
)
_OVERVIEW_SQL = {
    computed: _TILE_RECS.format(
        f"SELECT i.{ix.rec} AS tile_rec FROM {ix.overview} o JOIN images i ON i.id = o.image_id"
        " WHERE o.z = ? AND o.cell BETWEEN ? AND ? ORDER BY o.cell, i.id")
    for computed, ix in TILE_INDEXES.items()
}
_LINES_SQL = {
    computed: f"{ix.lines_sql} WHERE l.z = ? AND l.tile = ? ORDER BY l.sequence_id"
    for computed, ix in TILE_INDEXES.items()
}


def _chunks(values: Seq[Any], size: int = _BATCH) -> Iterable[Seq[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _placeholders(n: int) -> str:
    return ",".join("?" * n)


# -- reads --------------------------------------------------------------------------------------


def tile_images(conn: sqlite3.Connection, z: int, x: int, y: int, *,
                computed: bool = False) -> TileImageColumns:
    """Every image inside a tile (the z14 `image` layer): one pack read for a z14 tile of
    `mly1_public`, else a range scan."""
    if z == IMAGE_ZOOM and not computed:
        return _image_columns(conn, _PACK_SQL, (morton(x, y),))
    return _image_columns(conn, _IMAGES_SQL[computed], tile_range(z, x, y))


def pack_tiles(conn: sqlite3.Connection, qks: Iterable[int]) -> None:
    """Rebuild the z14 packs of the images with these codes (hidden ones, < 0, have none):
    `insert_sequence` calls it once per tile it wrote to; any later change is packed by
    the triggers of migration 0019."""
    for tile in sorted({qk >> PACK_SHIFT for qk in qks if qk >= 0}):
        low = tile << PACK_SHIFT
        conn.execute(_SQL_DROP_PACK, (tile,))
        conn.execute(_SQL_PACK, (tile, low, low + (1 << PACK_SHIFT) - 1))


def tile_overview(conn: sqlite3.Connection, z: int, x: int, y: int, *,
                  computed: bool = False) -> TileImageColumns:
    """The representative images of a z0–5 tile."""
    low, high = tile_range(z, x, y, z + 5)
    return _image_columns(conn, _OVERVIEW_SQL[computed], (z, low, high))


def tile_sequence_lines(conn: sqlite3.Connection, z: int, x: int, y: int, *,
                        computed: bool = False) -> list[TileLine]:
    """The pre-clipped sequence lines of a z6–14 tile."""
    rows = conn.execute(_LINES_SQL[computed], (z, morton(x, y))).fetchall()
    return [tile_line_from_row(r) for r in rows]


def _image_columns(
    conn: sqlite3.Connection, sql: str, params: tuple[int, ...]
) -> TileImageColumns:
    """Run a `_TILE_RECS` query straight into integer arrays (no per-row objects)."""
    row = conn.execute(sql, params).fetchone()
    blob = row[0] if row is not None else None  # a z14 tile without a pack: no image
    table = np.frombuffer(blob or b"", dtype="<i8").reshape(-1, 8).astype(np.int64)
    rowids, index = unique_codes(table[:, 7])
    keys: dict[int, str] = {}
    wanted = [int(r) for r in rowids]
    for chunk in _chunks(wanted):
        found = conn.execute(
            f"SELECT rowid, id FROM sequences WHERE rowid IN ({_placeholders(len(chunk))})",
            chunk,
        )
        keys.update(found.fetchall())
    return tile_image_columns(table, index, tuple(keys[r] for r in wanted))


# -- writes -------------------------------------------------------------------------------------


def write_lines_and_overview(conn: sqlite3.Connection, index: TileIndex, sequence_id: str,
                             rows: SequenceTileRows) -> None:
    """Insert a sequence's overview cells (at most OVERVIEW_PER_CELL sequences per cell) and
    its lines into the tables of `index`."""
    conn.executemany(
        f"INSERT OR IGNORE INTO {index.overview} (z, cell, sequence_id, image_id)"
        " SELECT ?1, ?2, ?3, ?4 WHERE (SELECT COUNT(*) FROM"
        f" {index.overview} WHERE z = ?1 AND cell = ?2) < ?5",
        [(z, cell, sequence_id, image_id, OVERVIEW_PER_CELL)
         for z, cell, image_id in rows.overview],
    )
    conn.executemany(
        f"INSERT INTO {index.lines} (z, tile, sequence_id, coords) VALUES (?, ?, ?, ?)",
        [(z, tile, sequence_id, blob) for z, tile, blob in rows.lines],
    )


def bump_epochs(conn: sqlite3.Connection, group: str, tiles: Iterable[tuple[int, int]]) -> None:
    """Bump the epochs of tiles (zoom, Morton code) of one group, in key order."""
    conn.executemany(SQL_BUMP_EPOCH, [(group, z, tile) for z, tile in sorted(tiles)])


def rebuild_computed(conn: sqlite3.Connection, sequence_ids: Seq[str]) -> None:
    """Rebuild the `mly1_computed_public` index of whole stored sequences from their images
    (codes, angles, overview cells, lines) and bump the "computed" epochs of every tile the
    old and the new rows are in. Called inside the writer's transaction."""
    ix = COMPUTED_INDEX
    touched: set[tuple[int, int]] = set()
    for sequence_id in sequence_ids:
        rows = conn.execute(
            f"SELECT {COMPUTED_SOURCE_COLUMNS}, {ix.qk} FROM images WHERE sequence_id = ?"
            # Hidden images (issue #17) stay out of the tile indexes.
            " AND id NOT IN (SELECT image_id FROM hidden_images)"
            " ORDER BY captured_at_ms, id", (sequence_id,)).fetchall()
        ids = [r[0] for r in rows]
        touched |= code_tiles(r[-1] for r in rows)
        touched.update(conn.execute(f"SELECT z, tile FROM {ix.lines} WHERE sequence_id = ?",
                                    (sequence_id,)).fetchall())
        new = rows_at(ids, [computed_position(*r[1:7]) for r in rows])
        touched |= new.touched
        # The trigger of migration 0010 packs the new records.
        conn.executemany(
            f"UPDATE images SET {ix.qk} = ?, {ix.compass} = ? WHERE id = ?",
            [(qk, compass, image_id)
             for image_id, qk, compass in zip(ids, new.qk, new.compass, strict=True)])
        conn.execute(f"DELETE FROM {ix.overview} WHERE sequence_id = ?", (sequence_id,))
        conn.execute(f"DELETE FROM {ix.lines} WHERE sequence_id = ?", (sequence_id,))
        write_lines_and_overview(conn, ix, sequence_id, new)
        conn.execute("UPDATE sequences SET computed_tiles = 1 WHERE id = ?", (sequence_id,))
    bump_epochs(conn, ix.group, touched)


def rebuild_pending_computed(conn: sqlite3.Connection, limit: int) -> int:
    """Build the computed index of up to `limit` sequences that have none yet (stored before
    migration 0010 with computed positions); how many were built."""
    pending = [r[0] for r in conn.execute(
        "SELECT id FROM sequences WHERE computed_tiles = 0 ORDER BY id LIMIT ?", (limit,))]
    rebuild_computed(conn, pending)
    return len(pending)
