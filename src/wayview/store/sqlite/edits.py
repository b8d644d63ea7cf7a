"""wayview.store.sqlite.edits: the SQLite implementation of EditsStore.

Each edit runs in one transaction of the writer thread: read the rows of every image of the
sequences touched (`PLAN_COLUMNS`) and their stored lines, compute the new rows
(`wayview.store.editing`), write the images' changed columns, then plan and write both tile
indexes with the deletion's machinery (`plan_rebuild`, `sqlite.delete.write_plan`).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from collections.abc import Sequence as Seq
from typing import Any

from wayview.errors import NodeNotFound
from wayview.model.entities import EditedImages, ImageCorrection, OriginalValues, SequenceSummary
from wayview.model.s2 import leaf_cell
from wayview.store.columns import TILE_INDEXES
from wayview.store.deletion import PLAN_COLUMNS, plan_rebuild
from wayview.store.editing import check_mergeable, corrected_rows, merged_rows, split_rows
from wayview.store.sqlite.connection import Database
from wayview.store.sqlite.delete import sequences_holding, write_plan

_BATCH = 900
Rows = list[tuple[Any, ...]]
Lines = dict[bool, set[tuple[int, int]]]
#: A sequence's (id, creator id, organization id, rowid).
SequenceRow = tuple[str, int, int | None, int]


def _marks(n: int) -> str:
    return ",".join("?" * n)


def read_plan_rows(conn: sqlite3.Connection, sequence_ids: Iterable[str]) -> tuple[Rows, Lines]:
    """The plan rows of every image of some sequences, and their stored lines."""
    rows: Rows = []
    old_lines: Lines = {False: set(), True: set()}
    for sequence_id in sorted(set(sequence_ids)):
        rows += conn.execute(f"SELECT {PLAN_COLUMNS} FROM images WHERE sequence_id = ?",
                             (sequence_id,)).fetchall()
        for computed, ix in TILE_INDEXES.items():
            old_lines[computed].update(conn.execute(
                f"SELECT z, tile FROM {ix.lines} WHERE sequence_id = ?", (sequence_id,)))
    return rows, old_lines


def _sequence(conn: sqlite3.Connection, sequence_id: str) -> SequenceRow | None:
    row = conn.execute("SELECT id, creator_id, organization_id, rowid FROM sequences"
                       " WHERE id = ?", (sequence_id,)).fetchone()
    return (str(row[0]), int(row[1]), row[2], int(row[3])) if row else None


def _move(conn: sqlite3.Connection, ids: Seq[int], sequence_id: str, rowid: int) -> None:
    """Give images another sequence (the trigger of migration 0004 repacks their records)."""
    for start in range(0, len(ids), _BATCH):
        chunk = list(ids[start:start + _BATCH])
        conn.execute(f"UPDATE images SET sequence_id = ?, sequence_rowid = ?"
                     f" WHERE id IN ({_marks(len(chunk))})", [sequence_id, rowid, *chunk])


def _result(plan_ids: Iterable[int], plan: Any, previous: Seq[ImageCorrection] = ()
            ) -> EditedImages:
    return EditedImages(image_ids=tuple(sorted(plan_ids)),
                        sequence_ids=tuple(r.sequence_id for r in plan.shrunk),
                        emptied_sequence_ids=tuple(plan.emptied), previous=tuple(previous))


def correct_rows(conn: sqlite3.Connection, corrections: Seq[ImageCorrection],
                 now_ms: int) -> EditedImages:
    """`correct_images` inside the writer's transaction."""
    ids = sorted({c.image_id for c in corrections})
    before, old_lines = read_plan_rows(conn, sequences_holding(conn, ids))
    out = corrected_rows(before, corrections)
    if not out.changed:
        return EditedImages()
    # The values as uploaded are kept once, at the first correction.
    conn.executemany(
        "UPDATE images SET original_lon = lon, original_lat = lat,"
        " original_compass_deg = compass_angle_deg, original_captured_at_ms = captured_at_ms"
        " WHERE id = ? AND corrected_at_ms IS NULL", [(r[0],) for r in out.changed])
    conn.executemany(
        "UPDATE images SET lon = ?, lat = ?, compass_angle_deg = ?, computed_lon = ?,"
        " computed_lat = ?, computed_compass_deg = ?, captured_at_ms = ?, s2_leaf = ?,"
        " corrected_at_ms = ? WHERE id = ?",
        [(r[1], r[2], r[3], r[4], r[5], r[6], r[8], leaf_cell(r[2], r[1]), now_ms, r[0])
         for r in out.changed])
    conn.executemany(
        "UPDATE images_rtree SET min_lon = ?, max_lon = ?, min_lat = ?, max_lat = ? WHERE id = ?",
        [(r[1], r[1], r[2], r[2], r[0]) for r in out.changed])
    plan = plan_rebuild(before, out.after, old_lines)
    write_plan(conn, plan)
    return _result((r[0] for r in out.changed), plan, out.previous)


def split_rows_in(conn: sqlite3.Connection, sequence_id: str, at_image_id: int,
                  new_sequence_id: str, now_ms: int) -> EditedImages:
    """`split_sequence` inside the writer's transaction."""
    old = _sequence(conn, sequence_id)
    if old is None:
        raise NodeNotFound(sequence_id, "post")
    before, old_lines = read_plan_rows(conn, [sequence_id])
    after, moving = split_rows(before, at_image_id, new_sequence_id)
    cur = conn.execute(
        "INSERT INTO sequences (id, creator_id, organization_id, created_at_ms, computed_tiles)"
        " VALUES (?, ?, ?, ?, 1)", (new_sequence_id, old[1], old[2], now_ms))
    _move(conn, moving, new_sequence_id, int(cur.lastrowid or 0))
    plan = plan_rebuild(before, after, old_lines)
    write_plan(conn, plan)
    return _result(moving, plan)


def merge_rows_in(conn: sqlite3.Connection, sequence_id: str, other_id: str) -> EditedImages:
    """`merge_sequences` inside the writer's transaction."""
    into, other = _sequence(conn, sequence_id), _sequence(conn, other_id)
    check_mergeable(into and into[:3], other and other[:3])
    assert into is not None
    before, old_lines = read_plan_rows(conn, [sequence_id, other_id])
    after, moving = merged_rows(before, sequence_id, other_id)
    _move(conn, moving, sequence_id, into[3])
    plan = plan_rebuild(before, after, old_lines)
    if other_id not in plan.emptied:  # a sequence without images (never stored so)
        plan.emptied.append(other_id)
    write_plan(conn, plan)
    return _result(moving, plan)


class EditsMixin:
    """EditsStore on SQLite; `self.db` is the store's Database."""

    db: Database

    async def correct_images(self, corrections: Seq[ImageCorrection]) -> EditedImages:
        """Correct images and rebuild their sequences' tile rows in one transaction."""
        wanted = list(corrections)
        if not wanted:
            return EditedImages()
        now = int(time.time() * 1000)
        return await self.db.write(lambda c: correct_rows(c, wanted, now))

    async def split_sequence(self, sequence_id: str, at_image_id: int,
                             new_sequence_id: str) -> EditedImages:
        """Split a sequence at an image in one transaction."""
        now = int(time.time() * 1000)
        return await self.db.write(
            lambda c: split_rows_in(c, sequence_id, at_image_id, new_sequence_id, now))

    async def merge_sequences(self, sequence_id: str, other_id: str) -> EditedImages:
        """Merge a sequence into another in one transaction."""
        return await self.db.write(lambda c: merge_rows_in(c, sequence_id, other_id))

    async def image_originals(self, image_ids: Seq[int]) -> dict[int, OriginalValues]:
        """The values as uploaded of corrected images."""
        wanted = sorted(set(image_ids))

        def run(conn: sqlite3.Connection) -> dict[int, OriginalValues]:
            out: dict[int, OriginalValues] = {}
            for start in range(0, len(wanted), _BATCH):
                chunk = wanted[start:start + _BATCH]
                for r in conn.execute(
                        "SELECT id, original_lon, original_lat, original_compass_deg,"
                        " original_captured_at_ms, corrected_at_ms FROM images"
                        f" WHERE corrected_at_ms IS NOT NULL AND id IN ({_marks(len(chunk))})",
                        chunk):
                    out[r[0]] = OriginalValues(r[0], r[1], r[2], r[3], r[4], r[5])
            return out

        return await self.db.read(run) if wanted else {}

    async def sequences_of(self, creator_id: int, *, limit: int = 500) -> list[SequenceSummary]:
        """A creator's sequences with their image counts and capture span."""
        rows = await self.db.read(lambda c: c.execute(
            "SELECT s.id, s.creator_id, s.organization_id, COUNT(i.id), MIN(i.captured_at_ms),"
            " MAX(i.captured_at_ms) FROM sequences s LEFT JOIN images i ON i.sequence_id = s.id"
            " WHERE s.creator_id = ? GROUP BY s.id"
            " ORDER BY MIN(i.captured_at_ms) DESC NULLS LAST, s.id LIMIT ?",
            (creator_id, limit)).fetchall())
        return [SequenceSummary(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]
