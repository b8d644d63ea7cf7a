"""wayview.store.sqlite.delete: `Store.delete_images` on SQLite, run inside the writer's
transaction (see `wayview.store.deletion` for what is rebuilt and which epochs are bumped).

Rows keyed by image id: `images`, `images_rtree`, `nodes` (the images' and their detections'),
`detections`, and the overview cells of both tile indexes. Upload sessions and finishes, jobs
and the blob journal refer to uploads and jobs, not to stored images, and are left alone.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from collections.abc import Sequence as Seq
from typing import Any

from wayview.model.entities import DeletedImages
from wayview.model.profiles import LineFigures
from wayview.store.columns import TILE_INDEXES
from wayview.store.deletion import (
    HIDDEN_CODE,
    PLAN_COLUMNS,
    DeletionPlan,
    SequenceRebuild,
    plan_deletion,
)
from wayview.store.figures import figure_values, set_figures
from wayview.store.sqlite.tiles import bump_epochs, write_lines_and_overview

# SQLite allows 32,766 host parameters; batch below that.
_BATCH = 900
#: Moves hidden images out of both tile indexes (the triggers repack their records).
_HIDE_CODES = ", ".join(f"{ix.qk} = ?" for ix in TILE_INDEXES.values())
SQL_SET_FIGURES = set_figures("?")


def _chunks(values: Seq[Any], size: int = _BATCH) -> Iterable[Seq[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _marks(n: int) -> str:
    return ",".join("?" * n)


def sequences_holding(conn: sqlite3.Connection, image_ids: Seq[int]) -> set[str]:
    """The sequences holding some images (unknown ids are ignored)."""
    sequences: set[str] = set()
    for chunk in _chunks(image_ids):
        sequences.update(s for (s,) in conn.execute(
            f"SELECT DISTINCT sequence_id FROM images WHERE id IN ({_marks(len(chunk))})",
            chunk))
    return sequences


def delete_images(conn: sqlite3.Connection, image_ids: Seq[int]) -> DeletedImages:
    """Delete images, their detections and node ids, their tile rows and the sequences left
    empty; rebuild the tile rows of the sequences that keep images; bump the epochs."""
    wanted = sorted(set(image_ids))
    sequences = sequences_holding(conn, wanted)
    if not sequences:
        return DeletedImages()
    rows: list[tuple[Any, ...]] = []
    old_lines: dict[bool, set[tuple[int, int]]] = {False: set(), True: set()}
    for sequence_id in sorted(sequences):
        rows += conn.execute(f"SELECT {PLAN_COLUMNS} FROM images WHERE sequence_id = ?",
                             (sequence_id,)).fetchall()
        for computed, ix in TILE_INDEXES.items():
            old_lines[computed].update(conn.execute(
                f"SELECT z, tile FROM {ix.lines} WHERE sequence_id = ?", (sequence_id,)))
    plan = plan_deletion(rows, wanted, old_lines)
    ids = plan.image_ids

    features: set[int] = set()
    detections: list[int] = []
    for chunk in _chunks(ids):
        marks = _marks(len(chunk))
        for detection_id, feature_id in conn.execute(
                f"SELECT id, map_feature_id FROM detections WHERE image_id IN ({marks})", chunk):
            detections.append(detection_id)
            if feature_id is not None:
                features.add(feature_id)
        conn.execute(f"DELETE FROM detections WHERE image_id IN ({marks})", chunk)
        conn.execute(f"DELETE FROM images_rtree WHERE id IN ({marks})", chunk)
        conn.execute(f"DELETE FROM images WHERE id IN ({marks})", chunk)
    node_ids = ids + detections
    for chunk in _chunks(node_ids):
        conn.execute(f"DELETE FROM nodes WHERE id IN ({_marks(len(chunk))})", chunk)

    write_plan(conn, plan)
    return DeletedImages(
        image_ids=tuple(ids), emptied_sequence_ids=tuple(plan.emptied),
        shrunk_sequence_ids=tuple(r.sequence_id for r in plan.shrunk),
        feature_ids=tuple(sorted(features)))


def write_plan(conn: sqlite3.Connection, plan: DeletionPlan) -> None:
    """Write a plan's tile rows (deletion and edits alike): drop the emptied sequences and
    their rows, rebuild the others, bump the epochs of both groups. The images' own rows
    are the caller's, written before."""
    # Emptied sequences lose their tile rows and their row; those of hidden images only
    # (veiled) their tile rows.
    for sequence_id in (*plan.emptied, *plan.veiled):
        for ix in TILE_INDEXES.values():
            conn.execute(f"DELETE FROM {ix.overview} WHERE sequence_id = ?", (sequence_id,))
            conn.execute(f"DELETE FROM {ix.lines} WHERE sequence_id = ?", (sequence_id,))
    for sequence_id in plan.emptied:
        conn.execute("DELETE FROM sequences WHERE id = ?", (sequence_id,))
    for sequence_id in plan.veiled:  # no public image left: out of the profiles' figures
        conn.execute(f"UPDATE sequences SET {SQL_SET_FIGURES} WHERE id = ?",
                     (*figure_values(LineFigures(0, 0.0, None, None)), sequence_id))
    for chunk in _chunks(plan.hide):
        conn.execute(f"UPDATE images SET {_HIDE_CODES} WHERE id IN ({_marks(len(chunk))})",
                     [*(HIDDEN_CODE for _ in TILE_INDEXES), *chunk])
    for rebuild in plan.shrunk:
        _rebuild(conn, rebuild)
    for computed, ix in TILE_INDEXES.items():
        bump_epochs(conn, ix.group, plan.touched[computed])


def _rebuild(conn: sqlite3.Connection, rebuild: SequenceRebuild) -> None:
    """Write a rebuilt sequence's new properties and the tile rows of both indexes."""
    sequence_id = rebuild.sequence_id
    conn.execute(
        "UPDATE sequences SET first_image_id = ?, first_captured_at_ms = ?, is_pano = ?,"
        f" computed_tiles = 1, {SQL_SET_FIGURES} WHERE id = ?",
        (rebuild.first_image_id, rebuild.first_captured_at_ms, int(rebuild.is_pano),
         *figure_values(rebuild.figures), sequence_id))
    for computed, ix in TILE_INDEXES.items():
        # The triggers of migrations 0004 and 0010 pack the changed records.
        conn.executemany(f"UPDATE images SET {ix.qk} = ?, {ix.compass} = ? WHERE id = ?",
                         rebuild.updates[computed])
        conn.execute(f"DELETE FROM {ix.overview} WHERE sequence_id = ?", (sequence_id,))
        conn.execute(f"DELETE FROM {ix.lines} WHERE sequence_id = ?", (sequence_id,))
        write_lines_and_overview(conn, ix, sequence_id, rebuild.rows[computed])
