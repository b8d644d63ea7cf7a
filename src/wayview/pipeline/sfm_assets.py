"""wayview.pipeline.sfm_assets: the mesh and point-cloud files MapillaryJS fetches (§6.2, §6.3).

- Mesh (`mesh.url`, §6.3): a protobuf message with two *unpacked* repeated fields, tag 1 =
  vertex coordinate (`float`, wire type 5, consecutive x, y, z) and tag 2 = face index
  (`varint`, wire type 0, consecutive triangles), read by MapillaryJS's `readMeshPbf`.
- Cluster (`sfm_cluster.url`, §6.2): a zlib-compressed UTF-8 JSON array of OpenSfM
  reconstructions, of which the viewer uses element 0.

>>> encode_mesh([(1.0, 0.0, 0.0)], [(0, 0, 0)]).hex(" ")
'0d 00 00 80 3f 0d 00 00 00 00 0d 00 00 00 00 10 00 10 00 10 00'
>>> decode_mesh(encode_mesh([(0.5, -2.0, 10.0)], [(0, 0, 0)]))
([(0.5, -2.0, 10.0)], [(0, 0, 0)])
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from wayview.pipeline.protobuf import read_varint, write_varint

__all__ = [
    "DEFAULT_MESH_DEPTH",
    "decode_cluster",
    "decode_mesh",
    "encode_cluster",
    "encode_mesh",
    "image_plane_mesh",
    "point_mesh",
    "reconstruction",
]

#: Distance of `image_plane_mesh`'s plane from the camera, in reconstruction units. The viewer
#: clamps depths to 5–200 m after dividing by `atomic_scale`.
DEFAULT_MESH_DEPTH = 10.0
#: Largest decompressed cluster `decode_cluster` accepts, in bytes.
MAX_CLUSTER_BYTES = 256 * 2**20

_VERTEX_KEY = 1 << 3 | 5  # field 1, wire type 5 (32-bit): 0x0d
_FACE_KEY = 2 << 3 | 0  # field 2, wire type 0 (varint): 0x10
_FLOAT = struct.Struct("<f")
_MAX_UINT32 = 2**32 - 1
_ZLIB_WBITS_AUTO = 32 + zlib.MAX_WBITS  # zlib or gzip header, never raw deflate


# --- mesh -----------------------------------------------------------------------------------


def encode_mesh(
    vertices: Sequence[Sequence[float]], faces: Sequence[Sequence[int]]
) -> bytes:
    """The mesh protobuf: every coordinate as an unpacked tag-1 float, then every face index as
    an unpacked tag-2 varint.

    Raises:
        ValueError: a vertex or face does not have three entries, a coordinate is not finite or
            does not fit a float32, or a face index is not a vertex index.

    >>> encode_mesh([], [])
    b''
    >>> encode_mesh([(0.0, 0.0, 0.0)] * 3, [(0, 1, 3)])
    Traceback (most recent call last):
    ...
    ValueError: face 0 refers to vertex 3, but there are 3 vertices
    """
    coordinates: list[float] = []
    for number, vertex in enumerate(vertices):
        if len(vertex) != 3:
            raise ValueError(f"vertex {number} has {len(vertex)} coordinates, expected 3")
        for value in vertex:
            if not math.isfinite(value):
                raise ValueError(f"vertex {number} has a non-finite coordinate {value!r}")
            coordinates.append(value)
    try:
        packed = struct.pack("<" + "Bf" * len(coordinates), *_interleave(_VERTEX_KEY, coordinates))
    except (OverflowError, struct.error) as exc:
        raise ValueError(f"a vertex coordinate does not fit a float32: {exc}") from exc
    count = len(vertices)
    pieces = [packed]
    for number, face in enumerate(faces):
        if len(face) != 3:
            raise ValueError(f"face {number} has {len(face)} indices, expected 3")
        for index in face:
            if isinstance(index, bool) or not 0 <= index < count:
                raise ValueError(
                    f"face {number} refers to vertex {index}, but there are {count} vertices"
                )
            pieces.append(_FACE_BYTE + write_varint(index))
    return b"".join(pieces)


def decode_mesh(data: bytes) -> tuple[list[tuple[float, float, float]], list[tuple[int, int, int]]]:
    """The `(vertices, faces)` of a mesh protobuf, read strictly.

    Fields other than 1 and 2 are skipped (as the viewer does). Everything the viewer would
    mis-read is an error: packed (length-delimited) vertices or faces, a wrong wire type for
    tag 1 or 2, wire types 3, 4, 6 and 7, truncated data, a coordinate count or index count
    that is not a multiple of 3, and face indices that are not vertex indices.

    Raises:
        ValueError: the data is not a mesh the viewer reads correctly.

    >>> decode_mesh(bytes([0x0a, 0x04]) + bytes(4))
    Traceback (most recent call last):
    ...
    ValueError: field 1 at byte 0 is length-delimited (packed); the viewer needs unpacked fields
    """
    coordinates: list[float] = []
    indices: list[int] = []
    view = memoryview(data)
    position, end = 0, len(data)
    while position < end:
        start = position
        key, position = read_varint(view, position)
        field, wire_type = key >> 3, key & 7
        if field == 0:
            raise ValueError(f"field number 0 at byte {start}")
        if field in (1, 2):
            expected = 5 if field == 1 else 0
            if wire_type == 2:
                raise ValueError(
                    f"field {field} at byte {start} is length-delimited (packed); "
                    "the viewer needs unpacked fields"
                )
            if wire_type != expected:
                raise ValueError(
                    f"field {field} at byte {start} has wire type {wire_type}, expected {expected}"
                )
        if wire_type == 0:
            value, position = read_varint(view, position)
            if field == 2:
                indices.append(value)
        elif wire_type == 5:
            if position + 4 > end:
                raise ValueError(f"truncated float at byte {position}")
            if field == 1:
                coordinates.append(_FLOAT.unpack_from(view, position)[0])
            position += 4
        elif wire_type == 1:
            position += 8
        elif wire_type == 2:
            length, position = read_varint(view, position)
            position += length
        else:
            raise ValueError(f"unsupported wire type {wire_type} at byte {start}")
        if position > end:
            raise ValueError(f"truncated field {field} at byte {start}")
    if len(coordinates) % 3:
        raise ValueError(f"{len(coordinates)} vertex coordinates is not a multiple of 3")
    if len(indices) % 3:
        raise ValueError(f"{len(indices)} face indices is not a multiple of 3")
    count = len(coordinates) // 3
    if indices and max(indices) >= count:
        raise ValueError(f"face index {max(indices)} is out of range for {count} vertices")
    vertices = [
        (coordinates[i], coordinates[i + 1], coordinates[i + 2])
        for i in range(0, len(coordinates), 3)
    ]
    faces = [(indices[i], indices[i + 1], indices[i + 2]) for i in range(0, len(indices), 3)]
    return vertices, faces


def image_plane_mesh(
    width: int,
    height: int,
    camera_parameters: Sequence[float] = (0.85, 0.0, 0.0),
    depth: float = DEFAULT_MESH_DEPTH,
    divisions: int = 4,
) -> tuple[list[tuple[float, float, float]], list[tuple[int, int, int]]]:
    """A flat mesh for a perspective image: a plane at distance `depth` facing the camera.

    The vertices are in the camera frame (x right, y down, z forward). The first four are the
    image corners, top-left, top-right, bottom-right, bottom-left (§6.3); then the other points
    of a regular `(divisions + 1)²` grid over the image, row by row. Grid points are the pixel
    edges back-projected through the camera `[focal, k1, k2]` (OpenSfM's perspective model,
    focal normalised by `max(width, height)`, so the image spans `±W/(2·max)` by `±H/(2·max)`
    in normalised coordinates), with the radial distortion removed, onto the plane z = `depth`.

    MapillaryJS moves the first four vertices outwards, multiplying their x and y by 3 at
    unchanged z (`GraphConverter.mesh`, a margin for undistortion): on a plane of constant z
    they stay on the plane, and since each corner is only used by the two triangles of its own
    grid cell, the enlarged corner triangles do not fold over the others.

    Each grid cell is two triangles, split along the diagonal through the cell's corner nearest
    to the image corner, wound clockwise as seen from the camera (x right, y down).

    Raises:
        ValueError: bad size, depth or `divisions`, or a distortion that cannot be inverted
            over the image.

    >>> vertices, faces = image_plane_mesh(4000, 3000, (0.5, 0.0, 0.0), depth=10.0)
    >>> vertices[:4]
    [(-10.0, -7.5, 10.0), (10.0, -7.5, 10.0), (10.0, 7.5, 10.0), (-10.0, 7.5, 10.0)]
    >>> len(vertices), len(faces)
    (25, 32)
    """
    if not (math.isfinite(depth) and depth > 0):
        raise ValueError(f"depth must be positive, got {depth!r}")
    return _grid_mesh(width, height, camera_parameters, divisions, lambda _column, _row: depth)


def point_mesh(
    width: int,
    height: int,
    camera_parameters: Sequence[float],
    points: Sequence[Sequence[float]],
    divisions: int = 8,
) -> tuple[list[tuple[float, float, float]], list[tuple[int, int, int]]]:
    """A mesh for a perspective image from the 3-D points it sees (the real 3D transition).

    `points` are in the image's camera frame (x right, y down, z forward), in reconstruction
    units. The mesh is `image_plane_mesh`'s grid (same vertex order, corners first, same
    faces), but every vertex sits on its own ray at the depth of the points seen near it: the
    median depth of the points that project within one grid cell of the vertex. Vertices with
    no point nearby take the mean of their filled neighbours (repeatedly), and without any
    point in front of the camera the mesh is the plane at `DEFAULT_MESH_DEPTH`. Depths are
    clamped to the 5th–95th percentile of the points' depths, so one stray point makes no spike.

    >>> wall = [(x / 4, y / 4, 20.0) for x in range(-2, 3) for y in range(-2, 3)]
    >>> vertices, faces = point_mesh(400, 300, (1.0, 0.0, 0.0), wall)
    >>> {round(v[2], 6) for v in vertices}, len(vertices), len(faces)
    ({20.0}, 81, 128)
    """
    focal = float(camera_parameters[0])
    if not (math.isfinite(focal) and focal > 0):
        raise ValueError(f"focal must be positive, got {focal!r}")
    size = max(width, height)
    half_u, half_v = width / (2 * size), height / (2 * size)
    ahead = [(x / z, y / z, z) for x, y, z in ((float(p[0]), float(p[1]), float(p[2]))
                                              for p in points)
             if z > 1e-6 and math.isfinite(x) and math.isfinite(y) and math.isfinite(z)]
    if not ahead:
        return image_plane_mesh(width, height, camera_parameters, divisions=divisions)
    depths_sorted = sorted(z for _, _, z in ahead)
    low = depths_sorted[int(0.05 * (len(depths_sorted) - 1))]
    high = depths_sorted[int(0.95 * (len(depths_sorted) - 1))]
    k1 = float(camera_parameters[1]) if len(camera_parameters) > 1 else 0.0
    k2 = float(camera_parameters[2]) if len(camera_parameters) > 2 else 0.0
    cell_x = 2 * half_u / focal / divisions
    cell_y = 2 * half_v / focal / divisions
    grid: dict[tuple[int, int], float] = {}
    for row in range(divisions + 1):
        for column in range(divisions + 1):
            u = -half_u + 2 * half_u * column / divisions
            v = -half_v + 2 * half_v * row / divisions
            x, y = _undistort(u / focal, v / focal, k1, k2)
            near = sorted(z for px, py, z in ahead
                          if abs(px - x) <= cell_x and abs(py - y) <= cell_y)
            if near:
                grid[column, row] = min(high, max(low, near[len(near) // 2]))
    if not grid:
        median = depths_sorted[len(depths_sorted) // 2]
        grid = {(0, 0): median}
    _fill(grid, divisions)
    return _grid_mesh(width, height, camera_parameters, divisions,
                      lambda column, row: grid[column, row])


def _fill(grid: dict[tuple[int, int], float], divisions: int) -> None:
    """Give every grid vertex a depth: the mean of its filled 8-neighbours, ring by ring."""
    everything = [(c, r) for r in range(divisions + 1) for c in range(divisions + 1)]
    while len(grid) < len(everything):
        new: dict[tuple[int, int], float] = {}
        for c, r in everything:
            if (c, r) in grid:
                continue
            near = [grid[c + dc, r + dr] for dc in (-1, 0, 1) for dr in (-1, 0, 1)
                    if (c + dc, r + dr) in grid]
            if near:
                new[c, r] = sum(near) / len(near)
        if not new:  # cannot happen with one filled vertex; guards an endless loop
            fallback = sum(grid.values()) / len(grid)
            new = {point: fallback for point in everything if point not in grid}
        grid.update(new)


def _grid_mesh(
    width: int,
    height: int,
    camera_parameters: Sequence[float],
    divisions: int,
    depth_at: Callable[[int, int], float],
) -> tuple[list[tuple[float, float, float]], list[tuple[int, int, int]]]:
    """The grid mesh of `image_plane_mesh`, each vertex at depth `depth_at(column, row)`."""
    focal, k1, k2 = (float(value) for value in camera_parameters)
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}×{height}")
    if not (math.isfinite(focal) and focal > 0):
        raise ValueError(f"focal must be positive, got {focal!r}")
    if divisions < 1:
        raise ValueError(f"divisions must be at least 1, got {divisions}")
    size = max(width, height)
    half_u, half_v = width / (2 * size), height / (2 * size)
    steps = range(divisions + 1)
    last = divisions
    corners = [(0, 0), (last, 0), (last, last), (0, last)]  # (column, row)
    order = corners + [(c, r) for r in steps for c in steps if (c, r) not in corners]
    index = {point: number for number, point in enumerate(order)}
    vertices = []
    for column, row in order:
        u = -half_u + 2 * half_u * column / divisions
        v = -half_v + 2 * half_v * row / divisions
        x, y = _undistort(u / focal, v / focal, k1, k2)
        depth = depth_at(column, row)
        vertices.append((x * depth, y * depth, depth))
    faces: list[tuple[int, int, int]] = []
    for row in range(divisions):
        for column in range(divisions):
            a, b = index[column, row], index[column + 1, row]
            c, d = index[column + 1, row + 1], index[column, row + 1]
            # Split along the diagonal that passes through the cell corner closest to the
            # nearest image corner: a-c for the top-left/bottom-right quadrants, else b-d.
            left, top = column < divisions / 2, row < divisions / 2
            if left == top:
                faces += [(a, b, c), (a, c, d)]
            else:
                faces += [(a, b, d), (b, c, d)]
    return vertices, faces


# --- cluster --------------------------------------------------------------------------------


def encode_cluster(reconstructions: Sequence[Mapping[str, Any]]) -> bytes:
    """The `sfm_cluster` file: zlib-compressed compact UTF-8 JSON array of reconstructions.

    >>> data = encode_cluster([{"points": {}}])
    >>> data[0], zlib.decompress(data)
    (120, b'[{"points":{}}]')
    """
    try:
        text = orjson.dumps(list(reconstructions))
    except TypeError as exc:
        raise ValueError(f"reconstruction is not JSON-serialisable: {exc}") from exc
    return zlib.compress(text, 6)


def decode_cluster(data: bytes, max_bytes: int = MAX_CLUSTER_BYTES) -> list[dict[str, Any]]:
    """The reconstructions of a cluster file, zlib- or gzip-compressed (as the viewer accepts).

    Raises:
        ValueError: raw deflate, uncompressed or damaged data, more than `max_bytes` once
            decompressed, or JSON that is not an array of objects.

    >>> import gzip
    >>> decode_cluster(gzip.compress(b'[{"shots": {}}]'))
    [{'shots': {}}]
    >>> decode_cluster(b'[{"shots": {}}]')
    Traceback (most recent call last):
    ...
    ValueError: not a zlib or gzip stream: Error -3 while decompressing data: incorrect header check
    """
    decompressor = zlib.decompressobj(_ZLIB_WBITS_AUTO)
    try:
        text = decompressor.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise ValueError(f"not a zlib or gzip stream: {exc}") from exc
    if len(text) > max_bytes:
        raise ValueError(f"cluster is larger than {max_bytes} bytes once decompressed")
    if not decompressor.eof:
        raise ValueError("truncated compressed cluster")
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"cluster is not JSON: {exc}") from exc
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ValueError("cluster is not a JSON array of objects")
    return value


def reconstruction(
    reference_lla: Mapping[str, float],
    cameras: Mapping[str, Mapping[str, Any]],
    shots: Mapping[str, Mapping[str, Any]],
    points: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """One reconstruction of a cluster file (§6.2), checked and copied into plain JSON types.

    - `reference_lla`: `latitude` (−90…90), `longitude` (−180…180), `altitude` (metres).
    - `cameras`: string id → object with a string `projection_type`; other keys (`focal`, `k1`,
      `k2`, `width`, …) are kept as given.
    - `shots`: string image id → object with `camera` (a key of `cameras`), `rotation`
      (angle-axis) and `translation`, both three finite numbers; other keys are kept.
    - `points`: string id → `color` (three numbers 0–255) and `coordinates` (three finite
      numbers, metres in the local frame); empty when omitted.

    Raises:
        ValueError: any of the above does not hold.

    >>> r = reconstruction(
    ...     {"latitude": 55.7, "longitude": 13.2, "altitude": 20},
    ...     {"c1": {"projection_type": "perspective", "focal": 0.85, "k1": 0.0, "k2": 0.0}},
    ...     {"4000000000001001": {"camera": "c1", "rotation": [0, 0, 0], "translation": [0, 0, 1]}},
    ... )
    >>> r["shots"]["4000000000001001"]["rotation"], r["points"], sorted(r)
    ([0.0, 0.0, 0.0], {}, ['cameras', 'points', 'reference_lla', 'shots'])
    """
    lla = {name: _number(reference_lla, name, "reference_lla") for name in _LLA}
    if not -90 <= lla["latitude"] <= 90 or not -180 <= lla["longitude"] <= 180:
        raise ValueError(f"reference_lla out of range: {lla}")
    camera_out: dict[str, dict[str, Any]] = {}
    for camera_id, camera in _items(cameras, "cameras"):
        if not isinstance(camera.get("projection_type"), str):
            raise ValueError(f"cameras[{camera_id!r}].projection_type must be a string")
        camera_out[camera_id] = dict(camera)
    shot_out: dict[str, dict[str, Any]] = {}
    for shot_id, shot in _items(shots, "shots"):
        where = f"shots[{shot_id!r}]"
        if shot.get("camera") not in camera_out:
            raise ValueError(f"{where}.camera {shot.get('camera')!r} is not a camera id")
        shot_out[shot_id] = {
            **shot,
            "rotation": _triple(shot.get("rotation"), f"{where}.rotation"),
            "translation": _triple(shot.get("translation"), f"{where}.translation"),
        }
    point_out: dict[str, dict[str, Any]] = {}
    for point_id, point in _items(points or {}, "points"):
        where = f"points[{point_id!r}]"
        color = _triple(point.get("color"), f"{where}.color")
        if not all(0 <= value <= 255 for value in color):
            raise ValueError(f"{where}.color must be within 0–255, got {color}")
        point_out[point_id] = {
            "color": color,
            "coordinates": _triple(point.get("coordinates"), f"{where}.coordinates"),
        }
    return {"cameras": camera_out, "shots": shot_out, "points": point_out, "reference_lla": lla}


# --- helpers --------------------------------------------------------------------------------

_FACE_BYTE = bytes([_FACE_KEY])
_LLA = ("latitude", "longitude", "altitude")


def _interleave(key: int, values: list[float]) -> list[float]:
    out: list[float] = [key] * (2 * len(values))
    out[1::2] = values
    return out


def _undistort(xd: float, yd: float, k1: float, k2: float) -> tuple[float, float]:
    """Normalised point whose OpenSfM radial distortion `1 + k1·r² + k2·r⁴` gives (xd, yd)."""
    rd = math.hypot(xd, yd)
    if rd == 0 or (k1 == 0 and k2 == 0):
        return xd, yd
    r = rd
    for _ in range(50):  # Newton on f(r) = r·(1 + k1 r² + k2 r⁴) − rd
        r2 = r * r
        slope = 1 + 3 * k1 * r2 + 5 * k2 * r2 * r2
        if slope <= 0:
            break
        step = (r * (1 + k1 * r2 + k2 * r2 * r2) - rd) / slope
        r -= step
        if abs(step) < 1e-12:
            factor = r / rd
            if r > 0:
                return xd * factor, yd * factor
            break
    raise ValueError(f"radial distortion k1={k1}, k2={k2} cannot be inverted at radius {rd:.4g}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(mapping: Mapping[str, Any], name: str, where: str) -> float:
    value = mapping.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where}.{name} must be a finite number, got {value!r}")
    return float(value)


def _triple(value: object, where: str) -> list[float]:
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise ValueError(f"{where} must be 3 numbers, got {value!r}")
    if not all(_is_number(item) and math.isfinite(item) for item in value):
        raise ValueError(f"{where} must be 3 finite numbers, got {value!r}")
    return [float(item) for item in value]


def _items(
    mapping: Mapping[str, Mapping[str, Any]], where: str
) -> list[tuple[str, Mapping[str, Any]]]:
    if not isinstance(mapping, Mapping):
        raise ValueError(f"{where} must be an object")
    items = []
    for key, value in mapping.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"{where} keys must be non-empty strings, got {key!r}")
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}[{key!r}] must be an object")
        items.append((key, value))
    return items
