"""wayview.store.postgres.delete: `Store.delete_images` on PostgreSQL, inside the caller's
transaction (see `wayview.store.deletion` for what is rebuilt and which epochs are bumped).

Rows keyed by image id: `images` (the packs of `tile_image_packs` follow by trigger),
`nodes` (the images' and their detections'), `detections`, and the overview cells of both
tile indexes. Upload sessions and finishes, jobs and the blob journal refer to uploads and
jobs, not to stored images, and are left alone.

Locks are taken in the order the other writers take them, so no two writers wait for each
other in a cycle: the affected sequences' rows (FOR UPDATE, by id, as `set_computed_fields`),
then the "images" epochs (sorted), the z14 packs (advisory locks in key order, taken up front
by refreshing them, so the per-row triggers of the deletes and updates only re-enter them),
the "computed" epochs (sorted; `insert_sequence` takes these three in the same order), and
last the overview cells.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq

from wayview.model.entities import DeletedImages
from wayview.model.profiles import LineFigures
from wayview.store.columns import TILE_INDEXES
from wayview.store.deletion import HIDDEN_CODE, PLAN_COLUMNS, DeletionPlan, plan_deletion
from wayview.store.figures import figure_values, set_figures
from wayview.store.postgres.connection import Conn
from wayview.store.postgres.tiles import (
    SQL_REBUILD_PACKS,
    bump_epochs,
    insert_lines,
    insert_overview,
)

#: Moves hidden images out of both tile indexes (the pack trigger follows).
_HIDE_CODES = ", ".join(f"{ix.qk} = %s" for ix in TILE_INDEXES.values())
SQL_SET_FIGURES = set_figures("%s")


async def delete_images(conn: Conn, image_ids: Seq[int]) -> DeletedImages:
    """Delete images, their detections and node ids, their tile rows and the sequences left
    empty; rebuild the tile rows of the sequences that keep images; bump the epochs."""
    wanted = sorted(set(image_ids))
    cur = await conn.execute(
        "SELECT id FROM sequences WHERE id IN (SELECT sequence_id FROM images"
        " WHERE id = ANY(%s)) ORDER BY id FOR UPDATE", (wanted,))
    sequences = [str(r[0]) for r in await cur.fetchall()]
    if not sequences:
        return DeletedImages()
    # Read after the locks: a concurrent deletion of the same images has committed by now.
    cur = await conn.execute(f"SELECT {PLAN_COLUMNS} FROM images WHERE sequence_id = ANY(%s)",
                             (sequences,))
    rows = await cur.fetchall()
    old_lines = {}
    for computed, ix in TILE_INDEXES.items():
        cur = await conn.execute(f"SELECT z, tile FROM {ix.lines} WHERE sequence_id = ANY(%s)",
                                 (sequences,))
        old_lines[computed] = [(int(z), int(tile)) for z, tile in await cur.fetchall()]
    plan = plan_deletion(rows, wanted, old_lines)
    ids = plan.image_ids
    if not ids:
        return DeletedImages()

    await lock_plan(conn, plan)
    cur = await conn.execute(
        "DELETE FROM detections WHERE image_id = ANY(%s) RETURNING id, map_feature_id", (ids,))
    detections = await cur.fetchall()
    features = sorted({int(f) for _, f in detections if f is not None})
    await conn.execute("DELETE FROM nodes WHERE id = ANY(%s)",
                       (ids + [int(d) for d, _ in detections],))
    await conn.execute("DELETE FROM images WHERE id = ANY(%s)", (ids,))
    await write_plan(conn, plan)
    return DeletedImages(
        image_ids=tuple(ids), emptied_sequence_ids=tuple(plan.emptied),
        shrunk_sequence_ids=tuple(r.sequence_id for r in plan.shrunk),
        feature_ids=tuple(features))


async def lock_plan(conn: Conn, plan: DeletionPlan) -> None:
    """The first half of writing a plan (deletion and edits alike), before the images' own
    rows change: bump the "images" epochs and take the z14 packs (see the module docstring
    for the lock order)."""
    await bump_epochs(conn, TILE_INDEXES[False].group, plan.touched[False])
    await conn.execute(SQL_REBUILD_PACKS, (plan.pack_tiles,))


async def write_plan(conn: Conn, plan: DeletionPlan) -> None:
    """The second half, after the images' own rows changed: drop the emptied sequences and
    their rows, rebuild the others, bump the "computed" epochs, then write overview cells."""
    # Sequences of hidden images only lose their tile rows; emptied ones their row too.
    for gone in (plan.veiled, plan.emptied):
        if gone:
            for ix in TILE_INDEXES.values():
                await conn.execute(f"DELETE FROM {ix.overview} WHERE sequence_id = ANY(%s)",
                                   (gone,))
                await conn.execute(f"DELETE FROM {ix.lines} WHERE sequence_id = ANY(%s)",
                                   (gone,))
    if plan.hide:
        await conn.execute(
            f"UPDATE images SET {_HIDE_CODES} WHERE id = ANY(%s)",
            (*(HIDDEN_CODE for _ in TILE_INDEXES), plan.hide))
    if plan.emptied:
        await conn.execute("DELETE FROM sequences WHERE id = ANY(%s)", (plan.emptied,))
    if plan.veiled:  # no public image left: out of the profiles' figures
        await conn.execute(f"UPDATE sequences SET {SQL_SET_FIGURES} WHERE id = ANY(%s)",
                           (*figure_values(LineFigures(0, 0.0, None, None)), plan.veiled))
    for rebuild in plan.shrunk:
        sequence_id = rebuild.sequence_id
        await conn.execute(
            "UPDATE sequences SET first_image_id = %s, first_captured_at_ms = %s, is_pano = %s,"
            f" computed_tiles = true, {SQL_SET_FIGURES} WHERE id = %s",
            (rebuild.first_image_id, rebuild.first_captured_at_ms, rebuild.is_pano,
             *figure_values(rebuild.figures), sequence_id))
        for computed, ix in TILE_INDEXES.items():
            if rebuild.updates[computed]:
                async with conn.cursor() as c:
                    await c.executemany(
                        f"UPDATE images SET {ix.qk} = %s, {ix.compass} = %s WHERE id = %s",
                        rebuild.updates[computed])
            await conn.execute(f"DELETE FROM {ix.overview} WHERE sequence_id = %s",
                               (sequence_id,))
            await conn.execute(f"DELETE FROM {ix.lines} WHERE sequence_id = %s", (sequence_id,))
            await insert_lines(conn, ix, sequence_id, rebuild.rows[computed])
    await bump_epochs(conn, TILE_INDEXES[True].group, plan.touched[True])
    for rebuild in plan.shrunk:
        for computed, ix in TILE_INDEXES.items():
            await insert_overview(conn, ix, rebuild.sequence_id, rebuild.rows[computed])
