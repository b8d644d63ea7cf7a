"""wayview.model.s2: S2 cell ids for `GET /images?s2=` (spec §3.10), stored as signed 64-bit."""

from __future__ import annotations

import s2cell

_TWO_64 = 1 << 64
_TWO_63 = 1 << 63
MAX_LEVEL = 30


def to_signed(cell_id: int) -> int:
    """Map an unsigned 64-bit cell id into SQLite's signed INTEGER range.

    >>> to_signed(2**63), to_signed(5)
    (-9223372036854775808, 5)
    """
    return cell_id - _TWO_64 if cell_id >= _TWO_63 else cell_id


def leaf_cell(lat: float, lon: float) -> int:
    """The level-30 leaf cell of a position, signed for storage."""
    return to_signed(s2cell.lat_lon_to_cell_id(lat, lon, MAX_LEVEL))


def cell_level(cell_id: int) -> int | None:
    """The level of a valid unsigned cell id, or None when the id is not a cell.

    >>> cell_level(s2cell.lat_lon_to_cell_id(52.52, 13.405, 17))
    17
    >>> cell_level(0), cell_level(2**64 - 1)
    (None, None)
    """
    if not 0 < cell_id < _TWO_64 or (cell_id >> 61) > 5:
        return None
    lsb_index = (cell_id & -cell_id).bit_length() - 1
    if lsb_index % 2:
        return None
    return MAX_LEVEL - lsb_index // 2


def leaf_range(cell_id: int) -> tuple[int, int]:
    """The signed (min, max) leaf ids inside a valid cell; never crosses 2^63.

    >>> c = s2cell.lat_lon_to_cell_id(52.52, 13.405, 17)
    >>> lo, hi = leaf_range(c)
    >>> lo <= leaf_cell(52.52, 13.405) <= hi
    True
    """
    lsb = cell_id & -cell_id
    return to_signed(cell_id - lsb + 1), to_signed(cell_id + lsb - 1)
