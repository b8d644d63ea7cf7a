"""wayview.tiles.index: the tile index rows a write must store beside its images (pure).

Computed once per written sequence, in the writer's transaction, so low zooms and dense tiles
never scan raw images per request (issue: vector tiles):

- `qk` per image: the z26 Morton code of its Web-Mercator position (a tile = one range, and
  the code alone gives the image's pixel in its z14 tile);
- overview cells for z0–5: one image per sequence per cell of a 32 × 32 grid per tile, for at
  most `OVERVIEW_PER_CELL` sequences per cell;
- `sequence` lines for z6–14: the line simplified at that zoom, clipped per tile with a buffer,
  in tile pixels;
- the tiles touched at every zoom, whose epochs the write bumps (cache validation).

The same rows are built twice per sequence: at the original positions for `mly1_public` and at
the computed positions and angles, falling back to the original ones, for
`mly1_computed_public` (spec §4.2; `sequence_rows(..., computed=True)`).

This module, `tilemath` and `geometry` are pure (numpy only) and are the only parts of
`wayview.tiles` that `wayview.store` may import: the store calls `sequence_rows` inside
`insert_sequence`, so every writer (import, upload, demo, tests) keeps the index in step with
the images in the same transaction.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from wayview.model.entities import Image
from wayview.tiles.geometry import clip_line, simplify
from wayview.tiles.tilemath import EXTENT, MAX_ZOOM, world_px

OVERVIEW_MAX_ZOOM = 5  # mly1_public "overview" layer, z0–5
OVERVIEW_GRID_BITS = 5  # 32 × 32 cells per tile
OVERVIEW_PER_CELL = 4  # sequences represented per cell: at most 4,096 overview points per tile
SEQUENCE_ZOOMS = range(OVERVIEW_MAX_ZOOM + 1, MAX_ZOOM + 1)  # "sequence" layer, z6–14
IMAGE_ZOOM = MAX_ZOOM  # "image" layer and map-feature layers
QK_ZOOM = 26  # stored Morton code: z14 tile + 12 bits = exact pixels at extent 4096
LINE_BUFFER_PX = 64  # sequence lines are clipped to the tile plus this buffer (extent units)
SIMPLIFY_TOLERANCE_PX = 4.0  # in extent units (4096 per tile): about half a screen pixel
PART_SEPARATOR = -(2**31)
_PAIR = struct.Struct("<ii")


def morton(x: int, y: int) -> int:
    """Interleave the bits of x (even positions) and y (odd positions).

    >>> morton(0, 0), morton(1, 0), morton(0, 1), morton(3, 3)
    (0, 1, 2, 15)
    """
    out = 0
    bit = 0
    while x or y:
        out |= (x & 1) << (2 * bit) | (y & 1) << (2 * bit + 1)
        x >>= 1
        y >>= 1
        bit += 1
    return out


def morton_array(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Vectorised `morton` for coordinates below 2^32.

    >>> morton_array(np.array([1, 3]), np.array([0, 3])).tolist()
    [1, 15]
    """

    def spread(v: np.ndarray) -> np.ndarray:
        v = v.astype(np.uint64) & np.uint64(0xFFFFFFFF)
        v = (v | (v << np.uint64(16))) & np.uint64(0x0000FFFF0000FFFF)
        v = (v | (v << np.uint64(8))) & np.uint64(0x00FF00FF00FF00FF)
        v = (v | (v << np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
        v = (v | (v << np.uint64(2))) & np.uint64(0x3333333333333333)
        v = (v | (v << np.uint64(1))) & np.uint64(0x5555555555555555)
        return v

    codes: np.ndarray = (spread(x) | (spread(y) << np.uint64(1))).astype(np.int64)
    return codes


def unmorton_array(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `morton_array`.

    >>> [a.tolist() for a in unmorton_array(np.array([1, 15, 2]))]
    [[1, 3, 0], [0, 3, 1]]
    """

    def squeeze(v: np.ndarray) -> np.ndarray:
        v = v & np.uint64(0x5555555555555555)
        v = (v | (v >> np.uint64(1))) & np.uint64(0x3333333333333333)
        v = (v | (v >> np.uint64(2))) & np.uint64(0x0F0F0F0F0F0F0F0F)
        v = (v | (v >> np.uint64(4))) & np.uint64(0x00FF00FF00FF00FF)
        v = (v | (v >> np.uint64(8))) & np.uint64(0x0000FFFF0000FFFF)
        v = (v | (v >> np.uint64(16))) & np.uint64(0x00000000FFFFFFFF)
        return v.astype(np.int64)

    u = codes.astype(np.uint64)
    return squeeze(u), squeeze(u >> np.uint64(1))


def tile_pixels(codes: np.ndarray, z: int, x: int, y: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (extent 4096) inside tile (z, x, y) of z26 Morton codes, z ≤ 14.

    >>> [a.tolist() for a in tile_pixels(np.array([tile_range(14, 3, 5)[0]]), 14, 3, 5)]
    [[0], [0]]
    """
    qx, qy = unmorton_array(codes)
    shift = QK_ZOOM - z - 12  # bits per axis below the extent resolution of zoom z
    return (qx >> shift) - x * EXTENT, (qy >> shift) - y * EXTENT


def tile_range(z: int, x: int, y: int, level: int = QK_ZOOM) -> tuple[int, int]:
    """The inclusive range of level-`level` Morton codes inside tile (z, x, y).

    >>> tile_range(0, 0, 0, 2)
    (0, 15)
    >>> tile_range(1, 1, 0, 2)
    (4, 7)
    """
    shift = 2 * (level - z)
    low = morton(x, y) << shift
    return low, low + (1 << shift) - 1


def code_tiles(codes: Iterable[int]) -> set[tuple[int, int]]:
    """The (zoom, tile Morton code) of the tiles at every zoom 0–14 holding z26 codes: the
    tiles whose epochs a write of those positions bumps.

    >>> sorted(code_tiles([tile_range(14, 3, 5)[0]]))[::7]
    [(0, 0), (7, 0), (14, 39)]
    >>> morton(3, 5)
    39
    """
    keys = {int(code) >> (2 * (QK_ZOOM - MAX_ZOOM)) for code in codes}
    out: set[tuple[int, int]] = set()
    for z in range(MAX_ZOOM, -1, -1):
        out.update((z, key) for key in keys)
        keys = {key >> 2 for key in keys}
    return out


def encode_parts(parts: Sequence[np.ndarray]) -> bytes:
    """Line parts (n, 2) int → the BLOB stored in `tile_sequence_lines`."""
    chunks = []
    for k, part in enumerate(parts):
        if k:
            chunks.append(_PAIR.pack(PART_SEPARATOR, PART_SEPARATOR))
        chunks.append(np.ascontiguousarray(part, dtype="<i4").tobytes())
    return b"".join(chunks)


def decode_parts(blob: bytes) -> list[np.ndarray]:
    """Inverse of `encode_parts`.

    >>> [p.tolist() for p in decode_parts(encode_parts([np.array([[1, 2], [3, 4]])]))]
    [[[1, 2], [3, 4]]]
    """
    flat = np.frombuffer(blob, dtype="<i4").reshape(-1, 2)
    cuts = np.flatnonzero(flat[:, 0] == PART_SEPARATOR)
    parts = np.split(flat, cuts)
    return [p[1:] if k else p for k, p in enumerate(parts) if len(p) > (1 if k else 0)]


def decode_lines(blobs: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`decode_parts` of many lines at once, flat: vertices, vertices per part, parts per line.

    Parts left empty by a separator stay in the output with size 0 (the MVT encoder drops parts
    of fewer than two vertices anyway); no array per part or per line is made.

    >>> blobs = [encode_parts([np.array([[1, 2], [3, 4]]), np.array([[5, 6]])]),
    ...          encode_parts([np.array([[7, 8], [9, 9]])])]
    >>> [a.tolist() for a in decode_lines(blobs)]
    [[[1, 2], [3, 4], [5, 6], [7, 8], [9, 9]], [2, 1, 2], [2, 1]]
    """
    flat = np.frombuffer(b"".join(blobs), dtype="<i4").reshape(-1, 2)
    rows = np.fromiter(map(len, blobs), dtype=np.int64, count=len(blobs)) // _PAIR.size
    sep = flat[:, 0] == PART_SEPARATOR
    if not sep.any():  # one part per line (most z14 tiles): its rows
        return flat.copy(), rows, np.ones(len(blobs), dtype=np.int64)
    line_of_row = np.repeat(np.arange(len(blobs), dtype=np.int64), rows)
    # Row r of line j is in part j + (separators before r): each line starts a new part.
    seps_before = np.cumsum(sep) - sep
    part_of_row = line_of_row + seps_before
    parts_per_line = 1 + np.bincount(line_of_row[sep], minlength=len(blobs))
    keep = ~sep
    sizes = np.bincount(part_of_row[keep], minlength=int(parts_per_line.sum()))
    return flat[keep], sizes, parts_per_line


def has_computed(image: Image) -> bool:
    """Whether an image has a computed position or angle (else both tilesets place it alike).

    >>> has_computed(Image(1, "s", 1, 0, 13.0, 52.0, 1, 1)), has_computed(
    ...     Image(1, "s", 1, 0, 13.0, 52.0, 1, 1, computed_compass_angle_deg=3.0))
    (False, True)
    """
    return image.computed_compass_angle_deg is not None or (
        image.computed_lon is not None and image.computed_lat is not None)


def tile_position(image: Image, *, computed: bool = False) -> tuple[float, float, float | None]:
    """(lon, lat, compass angle or None) an image is drawn at: the original ones, or with
    `computed` the computed ones, each falling back to the original (spec §4.2).

    >>> im = Image(1, "s", 1, 0, 13.0, 52.0, 1, 1, compass_angle_deg=10.0, computed_lon=13.1,
    ...            computed_lat=52.1)
    >>> tile_position(im), tile_position(im, computed=True)
    ((13.0, 52.0, 10.0), (13.1, 52.1, 10.0))
    """
    if not computed:
        return image.lon, image.lat, image.compass_angle_deg
    return computed_position(image.lon, image.lat, image.compass_angle_deg, image.computed_lon,
                             image.computed_lat, image.computed_compass_angle_deg)


def computed_position(
    lon: float, lat: float, angle: float | None, computed_lon: float | None,
    computed_lat: float | None, computed_angle: float | None,
) -> tuple[float, float, float | None]:
    """`tile_position(..., computed=True)` of stored column values.

    >>> computed_position(13.0, 52.0, None, None, 52.1, 7.0)
    (13.0, 52.0, 7.0)
    """
    if computed_angle is None:
        computed_angle = angle
    if computed_lon is None or computed_lat is None:
        return lon, lat, computed_angle
    return computed_lon, computed_lat, computed_angle


def tile_compass(images: Sequence[Image], *, computed: bool = False) -> list[int]:
    """The integer compass angle tiles carry for each image of a sequence (in capture order).

    The angle (with `computed`: the computed one, else the original); else the bearing to the
    next image (the last image: from the previous) at the positions drawn; else 0 (spec §4.3).
    """
    return _compass([tile_position(im, computed=computed) for im in images])


def _compass(points: Sequence[tuple[float, float, float | None]]) -> list[int]:
    """`tile_compass` of (lon, lat, angle or None) in capture order."""
    out = []
    n = len(points)
    for k, (_, _, angle) in enumerate(points):
        if angle is not None:
            out.append(int(round(angle)) % 360)
            continue
        a, b = (points[k], points[k + 1]) if k + 1 < n else (
            (points[k - 1], points[k]) if n > 1 else (points[k], points[k]))
        if a[:2] == b[:2]:
            out.append(0)
            continue
        phi1, phi2 = math.radians(a[1]), math.radians(b[1])
        dlon = math.radians(b[0] - a[0])
        bearing = math.degrees(math.atan2(
            math.sin(dlon) * math.cos(phi2),
            math.cos(phi1) * math.sin(phi2) - math.sin(phi1) * math.cos(phi2) * math.cos(dlon),
        ))
        out.append(int(round(bearing)) % 360)
    return out


@dataclass(slots=True)
class SequenceTileRows:
    """Everything the store writes for one sequence's tiles."""

    qk: list[int] = field(default_factory=list)  # per image, in the order given
    compass: list[int] = field(default_factory=list)  # per image
    overview: list[tuple[int, int, int]] = field(default_factory=list)  # (z, cell, image_id)
    lines: list[tuple[int, int, bytes]] = field(default_factory=list)  # (z, tile, coords)
    touched: set[tuple[int, int]] = field(default_factory=set)  # (z, tile morton)


def _points_world(lons: np.ndarray, lats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World pixel coordinates at MAX_ZOOM (extent units)."""
    wx, wy = world_px(lons, lats, MAX_ZOOM)
    return np.asarray(wx, dtype=np.float64), np.asarray(wy, dtype=np.float64)


def point_keys(lons: Sequence[float] | np.ndarray, lats: Sequence[float] | np.ndarray) -> list[int]:
    """z24 Morton codes of points (used for map features and images)."""
    wx, wy = _points_world(np.asarray(lons, dtype=np.float64), np.asarray(lats, dtype=np.float64))
    scale = EXTENT * 2**MAX_ZOOM / 2**QK_ZOOM
    top = 2**QK_ZOOM - 1
    qx = np.clip(np.floor(wx / scale), 0, top).astype(np.int64)
    qy = np.clip(np.floor(wy / scale), 0, top).astype(np.int64)
    return [int(v) for v in morton_array(qx, qy)]


def sequence_rows(images: Sequence[Image], *, computed: bool = False) -> SequenceTileRows:
    """The tile rows of one sequence; `images` in capture order. With `computed`, the rows of
    `mly1_computed_public`: at the computed positions and angles (see `tile_position`)."""
    return rows_at([im.id for im in images],
                   [tile_position(im, computed=computed) for im in images])


def rows_at(ids: Sequence[int], points: Sequence[tuple[float, float, float | None]]
            ) -> SequenceTileRows:
    """`sequence_rows` of images given by id and drawn (lon, lat, angle or None), in capture
    order."""
    rows = SequenceTileRows()
    if not ids:
        return rows
    lons = np.array([p[0] for p in points], dtype=np.float64)
    lats = np.array([p[1] for p in points], dtype=np.float64)
    wx, wy = _points_world(lons, lats)
    rows.qk = point_keys(lons, lats)
    rows.compass = _compass(points)
    top14 = 2**MAX_ZOOM - 1
    tx14 = np.clip(np.floor(wx / EXTENT), 0, top14).astype(np.int64)
    ty14 = np.clip(np.floor(wy / EXTENT), 0, top14).astype(np.int64)
    for z in range(MAX_ZOOM + 1):
        shift = MAX_ZOOM - z
        for key in set(morton_array(tx14 >> shift, ty14 >> shift).tolist()):
            rows.touched.add((z, int(key)))
    for z in range(OVERVIEW_MAX_ZOOM + 1):
        level = z + OVERVIEW_GRID_BITS
        cell_size = EXTENT * 2 ** (MAX_ZOOM - level)
        cells = morton_array(np.floor(wx / cell_size).astype(np.int64),
                             np.floor(wy / cell_size).astype(np.int64))
        seen: set[int] = set()
        for image_id, cell in zip(ids, cells.tolist(), strict=True):
            if cell not in seen:
                seen.add(cell)
                rows.overview.append((z, int(cell), image_id))
    world = np.column_stack([wx, wy])
    _, first = np.unique(world, axis=0, return_index=True)
    if len(first) >= 2:
        for z in SEQUENCE_ZOOMS:
            _add_lines(rows, world / 2 ** (MAX_ZOOM - z), z)
    return rows


def _add_lines(rows: SequenceTileRows, line: np.ndarray, z: int) -> None:
    """Simplify the line at zoom z, then clip it to every tile it passes near."""
    keep = np.ones(len(line), dtype=bool)
    keep[1:] = np.any(line[1:] != line[:-1], axis=1)
    line = simplify(line[keep], SIMPLIFY_TOLERANCE_PX)
    if len(line) < 2:
        return
    top = 2**z - 1
    lo = np.clip(np.floor((np.minimum(line[:-1], line[1:]) - LINE_BUFFER_PX) / EXTENT), 0, top)
    hi = np.clip(np.floor((np.maximum(line[:-1], line[1:]) + LINE_BUFFER_PX) / EXTENT), 0, top)
    candidates: set[tuple[int, int]] = set()
    for (x0, y0), (x1, y1) in zip(lo.astype(int).tolist(), hi.astype(int).tolist(), strict=True):
        for tx in range(x0, x1 + 1):
            for ty in range(y0, y1 + 1):
                candidates.add((tx, ty))
    for tx, ty in sorted(candidates):
        origin = np.array([tx * EXTENT, ty * EXTENT], dtype=np.float64)
        local = line - origin
        box = (-LINE_BUFFER_PX, -LINE_BUFFER_PX, EXTENT + LINE_BUFFER_PX, EXTENT + LINE_BUFFER_PX)
        parts = []
        for part in clip_line(local, box):
            ints = np.rint(part).astype(np.int64)
            keep = np.ones(len(ints), dtype=bool)
            keep[1:] = np.any(ints[1:] != ints[:-1], axis=1)
            ints = ints[keep]
            if len(ints) >= 2:
                parts.append(ints)
        if parts:
            key = morton(tx, ty)
            rows.lines.append((z, key, encode_parts(parts)))
            rows.touched.add((z, key))
