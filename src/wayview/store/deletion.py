"""wayview.store.deletion: what `Store.delete_images` and the edits (`correct_images`,
`split_sequence`, `merge_sequences`) change in the tile indexes (pure; both SQL backends read
the same rows, plan with `plan_deletion` or `plan_rebuild`, then write the plan).

A deletion reads every image of the sequences it touches, then plans in one place for both
tilesets (`mly1_public` at the original positions, `mly1_computed_public` at the computed
ones): the sequences left empty, and for each sequence that keeps images its tile rows
rebuilt from those images (`wayview.tiles.index.rows_at`, as `insert_sequence` and
`set_computed_fields` build them), and per epoch group the tiles to bump: every tile at every
zoom that showed a deleted image, every tile an old or a new line of the sequences passes,
and the tiles of the images kept (an angle drawn from the next image may change, and so may
the image representing an overview cell).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from typing import Any

from wayview.model.profiles import LineFigures, line_figures
from wayview.store.columns import COMPUTED_INDEX, COMPUTED_SOURCE_COLUMNS, ORIGINAL_INDEX
from wayview.tiles.index import (
    IMAGE_ZOOM,
    QK_ZOOM,
    SequenceTileRows,
    code_tiles,
    computed_position,
    rows_at,
)

#: The images columns `plan_deletion` reads of every image of the affected sequences.
PLAN_COLUMNS = (
    f"{COMPUTED_SOURCE_COLUMNS}, sequence_id, captured_at_ms, is_pano,"
    f" {ORIGINAL_INDEX.qk}, {ORIGINAL_INDEX.compass}, {COMPUTED_INDEX.qk},"
    f" {COMPUTED_INDEX.compass},"
    " EXISTS (SELECT 1 FROM hidden_images h WHERE h.image_id = images.id)"
)
_ID, _SEQUENCE, _CAPTURED, _PANO, _HIDDEN = 0, 7, 8, 9, 14
#: The stored code of an image left out of the tile indexes (hidden by a moderator): below
#: every tile's range.
HIDDEN_CODE = -1
#: Per index (by `computed`): the column of the stored code; the stored angle follows it.
_CODE = {False: 10, True: 12}
#: A z26 code shifted right by this gives its z14 tile (PostgreSQL's pack key).
PACK_SHIFT = 2 * (QK_ZOOM - IMAGE_ZOOM)


@dataclass(slots=True)
class SequenceRebuild:
    """A sequence that keeps images: its new properties and tile rows."""

    sequence_id: str
    first_image_id: int
    first_captured_at_ms: int
    is_pano: bool
    #: Count, length, last capture and extent of the images kept that are not hidden
    #: (the public profiles' figures, `wayview.model.profiles`).
    figures: LineFigures = LineFigures(0, 0.0, None, None)
    #: Per index (by `computed`): the sequence's rows built from the images kept.
    rows: dict[bool, SequenceTileRows] = field(default_factory=dict)
    #: Per index: (code, angle, image id) of the kept images whose drawn code or angle changes.
    updates: dict[bool, list[tuple[int, int, int]]] = field(default_factory=dict)


@dataclass(slots=True)
class DeletionPlan:
    """Everything a deletion or an edit writes to the tile indexes besides its own rows."""

    #: The ids that exist, ascending.
    image_ids: list[int] = field(default_factory=list)
    #: Sequences left with no image, ascending.
    emptied: list[str] = field(default_factory=list)
    #: Sequences that keep images, by id.
    shrunk: list[SequenceRebuild] = field(default_factory=list)
    #: Per index (by `computed`): the (zoom, Morton code) tiles whose epochs to bump.
    touched: dict[bool, set[tuple[int, int]]] = field(default_factory=dict)
    #: z14 tiles (pack keys) of every image of the affected sequences, ascending.
    pack_tiles: list[int] = field(default_factory=list)
    #: Sequences that keep images but only hidden ones: their tile rows go, the sequence
    #: stays (it comes back when an image is shown again).
    veiled: list[str] = field(default_factory=list)
    #: Hidden images whose stored codes must become `HIDDEN_CODE` (both indexes).
    hide: list[int] = field(default_factory=list)


def is_hidden(row: Seq[Any]) -> bool:
    """Whether a `PLAN_COLUMNS` row is of a hidden image (rows without the column: no)."""
    return len(row) > _HIDDEN and bool(row[_HIDDEN])


def plan_deletion(images: Iterable[Seq[Any]], image_ids: Iterable[int],
                  old_lines: Mapping[bool, Iterable[tuple[int, int]]]) -> DeletionPlan:
    """Plan deleting `image_ids` from `images`: rows of `PLAN_COLUMNS` of *every* image of
    the sequences holding them (any order); `old_lines` are the (zoom, tile) of the stored
    lines of those sequences, per index (by `computed`).

    >>> rows = [(k, 13.0 + k * 1e-4, 52.0, None, None, None, None, "s", k, 0, 0, 0, 0, 0)
    ...         for k in (1, 2, 3)]
    >>> plan = plan_deletion(rows, [3, 9], {False: [], True: []})
    >>> plan.image_ids, plan.emptied, [s.sequence_id for s in plan.shrunk]
    ([3], [], ['s'])
    >>> plan_deletion(rows, [1, 2, 3], {False: [], True: []}).emptied
    ['s']
    """
    gone = set(image_ids)
    rows = list(images)
    deleted = [r for r in rows if r[_ID] in gone]
    # Only the sequences that lose an image change.
    affected = {r[_SEQUENCE] for r in deleted}
    rows = [r for r in rows if r[_SEQUENCE] in affected]
    plan = plan_rebuild(rows, [r for r in rows if r[_ID] not in gone], old_lines)
    plan.image_ids = sorted(int(r[_ID]) for r in deleted)
    return plan


def plan_rebuild(before: Iterable[Seq[Any]], after: Iterable[Seq[Any]],
                 old_lines: Mapping[bool, Iterable[tuple[int, int]]]) -> DeletionPlan:
    """Plan rewriting the tile rows of some sequences: `before` are the stored rows of
    `PLAN_COLUMNS` of *every* image of those sequences, `after` the rows as they will be
    (positions, angles, capture times or `sequence_id` changed; deleted images left out;
    the stored codes and angles as they were), `old_lines` the (zoom, tile) of the stored
    lines of those sequences, per index (by `computed`). Used by deletion and by the edits
    (`wayview.store.sqlite.edits`, `wayview.store.postgres.edits`).

    Every sequence of `after` is rebuilt from its rows (`shrunk`); a sequence of `before`
    without rows in `after` is `emptied`. Hidden images (the last column, see `HIDDEN_CODE`)
    stay in their sequence but out of its tile rows: their codes go to `hide`, and a
    sequence of hidden images only is `veiled`. The tiles bumped are those of every old code
    and line and of every new row.

    >>> row = lambda k, s: (k, 13.0 + k * 1e-4, 52.0, None, None, None, None, s, k, 0, 0, 0,
    ...                     0, 0)
    >>> plan = plan_rebuild([row(1, "a"), row(2, "a")], [row(1, "a"), row(2, "b")],
    ...                     {False: [], True: []})
    >>> [(s.sequence_id, s.first_image_id) for s in plan.shrunk], plan.emptied
    ([('a', 1), ('b', 2)], [])
    """
    before = list(before)
    by_sequence: dict[str, list[Seq[Any]]] = {}
    present: set[str] = set()
    plan = DeletionPlan(touched={computed: set(old_lines[computed]) for computed in (False, True)})
    for row in after:
        present.add(str(row[_SEQUENCE]))
        if is_hidden(row):
            if any(int(row[column]) != HIDDEN_CODE for column in _CODE.values()):
                plan.hide.append(int(row[_ID]))
        else:
            by_sequence.setdefault(str(row[_SEQUENCE]), []).append(row)
    shown = [r for r in before if int(r[_CODE[False]]) != HIDDEN_CODE]
    packs = {int(r[_CODE[False]]) >> PACK_SHIFT for r in shown}
    for computed, column in _CODE.items():
        plan.touched[computed] |= code_tiles(int(r[column]) for r in before
                                             if int(r[column]) != HIDDEN_CODE)
    plan.emptied = sorted({str(r[_SEQUENCE]) for r in before} - present)
    plan.veiled = sorted(present - set(by_sequence))
    plan.hide.sort()
    if plan.hide:  # their new codes' "tile" (PostgreSQL packs them there, never read)
        packs.add(HIDDEN_CODE >> PACK_SHIFT)
    for sequence_id in sorted(by_sequence):
        kept = sorted(by_sequence[sequence_id], key=lambda r: (int(r[_CAPTURED]), int(r[_ID])))
        first = kept[0]
        rebuild = SequenceRebuild(
            sequence_id, int(first[_ID]), int(first[_CAPTURED]),
            any(bool(r[_PANO]) for r in kept),
            line_figures([(float(r[1]), float(r[2])) for r in kept],
                         [int(r[_CAPTURED]) for r in kept]))
        ids = [int(r[_ID]) for r in kept]
        for computed, column in _CODE.items():
            points = [computed_position(*r[1:7]) if computed else (r[1], r[2], r[3])
                      for r in kept]
            new = rows_at(ids, points)
            rebuild.rows[computed] = new
            rebuild.updates[computed] = [
                (qk, compass, int(r[_ID]))
                for r, qk, compass in zip(kept, new.qk, new.compass, strict=True)
                if (qk, compass) != (int(r[column]), int(r[column + 1]))]
            plan.touched[computed] |= new.touched
        packs.update(qk >> PACK_SHIFT for qk in rebuild.rows[False].qk)
        plan.shrunk.append(rebuild)
    plan.pack_tiles = sorted(packs)
    return plan
