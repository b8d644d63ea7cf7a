"""wayview.store.postgres.tiles: the tile index on PostgreSQL: the statements reading one
tile, and writing a sequence's overview cells and lines, epoch bumps, and rebuilding the
`mly1_computed_public` index of stored sequences (inside the caller's transaction).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable
from collections.abc import Sequence as Seq
from typing import Any

import numpy as np

from wayview.model.entities import TileContent, TileImageColumns
from wayview.store.columns import (
    COMPUTED_INDEX,
    COMPUTED_SOURCE_COLUMNS,
    TILE_LINES_SQL,
    TileIndex,
    tile_image_columns,
    tile_line_from_row,
    unique_codes,
)
from wayview.store.postgres.connection import TILE_REC_DTYPE, Conn, Database
from wayview.tiles.index import (
    IMAGE_ZOOM,
    OVERVIEW_PER_CELL,
    QK_ZOOM,
    SequenceTileRows,
    code_tiles,
    computed_position,
    morton,
    rows_at,
    tile_range,
)

#: Images of one tile as (packed records in tile order, sequence numbers, sequence keys), in
#: one round trip. `{recs}` selects `tile_rec, sequence_no` in tile order. The sequences are
#: looked up by their distinct numbers (index probes), not joined against the whole table.
_TILE_COLUMNS = (
    "WITH r AS (SELECT string_agg(tile_rec, ''::bytea) AS blob,"
    " array_agg(DISTINCT sequence_no) AS nos FROM ({recs}) t)"
    " SELECT r.blob, s.nos, s.keys FROM r, LATERAL"
    " (SELECT array_agg(seq_no ORDER BY seq_no) AS nos, array_agg(id ORDER BY seq_no) AS keys"
    "  FROM sequences WHERE seq_no = ANY(r.nos)) s"
)


#: Images of a tile at any zoom, from the covering index (z14 tiles read their pack instead).
TILE_IMAGES_RANGE = _TILE_COLUMNS.format(
    recs="SELECT tile_rec, sequence_no FROM images WHERE qk BETWEEN %s AND %s ORDER BY qk, id")
#: The images of one z14 tile: its pack (migration 0005) with its sequences' keys (0015).
_TILE_IMAGES_PACKED = "SELECT recs, nos, keys FROM tile_image_packs WHERE tile = %s"
#: Both layers of some z14 tiles of `mly1_public` in one statement (one round trip, no
#: pipeline), `%s` twice the same array of their Morton codes: each tile's pack as a row of
#: part 0 (`recs`, `nos`, `keys` in the columns of `image_columns`), then each tile's lines as
#: rows of part 1 (the columns of `TILE_LINES_SQL`, `coords` in `blob`), by tile in the order
#: of `_TILE_LINES`. Concurrent requests share one (`Z14Reads`).
SQL_Z14_TILES = (
    "SELECT 0 AS part, tile, recs AS blob, nos, keys, NULL::text AS sequence_id,"
    " NULL::bigint AS first_image_id, NULL::bigint AS first_captured_at_ms,"
    " NULL::boolean AS is_pano, NULL::bigint AS organization_id, NULL::bigint AS creator_id"
    " FROM tile_image_packs WHERE tile = ANY(%s::bigint[])"
    " UNION ALL"
    " SELECT 1, l.tile, l.coords, NULL, NULL, l.sequence_id, s.first_image_id,"
    " s.first_captured_at_ms, s.is_pano, s.organization_id, s.creator_id"
    " FROM tile_sequence_lines l JOIN sequences s ON s.id = l.sequence_id"
    f" WHERE l.z = {IMAGE_ZOOM} AND l.tile = ANY(%s::bigint[])"
    " ORDER BY part, tile, sequence_id"
)
#: Every pack from scratch (`wayview migrate-store`, after copying the images).
SQL_BUILD_ALL_PACKS = (
    "INSERT INTO tile_image_packs (tile, recs, nos, keys)"
    " SELECT p.tile, p.recs, s.nos, s.keys FROM"
    " (SELECT qk >> 24 AS tile, string_agg(tile_rec, ''::bytea ORDER BY qk, id) AS recs,"
    " array_agg(DISTINCT sequence_no) AS nos FROM images GROUP BY qk >> 24) p, LATERAL"
    " (SELECT array_agg(q.seq_no ORDER BY q.seq_no) AS nos, array_agg(q.id ORDER BY q.seq_no)"
    " AS keys FROM sequences q WHERE q.seq_no = ANY(p.nos)) s"
)
assert 2 * (QK_ZOOM - IMAGE_ZOOM) == 24, "pack keys are z26 codes >> 24"
#: Rebuild the packs of the z14 tiles in `%s` (an array of tile keys) from their images.
SQL_REBUILD_PACKS = "SELECT wv_refresh_tile_packs(%s::bigint[])"
_TILE_OVERVIEW = _TILE_COLUMNS.format(
    recs="SELECT i.tile_rec, i.sequence_no FROM tile_overview o JOIN images i ON i.id = o.image_id"
         " WHERE o.z = %s AND o.cell BETWEEN %s AND %s ORDER BY o.cell, i.id")
_TILE_LINES = f"{TILE_LINES_SQL} WHERE l.z = %s AND l.tile = %s ORDER BY l.sequence_id"
#: The same reads of `mly1_computed_public` (z14 tiles too are range scans: no packs).
_COMPUTED_TILE_IMAGES_RANGE = _TILE_COLUMNS.format(
    recs=f"SELECT {COMPUTED_INDEX.rec} AS tile_rec, sequence_no FROM images"
         f" WHERE {COMPUTED_INDEX.qk} BETWEEN %s AND %s ORDER BY {COMPUTED_INDEX.qk}, id")
_COMPUTED_TILE_OVERVIEW = _TILE_COLUMNS.format(
    recs=f"SELECT i.{COMPUTED_INDEX.rec} AS tile_rec, i.sequence_no"
         f" FROM {COMPUTED_INDEX.overview} o JOIN images i ON i.id = o.image_id"
         " WHERE o.z = %s AND o.cell BETWEEN %s AND %s ORDER BY o.cell, i.id")
_COMPUTED_TILE_LINES = (f"{COMPUTED_INDEX.lines_sql} WHERE l.z = %s AND l.tile = %s"
                        " ORDER BY l.sequence_id")


def image_columns(rows: list[tuple[Any, ...]]) -> TileImageColumns:
    """A `_TILE_COLUMNS` row straight into integer arrays (no per-image objects)."""
    blob, nos, keys = rows[0] if rows else (None, None, None)
    table = np.frombuffer(blob or b"", dtype=TILE_REC_DTYPE).reshape(-1, 8).astype(np.int64)
    rowids, index = unique_codes(table[:, 7])
    by_no = dict(zip(nos or (), keys or (), strict=True))
    return tile_image_columns(table, index, tuple(str(by_no[int(r)]) for r in rowids))


_Z14 = "image+sequence"  # the name of `SQL_Z14_TILES`'s rows in `tile_statements`


def is_z14_pair(z: int, layers: Seq[str], *, computed: bool) -> bool:
    """Whether a tile read is both layers of a z14 tile of `mly1_public` (`SQL_Z14_TILES`)."""
    return z == IMAGE_ZOOM and not computed and set(layers) == {"image", "sequence"}


def z14_content(rows: Seq[tuple[Any, ...]]) -> TileContent:
    """A z14 tile from its rows of `SQL_Z14_TILES` (in their order)."""
    images = [r[2:5] for r in rows if r[0] == 0]
    return TileContent(
        images=image_columns(images), overview=None,
        lines=[tile_line_from_row((r[5], r[2], *r[6:])) for r in rows if r[0] == 1])


def tile_statements(z: int, x: int, y: int, layers: Seq[str], *, computed: bool = False
                    ) -> list[tuple[str, str, tuple[Any, ...]]]:
    """(layer, statement, parameters) reading each layer of a tile asked for."""
    statements: list[tuple[str, str, tuple[Any, ...]]] = []
    if is_z14_pair(z, layers, computed=computed):
        tiles = [morton(x, y)]
        return [(_Z14, SQL_Z14_TILES, (tiles, tiles))]
    if "overview" in layers:
        low, high = tile_range(z, x, y, z + 5)
        statements.append(("overview", _COMPUTED_TILE_OVERVIEW if computed else _TILE_OVERVIEW,
                           (z, low, high)))
    if "image" in layers:
        if computed:
            statements.append(("image", _COMPUTED_TILE_IMAGES_RANGE, tile_range(z, x, y)))
        elif z == IMAGE_ZOOM:
            statements.append(("image", _TILE_IMAGES_PACKED, (morton(x, y),)))
        else:
            statements.append(("image", TILE_IMAGES_RANGE, tile_range(z, x, y)))
    if "sequence" in layers:
        statements.append(("sequence", _COMPUTED_TILE_LINES if computed else _TILE_LINES,
                           (z, morton(x, y))))
    return statements


def tile_content_from_rows(rows: dict[str, list[tuple[Any, ...]]]) -> TileContent:
    """A TileContent from the rows of `tile_statements`, by layer."""
    if _Z14 in rows:
        return z14_content(rows[_Z14])
    return TileContent(
        images=image_columns(rows["image"]) if "image" in rows else None,
        overview=image_columns(rows["overview"]) if "overview" in rows else None,
        lines=[tile_line_from_row(r) for r in rows["sequence"]] if "sequence" in rows else None,
    )


class Z14Reads:
    """Cold z14 tiles of `mly1_public` read together, one statement (`SQL_Z14_TILES`) at a
    time per process: a request arriving while none runs is read right after the event loop's
    current round of callbacks, with every request of that round; requests arriving while one
    runs are read together as soon as it ends (at most `max_tiles` tiles per statement).

    A tile read costs the client a round trip (a query sent, a wake-up, a result parsed) and
    the server a statement, whatever the tile's size; under load a shared statement divides
    that by the number of tiles in it (about 12 for 64 connections on 2 workers at 100 k
    images), so the batches grow with the load and a request alone waits for nothing. An
    error reaches every request of the statement (a store outage fails them all at once, as
    their own statements would have); a request cancelled meanwhile is skipped. Statements
    keep the deadline of API requests (`database_request_timeout_s`): one that stalls fails
    within it, and the requests queued behind it are read by the next.
    """

    def __init__(self, db: Database, *, max_tiles: int = 32) -> None:
        self.db = db
        self.max_tiles = max_tiles
        self._waiting: dict[int, list[asyncio.Future[TileContent]]] = {}
        self._running: asyncio.Task[None] | None = None  # the statement in flight
        self.statements = 0  # statements run, for tests

    async def read(self, tile: int) -> TileContent:
        """Both layers of the z14 tile with Morton code `tile`."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[TileContent] = loop.create_future()
        if self._waiting and next(iter(self._waiting.values()))[0].get_loop() is not loop:
            self._waiting = {}  # left by an event loop that closed: nobody waits for them
        if not self._waiting:
            loop.call_soon(self._start)
        self._waiting.setdefault(tile, []).append(future)
        return await future

    def _start(self, _finished: object = None) -> None:
        """Read the tiles asked for so far, unless a statement is in flight (it calls this
        again when it ends); a statement of an event loop that closed is not waited for."""
        loop = asyncio.get_running_loop()
        running = self._running
        if running is not None and not running.done() and running.get_loop() is loop:
            return
        if not self._waiting:
            return
        waiting = dict(itertools.islice(self._waiting.items(), self.max_tiles))
        for tile in waiting:
            del self._waiting[tile]
        self._running = loop.create_task(self._run(waiting))
        self._running.add_done_callback(self._start)

    async def _run(self, waiting: dict[int, list[asyncio.Future[TileContent]]]) -> None:
        tiles = sorted(t for t, futures in waiting.items() if not all(f.done() for f in futures))
        if not tiles:
            return  # every request of the batch was cancelled
        try:
            async with self.db.connection() as conn:
                cur = await conn.execute(SQL_Z14_TILES, (tiles, tiles), binary=True)
                rows = await cur.fetchall()
            self.statements += 1
        except BaseException as exc:
            for futures in waiting.values():
                _settle(futures, error=exc)
            if not isinstance(exc, Exception):
                raise
            return
        by_tile: dict[int, list[tuple[Any, ...]]] = {tile: [] for tile in tiles}
        for row in rows:
            by_tile[row[1]].append(row)
        for tile in tiles:
            try:
                content = z14_content(by_tile[tile])
            except Exception as exc:  # noqa: BLE001 - reaches the requests of this tile
                _settle(waiting[tile], error=exc)
            else:
                _settle(waiting[tile], content=content)


def _settle(futures: list[asyncio.Future[TileContent]], *, content: TileContent | None = None,
            error: BaseException | None = None) -> None:
    """Give the requests still waiting their tile, or the error (cancelled: cancelled)."""
    for future in futures:
        if future.done():
            continue  # its request was cancelled meanwhile
        if error is None:
            assert content is not None
            future.set_result(content)
        elif isinstance(error, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(error)


SQL_BUMP_EPOCH = (
    "INSERT INTO tile_epochs (grp, z, tile, epoch) VALUES (%s, %s, %s, 1)"
    " ON CONFLICT (grp, z, tile) DO UPDATE SET epoch = tile_epochs.epoch + 1"
)


async def insert_lines(conn: Conn, index: TileIndex, sequence_id: str,
                       rows: SequenceTileRows) -> None:
    """Insert a sequence's lines into the table of `index`."""
    if rows.lines:
        async with conn.cursor() as cur:
            await cur.executemany(
                f"INSERT INTO {index.lines} (z, tile, sequence_id, coords)"
                " VALUES (%s, %s, %s, %s)",
                [(z, tile, sequence_id, blob) for z, tile, blob in rows.lines])


async def insert_overview(conn: Conn, index: TileIndex, sequence_id: str,
                          rows: SequenceTileRows) -> None:
    """Insert a sequence's overview cells into the table of `index`, at most
    OVERVIEW_PER_CELL sequences per cell. Call it after bumping the epochs of the sequence's
    tiles: a writer holding a tile's epoch row blocks any other writer of that tile's cells
    until it commits, so the per-cell cap holds under concurrent writers."""
    if rows.overview:
        async with conn.cursor() as cur:
            await cur.executemany(
                f"INSERT INTO {index.overview} (z, cell, sequence_id, image_id)"
                " SELECT %(z)s, %(cell)s, %(seq)s, %(image)s WHERE (SELECT COUNT(*)"
                f" FROM {index.overview} WHERE z = %(z)s AND cell = %(cell)s) < %(cap)s"
                " ON CONFLICT DO NOTHING",
                [{"z": z, "cell": cell, "seq": sequence_id, "image": image_id,
                  "cap": OVERVIEW_PER_CELL} for z, cell, image_id in rows.overview])


async def bump_epochs(conn: Conn, group: str, tiles: Iterable[tuple[int, int]]) -> None:
    """Bump the epochs of tiles (zoom, Morton code) of one group, in key order (two writers
    never wait for each other in a cycle)."""
    keys = sorted(tiles)
    if keys:
        async with conn.cursor() as cur:
            await cur.executemany(SQL_BUMP_EPOCH, [(group, z, tile) for z, tile in keys])


async def rebuild_computed(conn: Conn, sequence_ids: Seq[str]) -> None:
    """Rebuild the `mly1_computed_public` index of whole stored sequences from their images
    (codes, angles, overview cells, lines) and bump the "computed" epochs of every tile the
    old and the new rows are in. The caller holds the sequences' rows locked (FOR UPDATE),
    so two rebuilds of one sequence take turns."""
    ix = COMPUTED_INDEX
    touched: set[tuple[int, int]] = set()
    rebuilt: list[tuple[str, SequenceTileRows]] = []
    for sequence_id in sequence_ids:
        cur = await conn.execute(
            f"SELECT {COMPUTED_SOURCE_COLUMNS}, {ix.qk} FROM images WHERE sequence_id = %s"
            # Hidden images (issue #17) stay out of the tile indexes.
            " AND id NOT IN (SELECT image_id FROM hidden_images)"
            " ORDER BY captured_at_ms, id", (sequence_id,))
        rows = await cur.fetchall()
        ids = [int(r[0]) for r in rows]
        touched |= code_tiles(int(r[-1]) for r in rows)
        cur = await conn.execute(f"SELECT z, tile FROM {ix.lines} WHERE sequence_id = %s",
                                 (sequence_id,))
        touched.update((int(z), int(tile)) for z, tile in await cur.fetchall())
        new = rows_at(ids, [computed_position(*r[1:7]) for r in rows])
        touched |= new.touched
        async with conn.cursor() as c:
            await c.executemany(
                f"UPDATE images SET {ix.qk} = %s, {ix.compass} = %s WHERE id = %s",
                [(qk, compass, image_id)
                 for image_id, qk, compass in zip(ids, new.qk, new.compass, strict=True)])
        await conn.execute(f"DELETE FROM {ix.overview} WHERE sequence_id = %s", (sequence_id,))
        await conn.execute(f"DELETE FROM {ix.lines} WHERE sequence_id = %s", (sequence_id,))
        await insert_lines(conn, ix, sequence_id, new)
        rebuilt.append((sequence_id, new))
    if sequence_ids:
        await conn.execute("UPDATE sequences SET computed_tiles = true WHERE id = ANY(%s)",
                           (list(sequence_ids),))
    await bump_epochs(conn, ix.group, touched)
    for sequence_id, new in rebuilt:
        await insert_overview(conn, ix, sequence_id, new)


async def rebuild_pending_computed(conn: Conn, limit: int) -> int:
    """Build the computed index of up to `limit` sequences that have none yet (stored before
    migration 0006 with computed positions); how many were built. Sequences another process
    is building are skipped, so processes starting together share the work."""
    cur = await conn.execute(
        "SELECT id FROM sequences WHERE NOT computed_tiles ORDER BY id LIMIT %s"
        " FOR UPDATE SKIP LOCKED", (limit,))
    pending = [str(r[0]) for r in await cur.fetchall()]
    await rebuild_computed(conn, pending)
    return len(pending)
