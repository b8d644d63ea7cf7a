"""wayview.store.postgres.edits: the PostgreSQL implementation of EditsStore.

Each edit is one transaction: lock the rows of the sequences touched (FOR UPDATE, by id, as
`delete_images` and `set_computed_fields`), read the rows of their images (`PLAN_COLUMNS`) and
stored lines, compute the new rows (`wayview.store.editing`), then write in the deletion's lock
order (`postgres.delete`): "images" epochs and z14 packs (`lock_plan`), the images' changed
columns (the pack trigger re-enters the packs it holds), then the tile rows, "computed"
epochs and overview cells (`write_plan`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence as Seq
from typing import Any

from wayview.errors import NodeNotFound
from wayview.model.entities import EditedImages, ImageCorrection, OriginalValues, SequenceSummary
from wayview.model.s2 import leaf_cell
from wayview.store.columns import TILE_INDEXES
from wayview.store.deletion import PLAN_COLUMNS, DeletionPlan, plan_rebuild
from wayview.store.editing import check_mergeable, corrected_rows, merged_rows, split_rows
from wayview.store.postgres.connection import Conn, Queries
from wayview.store.postgres.delete import lock_plan, write_plan

Rows = list[tuple[Any, ...]]
Lines = dict[bool, list[tuple[int, int]]]
#: A sequence's (id, creator id, organization id, seq_no).
SequenceRow = tuple[str, int, int | None, int]


async def lock_sequences(conn: Conn, sequence_ids: Seq[str]) -> dict[str, SequenceRow]:
    """Lock sequences' rows in id order; the ones that exist."""
    cur = await conn.execute(
        "SELECT id, creator_id, organization_id, seq_no FROM sequences WHERE id = ANY(%s)"
        " ORDER BY id FOR UPDATE", (sorted(set(sequence_ids)),))
    return {str(r[0]): (str(r[0]), int(r[1]), None if r[2] is None else int(r[2]), int(r[3]))
            for r in await cur.fetchall()}


async def read_plan_rows(conn: Conn, sequence_ids: Seq[str]) -> tuple[Rows, Lines]:
    """The plan rows of every image of some (locked) sequences, and their stored lines."""
    cur = await conn.execute(f"SELECT {PLAN_COLUMNS} FROM images WHERE sequence_id = ANY(%s)",
                             (list(sequence_ids),))
    rows = [tuple(r) for r in await cur.fetchall()]
    old_lines: Lines = {}
    for computed, ix in TILE_INDEXES.items():
        cur = await conn.execute(f"SELECT z, tile FROM {ix.lines} WHERE sequence_id = ANY(%s)",
                                 (list(sequence_ids),))
        old_lines[computed] = [(int(z), int(tile)) for z, tile in await cur.fetchall()]
    return rows, old_lines


def _result(ids: Seq[int], plan: DeletionPlan, previous: Seq[ImageCorrection] = ()
            ) -> EditedImages:
    return EditedImages(image_ids=tuple(sorted(ids)),
                        sequence_ids=tuple(r.sequence_id for r in plan.shrunk),
                        emptied_sequence_ids=tuple(plan.emptied), previous=tuple(previous))


class EditsMixin(Queries):
    """EditsStore on PostgreSQL; `self.db` is the store's Database."""

    async def correct_images(self, corrections: Seq[ImageCorrection]) -> EditedImages:
        """Correct images and rebuild their sequences' tile rows in one transaction."""
        ids = sorted({c.image_id for c in corrections})
        if not ids:
            return EditedImages()
        now = int(time.time() * 1000)
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "SELECT DISTINCT sequence_id FROM images WHERE id = ANY(%s)", (ids,))
            locked = await lock_sequences(conn, [str(r[0]) for r in await cur.fetchall()])
            # Read after the locks: a concurrent edit of these sequences has committed.
            before, old_lines = await read_plan_rows(conn, sorted(locked))
            out = corrected_rows(before, corrections)
            if not out.changed:
                return EditedImages()
            plan = plan_rebuild(before, out.after, old_lines)
            await lock_plan(conn, plan)
            changed = [r[0] for r in out.changed]
            await conn.execute(
                "UPDATE images SET original_lon = lon, original_lat = lat,"
                " original_compass_deg = compass_angle_deg,"
                " original_captured_at_ms = captured_at_ms"
                " WHERE id = ANY(%s) AND corrected_at_ms IS NULL", (changed,))
            async with conn.cursor() as c:
                await c.executemany(
                    "UPDATE images SET lon = %s, lat = %s, compass_angle_deg = %s,"
                    " computed_lon = %s, computed_lat = %s, computed_compass_deg = %s,"
                    " captured_at_ms = %s, s2_leaf = %s, corrected_at_ms = %s WHERE id = %s",
                    [(r[1], r[2], r[3], r[4], r[5], r[6], r[8], leaf_cell(r[2], r[1]), now,
                      r[0]) for r in out.changed])
            await write_plan(conn, plan)
        return _result(changed, plan, out.previous)

    async def split_sequence(self, sequence_id: str, at_image_id: int,
                             new_sequence_id: str) -> EditedImages:
        """Split a sequence at an image in one transaction."""
        now = int(time.time() * 1000)
        async with self.db.transaction() as conn:
            old = (await lock_sequences(conn, [sequence_id])).get(sequence_id)
            if old is None:
                raise NodeNotFound(sequence_id, "post")
            before, old_lines = await read_plan_rows(conn, [sequence_id])
            after, moving = split_rows(before, at_image_id, new_sequence_id)
            plan = plan_rebuild(before, after, old_lines)
            cur = await conn.execute(
                "INSERT INTO sequences (id, creator_id, organization_id, created_at_ms,"
                " computed_tiles) VALUES (%s, %s, %s, %s, true) RETURNING seq_no",
                (new_sequence_id, old[1], old[2], now))
            row = await cur.fetchone()
            assert row is not None
            await lock_plan(conn, plan)
            await conn.execute(
                "UPDATE images SET sequence_id = %s, sequence_no = %s WHERE id = ANY(%s)",
                (new_sequence_id, int(row[0]), moving))
            await write_plan(conn, plan)
        return _result(moving, plan)

    async def merge_sequences(self, sequence_id: str, other_id: str) -> EditedImages:
        """Merge a sequence into another in one transaction."""
        async with self.db.transaction() as conn:
            locked = await lock_sequences(conn, [sequence_id, other_id])
            into, other = locked.get(sequence_id), locked.get(other_id)
            check_mergeable(into and into[:3], other and other[:3])
            assert into is not None
            before, old_lines = await read_plan_rows(conn, [sequence_id, other_id])
            after, moving = merged_rows(before, sequence_id, other_id)
            plan = plan_rebuild(before, after, old_lines)
            if other_id not in plan.emptied:  # a sequence without images (never stored so)
                plan.emptied.append(other_id)
            await lock_plan(conn, plan)
            await conn.execute(
                "UPDATE images SET sequence_id = %s, sequence_no = %s WHERE id = ANY(%s)",
                (sequence_id, into[3], moving))
            await write_plan(conn, plan)
        return _result(moving, plan)

    async def image_originals(self, image_ids: Seq[int]) -> dict[int, OriginalValues]:
        """The values as uploaded of corrected images."""
        wanted = sorted(set(image_ids))
        if not wanted:
            return {}
        rows = await self._all(
            "SELECT id, original_lon, original_lat, original_compass_deg,"
            " original_captured_at_ms, corrected_at_ms FROM images"
            " WHERE corrected_at_ms IS NOT NULL AND id = ANY(%s)", (wanted,))
        return {int(r[0]): OriginalValues(int(r[0]), r[1], r[2], r[3], int(r[4]), int(r[5]))
                for r in rows}

    async def sequences_of(self, creator_id: int, *, limit: int = 500) -> list[SequenceSummary]:
        """A creator's sequences with their image counts and capture span."""
        rows = await self._all(
            "SELECT s.id, s.creator_id, s.organization_id, COUNT(i.id), MIN(i.captured_at_ms),"
            " MAX(i.captured_at_ms) FROM sequences s LEFT JOIN images i ON i.sequence_id = s.id"
            " WHERE s.creator_id = %s GROUP BY s.id ORDER BY MIN(i.captured_at_ms) DESC NULLS"
            " LAST, s.id LIMIT %s", (creator_id, limit))
        return [SequenceSummary(str(r[0]), int(r[1]), None if r[2] is None else int(r[2]),
                                int(r[3]), None if r[4] is None else int(r[4]),
                                None if r[5] is None else int(r[5])) for r in rows]
