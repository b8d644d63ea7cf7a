"""wayview.model.detection_geometry: a detection polygon as the base64 MVT tile of spec §5."""

from __future__ import annotations

import base64
from collections.abc import Sequence

EXTENT = 4096
LAYER_NAME = "mpy-or"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 31)


def _field(number: int, wire_type: int) -> bytes:
    return _varint((number << 3) | wire_type)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _field(number, 2) + _varint(len(payload)) + payload


def _signed_area(ring: Sequence[tuple[int, int]]) -> int:
    return sum(
        x0 * y1 - x1 * y0
        for (x0, y0), (x1, y1) in zip(ring, [*ring[1:], ring[0]], strict=True)
    )


def _ring_to_tile(ring: Sequence[tuple[float, float]]) -> list[tuple[int, int]]:
    points: list[tuple[int, int]] = []
    for u, v in ring:
        x = min(max(round(u * EXTENT), 0), EXTENT)
        y = min(max(round(v * EXTENT), 0), EXTENT)
        if not points or points[-1] != (x, y):
            points.append((x, y))
    if len(points) > 1 and points[0] == points[-1]:
        points.pop()
    return points


def encode_polygon(rings: Sequence[Sequence[tuple[float, float]]]) -> str:
    """Encode normalised rings (u, v in 0..1, top-left origin, y down) as base64 MVT.

    The exterior ring is written with positive area (clockwise on screen) and holes negative,
    as MVT 2.x requires; degenerate rings are dropped.

    >>> encode_polygon([[(0.1, 0.1), (0.2, 0.1), (0.2, 0.2)]])[:8]
    'GiJ4AgoG'
    """
    commands: list[int] = []
    cx = cy = 0
    for index, raw in enumerate(rings):
        ring = _ring_to_tile(raw)
        if len(ring) < 3:
            if index == 0:
                break
            continue
        area = _signed_area(ring)
        if area == 0:
            if index == 0:
                break
            continue
        if (area > 0) != (index == 0):
            ring.reverse()
        x, y = ring[0]
        commands += [(1 & 7) | (1 << 3), _zigzag(x - cx), _zigzag(y - cy)]
        cx, cy = x, y
        commands.append((2 & 7) | ((len(ring) - 1) << 3))
        for x, y in ring[1:]:
            commands += [_zigzag(x - cx), _zigzag(y - cy)]
            cx, cy = x, y
        commands.append((7 & 7) | (1 << 3))
    geometry = b"".join(_varint(c) for c in commands)
    feature = (
        _field(1, 0) + _varint(1)  # id
        + _field(3, 0) + _varint(3)  # type POLYGON
        + _length_delimited(4, geometry)
    )
    layer = (
        _field(15, 0) + _varint(2)  # version
        + _length_delimited(1, LAYER_NAME.encode())
        + _length_delimited(2, feature)
        + _field(5, 0) + _varint(EXTENT)
    )
    tile = _length_delimited(3, layer)
    return base64.b64encode(tile).decode("ascii")
