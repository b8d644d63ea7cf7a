"""wayview.tiles.tilemath: pure XYZ Web-Mercator tile math (mercantile-style, numpy-vectorised).

Conventions (COMPATIBILITY.md §4.1):

- XYZ tiles, ``y = 0`` at the north edge; zoom ``0..MAX_ZOOM``; ``x, y`` in ``0..2**z - 1``. Any
  other tile address is answered with **404** (E15) by the API layer: `is_valid_tile` is the one
  place that decides validity.
- Tile pixel coordinates use ``EXTENT = 4096`` units per tile side, x to the east, y **down**,
  ``(0, 0)`` at the tile's north-west corner.
- "World pixels" (`world_px`) are the same units over the whole world: ``2**z * extent`` per side,
  so tile ``(x, y)`` covers ``[x*extent, (x+1)*extent) × [y*extent, (y+1)*extent)``. Because that
  scale is a power of two, the tile index of a point is exactly ``floor(world_px / extent)``, which
  keeps `lnglat_to_tile` and `project` consistent with each other.
- Latitudes are clamped to ``±MAX_LATITUDE`` (the Web-Mercator limit, ≈ ±85.0511°); longitudes
  outside ±180° are not wrapped.
"""

from __future__ import annotations

import math
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = [
    "EXTENT",
    "MAX_LATITUDE",
    "MAX_ZOOM",
    "is_valid_tile",
    "lnglat_to_tile",
    "project",
    "tile_bounds",
    "world_px",
]

MAX_ZOOM = 14  # highest zoom served by every tileset (COMPATIBILITY.md §4.1)
EXTENT = 4096  # MVT extent of every layer we emit (COMPATIBILITY.md §4.1)
MAX_LATITUDE = math.degrees(math.atan(math.sinh(math.pi)))  # 85.0511287798066…

ArrayLike: TypeAlias = npt.ArrayLike
FloatArray: TypeAlias = npt.NDArray[np.float64]
IntArray: TypeAlias = npt.NDArray[np.int32]


def is_valid_tile(z: int, x: int, y: int) -> bool:
    """Whether ``z/x/y`` is a tile we serve: ``0 ≤ z ≤ MAX_ZOOM`` and ``0 ≤ x, y < 2**z``.

    Anything else is a 404 (COMPATIBILITY.md §4.1, E15).

    >>> is_valid_tile(0, 0, 0), is_valid_tile(14, 16383, 0), is_valid_tile(15, 0, 0)
    (True, True, False)
    >>> is_valid_tile(2, 4, 0), is_valid_tile(2, 0, -1)
    (False, False)
    """
    if not 0 <= z <= MAX_ZOOM:
        return False
    n = 1 << z
    return 0 <= x < n and 0 <= y < n


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """WGS84 bounds ``(west, south, east, north)`` in degrees of tile ``z/x/y``.

    >>> tile_bounds(0, 0, 0)
    (-180.0, -85.0511287798066, 180.0, 85.0511287798066)
    >>> [round(v, 6) for v in tile_bounds(1, 1, 0)]
    [0.0, 0.0, 180.0, 85.051129]
    """
    n = 1 << z
    west = x / n * 360.0 - 180.0
    east = (x + 1) / n * 360.0 - 180.0
    north = _tile_y_to_lat(y, n)
    south = _tile_y_to_lat(y + 1, n)
    return (west, south, east, north)


def _tile_y_to_lat(y: int, n: int) -> float:
    """Latitude in degrees of the northern edge of tile row ``y`` at ``n`` tiles per side."""
    return math.degrees(math.atan(math.sinh(math.pi * (1.0 - 2.0 * y / n))))


def _unit_mercator(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Web-Mercator position in ``[0, 1]²`` (y down), latitude clamped to ``±MAX_LATITUDE``."""
    lon_a = np.asarray(lon, dtype=np.float64)
    lat_a = np.clip(np.asarray(lat, dtype=np.float64), -MAX_LATITUDE, MAX_LATITUDE)
    u = (lon_a + 180.0) / 360.0
    # y = (1 - asinh(tan φ)/π)/2; asinh(tan φ) == ln(tan φ + sec φ), but stable near the poles.
    v = 0.5 - np.arcsinh(np.tan(np.radians(lat_a))) / (2.0 * math.pi)
    # At the clamped latitude v is 0 or 1 up to rounding (≈ 1e-16); pin it so world edges are exact.
    return u, np.clip(v, 0.0, 1.0)


def world_px(
    lon: ArrayLike, lat: ArrayLike, z: int, extent: int = EXTENT
) -> tuple[FloatArray, FloatArray]:
    """World pixel coordinates (float64, y down) at zoom ``z``: the world is ``2**z * extent`` wide.

    Vectorised over ``lon``/``lat`` (scalars give 0-d arrays). Subtract ``x * extent`` and
    ``y * extent`` to get tile pixels of tile ``(x, y)`` before rounding, e.g. to clip a line.

    >>> wx, wy = world_px([-180.0, 0.0, 180.0], [85.06, 0.0, -90.0], 0)
    >>> wx.tolist(), wy.tolist()
    ([0.0, 2048.0, 4096.0], [0.0, 2048.0, 4096.0])
    """
    u, v = _unit_mercator(lon, lat)
    scale = float((1 << z) * extent)
    return u * scale, v * scale


def lnglat_to_tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The tile ``(x, y)`` at zoom ``z`` that contains ``lon, lat`` (edges clamped into range).

    A point on a boundary belongs to the tile to its east/south, except on the world's east and
    south edges (``lon = 180``, ``lat ≤ -MAX_LATITUDE``), which belong to the last column/row.

    >>> lnglat_to_tile(0.0, 0.0, 1), lnglat_to_tile(-180.0, 90.0, 3)
    ((1, 1), (0, 0))
    >>> lnglat_to_tile(180.0, -90.0, 3)
    (7, 7)
    >>> lnglat_to_tile(2.2945, 48.8584, 14)
    (8296, 5636)
    """
    u, v = _unit_mercator(lon, lat)
    n = 1 << z
    x = min(max(math.floor(float(u) * n), 0), n - 1)
    y = min(max(math.floor(float(v) * n), 0), n - 1)
    return (x, y)


def project(
    lon: ArrayLike, lat: ArrayLike, z: int, x: int, y: int, extent: int = EXTENT
) -> tuple[IntArray, IntArray]:
    """Tile pixel coordinates (int32, y down, rounded) of ``lon``/``lat`` in tile ``z/x/y``.

    A point inside the tile maps into ``0..extent``; points outside map outside that range (no
    clamping), which is what buffered line geometry needs.

    >>> px, py = project([0.0, 90.0, -1.0], [0.0, 0.0, 0.0], 1, 1, 1)
    >>> px.tolist(), py.tolist()
    ([0, 2048, -23], [0, 0, 0])
    """
    wx, wy = world_px(lon, lat, z, extent)
    px = np.rint(wx - float(x * extent)).astype(np.int32)
    py = np.rint(wy - float(y * extent)).astype(np.int32)
    return px, py
