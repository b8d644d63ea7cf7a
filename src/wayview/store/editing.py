"""wayview.store.editing: the image rows an edit writes (pure; shared by both SQL backends).

Each function takes the stored rows of `wayview.store.deletion.PLAN_COLUMNS` of every image of
the sequences an edit touches and returns the rows as they will be; the backend writes the
changed columns, then plans the tile rows with `plan_rebuild` and writes them as a deletion
does (one transaction, both tile indexes, every old and new tile's epoch bumped).

- a **correction** sets the position, compass angle or capture time of images; a corrected
  position clears the image's computed position, a corrected angle its computed angle, so
  `mly1_computed_public` and `computed_geometry` show the correction at once (the positions
  are computed again afterwards, `wayview.pipeline.edits`);
- a **split** moves an image and every later one (capture order) to a new sequence;
- a **merge** moves every image of one sequence into another.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from typing import Any

from wayview.errors import InvalidInput
from wayview.model.entities import ImageCorrection

_ID, _LON, _LAT, _COMPASS, _CLON, _CLAT, _CCOMPASS, _SEQUENCE, _CAPTURED = range(9)


@dataclass(slots=True)
class CorrectedRows:
    """What `corrected_rows` changes."""

    #: Every row, corrected ones replaced.
    after: list[tuple[Any, ...]] = field(default_factory=list)
    #: The corrected rows (new values), in id order.
    changed: list[tuple[Any, ...]] = field(default_factory=list)
    #: The values before, of the changed images.
    previous: list[ImageCorrection] = field(default_factory=list)


def corrected_rows(before: Iterable[Seq[Any]], corrections: Iterable[ImageCorrection]
                   ) -> CorrectedRows:
    """Apply corrections (the last one of an id wins) to stored rows; an image whose values
    do not change is left out of `changed`.

    >>> row = (1, 13.0, 52.0, 90.0, 13.1, 52.1, 80.0, "s", 1000, 0, 0, 0, 0, 0)
    >>> out = corrected_rows([row], [ImageCorrection(1, compass_angle_deg=45.0)])
    >>> out.changed[0][:9]
    (1, 13.0, 52.0, 45.0, 13.1, 52.1, None, 's', 1000)
    >>> corrected_rows([row], [ImageCorrection(1, lon=13.0, lat=52.0)]).changed
    []
    """
    wanted = {c.image_id: c for c in corrections}
    out = CorrectedRows()
    for row in before:
        c = wanted.get(int(row[_ID]))
        new = list(row)
        if c is not None:
            if c.lon is not None and c.lat is not None and (c.lon, c.lat) != (row[_LON],
                                                                              row[_LAT]):
                new[_LON], new[_LAT], new[_CLON], new[_CLAT] = c.lon, c.lat, None, None
            if c.compass_angle_deg is not None and c.compass_angle_deg != row[_COMPASS]:
                new[_COMPASS], new[_CCOMPASS] = c.compass_angle_deg, None
            if c.captured_at_ms is not None and c.captured_at_ms != row[_CAPTURED]:
                new[_CAPTURED] = c.captured_at_ms
        done = tuple(new)
        out.after.append(done)
        if done != tuple(row):
            out.changed.append(done)
            out.previous.append(ImageCorrection(
                int(row[_ID]), lon=row[_LON], lat=row[_LAT], compass_angle_deg=row[_COMPASS],
                captured_at_ms=int(row[_CAPTURED])))
    out.changed.sort(key=lambda r: int(r[_ID]))
    out.previous.sort(key=lambda c: c.image_id)
    return out


def capture_order(rows: Iterable[Seq[Any]]) -> list[Seq[Any]]:
    """Rows in capture order (time, then id), as tiles and `image_ids` order them."""
    return sorted(rows, key=lambda r: (int(r[_CAPTURED]), int(r[_ID])))


def split_rows(before: Iterable[Seq[Any]], at_image_id: int, new_sequence_id: str
               ) -> tuple[list[tuple[Any, ...]], list[int]]:
    """The rows after splitting one sequence at an image, and the ids that move.

    Raises:
        InvalidInput: the image is not in the sequence, or is its first (nothing would stay).

    >>> rows = [(k, 13.0, 52.0, None, None, None, None, "s", 10 * k) for k in (3, 1, 2)]
    >>> split_rows(rows, 2, "t")[1]
    [2, 3]
    """
    ordered = capture_order(before)
    ids = [int(r[_ID]) for r in ordered]
    if at_image_id not in ids:
        raise InvalidInput(f"image {at_image_id} is not in this sequence")
    at = ids.index(at_image_id)
    if at == 0:
        raise InvalidInput("a sequence cannot be split at its first image")
    moving = ids[at:]
    after = [(*r[:_SEQUENCE], new_sequence_id, *r[_SEQUENCE + 1:]) if k >= at else tuple(r)
             for k, r in enumerate(ordered)]
    return after, moving


def merged_rows(before: Iterable[Seq[Any]], into: str, other: str
                ) -> tuple[list[tuple[Any, ...]], list[int]]:
    """The rows after moving every image of `other` into `into`, and the ids that move.

    >>> rows = [(1, 13.0, 52.0, None, None, None, None, "a", 5),
    ...         (2, 13.0, 52.0, None, None, None, None, "b", 1)]
    >>> [r[_SEQUENCE] for r in merged_rows(rows, "a", "b")[0]], merged_rows(rows, "a", "b")[1]
    (['a', 'a'], [2])
    """
    after: list[tuple[Any, ...]] = []
    moving: list[int] = []
    for r in before:
        if r[_SEQUENCE] == other:
            moving.append(int(r[_ID]))
            after.append((*r[:_SEQUENCE], into, *r[_SEQUENCE + 1:]))
        else:
            after.append(tuple(r))
    return after, sorted(moving)


def check_mergeable(into: tuple[str, int, int | None] | None,
                    other: tuple[str, int, int | None] | None) -> None:
    """Whether two sequences, as (id, creator id, organization id) or None when unknown,
    may be merged.

    Raises:
        InvalidInput: one is unknown, they are the same, or their creators or organizations
            differ.
    """
    if into is None or other is None:
        raise InvalidInput("both sequences must exist")
    if into[0] == other[0]:
        raise InvalidInput("a sequence cannot be merged into itself")
    if into[1] != other[1]:
        raise InvalidInput("only sequences of the same creator can be merged")
    if into[2] != other[2]:
        raise InvalidInput("only sequences of the same organization can be merged")
