"""Tests of wayview.pipeline.sfm_assets: mesh protobuf (§6.3) and cluster JSON (§6.2)."""

from __future__ import annotations

import gzip
import json
import math
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wayview.pipeline.sfm_assets import (
    decode_cluster,
    decode_mesh,
    encode_cluster,
    encode_mesh,
    image_plane_mesh,
    reconstruction,
)

float32s = st.floats(width=32, allow_nan=False, allow_infinity=False)


@st.composite
def meshes(draw: st.DrawFn) -> tuple[list[tuple[float, float, float]], list[tuple[int, int, int]]]:
    vertices = draw(st.lists(st.tuples(float32s, float32s, float32s), max_size=60))
    if not vertices:
        return vertices, []
    index = st.integers(0, len(vertices) - 1)
    return vertices, draw(st.lists(st.tuples(index, index, index), max_size=60))


@settings(max_examples=200, deadline=None)
@given(meshes())
def test_mesh_round_trip(
    mesh: tuple[list[tuple[float, float, float]], list[tuple[int, int, int]]],
) -> None:
    vertices, faces = mesh
    data = encode_mesh(vertices, faces)
    assert decode_mesh(data) == (vertices, faces)
    # Unpacked: 5 bytes per coordinate, then 1 key byte + a varint per index.
    assert data[: 15 * len(vertices) : 5] == b"\x0d" * (3 * len(vertices))


def test_tiny_mesh_bytes() -> None:
    data = encode_mesh([(1.0, 0.0, 0.0)], [(0, 0, 0)])
    assert data == (
        b"\x0d" + struct.pack("<f", 1.0)
        + b"\x0d" + struct.pack("<f", 0.0)
        + b"\x0d" + struct.pack("<f", 0.0)
        + b"\x10\x00" * 3
    )
    assert data.hex() == "0d0000803f0d000000000d00000000100010001000"


def test_face_indices_are_varints() -> None:
    vertices = [(float(i), 0.0, 0.0) for i in range(300)]
    data = encode_mesh(vertices, [(1, 127, 128), (299, 0, 2)])
    assert data[4500:] == bytes.fromhex("1001107f108001" "10ab02" "1000" "1002")
    assert decode_mesh(data)[1] == [(1, 127, 128), (299, 0, 2)]


def test_mesh_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="2 coordinates, expected 3"):
        encode_mesh([(1.0, 2.0)], [])
    with pytest.raises(ValueError, match="non-finite"):
        encode_mesh([(math.nan, 0.0, 0.0)], [])
    with pytest.raises(ValueError, match="float32"):
        encode_mesh([(1e40, 0.0, 0.0)], [])
    with pytest.raises(ValueError, match="2 indices, expected 3"):
        encode_mesh([(0.0, 0.0, 0.0)], [(0, 0)])
    with pytest.raises(ValueError, match="refers to vertex -1"):
        encode_mesh([(0.0, 0.0, 0.0)], [(0, 0, -1)])


def _packed(tag: int, payload: bytes) -> bytes:
    return bytes([tag << 3 | 2, len(payload)]) + payload


def test_packed_mesh_is_rejected() -> None:
    packed_vertices = _packed(1, struct.pack("<3f", 1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="packed"):
        decode_mesh(packed_vertices)
    unpacked_vertices = encode_mesh([(1.0, 2.0, 3.0)], [])
    with pytest.raises(ValueError, match="packed"):
        decode_mesh(unpacked_vertices + _packed(2, bytes([0, 0, 0])))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x08\x00", "field 1 at byte 0 has wire type 0, expected 5"),  # vertex as varint
        (b"\x15\x00\x00\x00\x00", "field 2 at byte 0 has wire type 5, expected 0"),
        (b"\x1b", "unsupported wire type 3"),  # start group
        (b"\x1e", "unsupported wire type 6"),
        (b"\x0d\x00\x00", "truncated float"),
        (b"\x10\x80", "truncated varint"),
        (b"\x1a\x05\x00", "truncated field 3"),
        (b"\x0d\x00\x00\x80\x3f", "not a multiple of 3"),
        (encode_mesh([(0.0, 0.0, 0.0)], []) + b"\x10\x01" * 3, "out of range"),
        (b"\x00", "field number 0"),
    ],
)
def test_malformed_mesh_is_rejected(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_mesh(data)


def test_unknown_fields_are_skipped() -> None:
    mesh = encode_mesh([(1.0, 2.0, 3.0)], [(0, 0, 0)])
    extra = b"\x18\x05" + b"\x21" + bytes(8) + b"\x2a\x02ab" + b"\x35" + bytes(4)
    assert decode_mesh(extra + mesh) == decode_mesh(mesh) == ([(1.0, 2.0, 3.0)], [(0, 0, 0)])


def test_image_plane_mesh_starts_with_the_corners() -> None:
    width, height, focal = 4000, 3000, 0.8
    vertices, faces = image_plane_mesh(width, height, (focal, 0.0, 0.0), depth=10.0)
    half_u, half_v = 0.5 / focal * 10, 0.375 / focal * 10
    expected = [(-half_u, -half_v), (half_u, -half_v), (half_u, half_v), (-half_u, half_v)]
    for (x, y, z), (ex, ey) in zip(vertices[:4], expected, strict=True):
        assert (x, y, z) == pytest.approx((ex, ey, 10.0))
    # Every vertex lies on the plane z = depth inside the corners' rectangle.
    assert all(z == 10.0 for _, _, z in vertices)
    assert all(abs(x) <= half_u + 1e-9 and abs(y) <= half_v + 1e-9 for x, y, _ in vertices)
    assert len(vertices) == 25 and len(set(vertices)) == 25 and len(faces) == 32
    # Portrait image: the height is the longer side.
    portrait, _ = image_plane_mesh(3000, 4000, (1.0, 0.0, 0.0), depth=1.0)
    assert portrait[0] == pytest.approx((-0.375, -0.5, 1.0))


def _area(vertices: list[tuple[float, float, float]], face: tuple[int, int, int]) -> float:
    (ax, ay, _), (bx, by, _), (cx, cy, _) = (vertices[i] for i in face)
    return ((bx - ax) * (cy - ay) - (by - ay) * (cx - ax)) / 2


@pytest.mark.parametrize("divisions", [1, 2, 3, 4, 7])
def test_image_plane_mesh_triangles_tile_the_image(divisions: int) -> None:
    vertices, faces = image_plane_mesh(1600, 1200, (0.85, 0.0, 0.0), divisions=divisions)
    assert len(vertices) == (divisions + 1) ** 2 and len(faces) == 2 * divisions**2
    areas = [_area(vertices, face) for face in faces]
    assert all(area > 0 for area in areas)  # one winding: clockwise with y down
    (x0, y0, _), _, (x2, y2, _), _ = vertices[:4]
    assert sum(areas) == pytest.approx((x2 - x0) * (y2 - y0))
    # Each corner is used only by the triangles of its own cell, and the viewer's 3× push of
    # the corners (x, y only) keeps every triangle's winding: no fold-over.
    pushed = [(3 * x, 3 * y, z) if i < 4 else (x, y, z) for i, (x, y, z) in enumerate(vertices)]
    assert all(_area(pushed, face) > 0 for face in faces)
    assert decode_mesh(encode_mesh(vertices, faces))[1] == faces


def test_image_plane_mesh_undistorts() -> None:
    focal, k1, k2 = 0.9, -0.2, 0.05
    vertices, _ = image_plane_mesh(4000, 3000, (focal, k1, k2), depth=2.0)
    grid_points = set()
    for x, y, z in vertices:
        assert z == 2.0
        xn, yn = x / z, y / z
        r2 = xn * xn + yn * yn
        distortion = 1 + k1 * r2 + k2 * r2 * r2
        u, v = focal * distortion * xn, focal * distortion * yn  # OpenSfM projection
        # Back on the 5×5 grid of pixel edges: u in ±0.5 by 0.25, v in ±0.375 by 0.1875.
        column, row = (u + 0.5) / 0.25, (v + 0.375) / 0.1875
        assert column == pytest.approx(round(column), abs=1e-9)
        assert row == pytest.approx(round(row), abs=1e-9)
        grid_points.add((round(column), round(row)))
    assert grid_points == {(c, r) for c in range(5) for r in range(5)}
    first_four = [
        (round((focal * (1 + k1 * r2 + k2 * r2 * r2) * x / z + 0.5) / 0.25),
         round((focal * (1 + k1 * r2 + k2 * r2 * r2) * y / z + 0.375) / 0.1875))
        for x, y, z in vertices[:4]
        for r2 in [(x / z) ** 2 + (y / z) ** 2]
    ]
    assert first_four == [(0, 0), (4, 0), (4, 4), (0, 4)]


def test_image_plane_mesh_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="size"):
        image_plane_mesh(0, 10)
    with pytest.raises(ValueError, match="focal"):
        image_plane_mesh(10, 10, (0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="depth"):
        image_plane_mesh(10, 10, depth=-1.0)
    with pytest.raises(ValueError, match="cannot be inverted"):
        image_plane_mesh(4000, 3000, (0.3, -2.0, 0.0))


def _reconstruction() -> dict[str, object]:
    return reconstruction(
        {"latitude": 55.7, "longitude": 13.19, "altitude": 21.5},
        {"cam": {"projection_type": "perspective", "focal": 0.85, "k1": 0.0, "k2": 0.0}},
        {
            "4000000000001001": {"camera": "cam", "rotation": [0.1, 0.2, 0.3],
                                 "translation": (1, 2, 3)},
        },
        {"p1": {"color": [255, 0, 10], "coordinates": [1.5, -2.0, 0.25]}},
    )


def test_cluster_round_trip_is_zlib_compact_json() -> None:
    clusters = [_reconstruction()]
    data = encode_cluster(clusters)
    assert data[0] == 0x78 and int.from_bytes(data[:2], "big") % 31 == 0
    text = zlib.decompress(data)
    assert text == json.dumps(clusters, separators=(",", ":")).encode()
    assert decode_cluster(data) == clusters
    assert clusters[0]["shots"]["4000000000001001"]["translation"] == [1.0, 2.0, 3.0]


def test_cluster_accepts_gzip_and_rejects_other_encodings() -> None:
    text = json.dumps([_reconstruction()]).encode()
    assert decode_cluster(gzip.compress(text)) == [_reconstruction()]
    raw = zlib.compressobj(wbits=-15)
    raw_deflate = raw.compress(text) + raw.flush()
    for data in (text, raw_deflate, b""):
        with pytest.raises(ValueError):
            decode_cluster(data)
    with pytest.raises(ValueError, match="truncated"):
        decode_cluster(zlib.compress(text)[:-6])
    with pytest.raises(ValueError, match="array of objects"):
        decode_cluster(zlib.compress(b'{"points": {}}'))
    with pytest.raises(ValueError, match="not JSON"):
        decode_cluster(zlib.compress(b"[{"))
    with pytest.raises(ValueError, match="larger than"):
        decode_cluster(zlib.compress(b"[" + b" " * 1000 + b"]"), max_bytes=100)


def test_cluster_utf8_is_kept() -> None:
    data = encode_cluster([{"cameras": {"Kamera ø": {"projection_type": "perspective"}}}])
    assert "Kamera ø".encode() in zlib.decompress(data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r["lla"].pop("altitude"), "altitude must be a finite number"),
        (lambda r: r["lla"].update(latitude=91), "out of range"),
        (lambda r: r["lla"].update(latitude=True), "latitude must be a finite number"),
        (lambda r: r["cameras"].update({1: {"projection_type": "perspective"}}), "non-empty strings"),
        (lambda r: r["cameras"]["cam"].pop("projection_type"), "projection_type"),
        (lambda r: r["shots"]["s"].update(camera="other"), "not a camera id"),
        (lambda r: r["shots"]["s"].update(rotation=[0, 0]), "rotation must be 3 numbers"),
        (lambda r: r["shots"]["s"].update(translation=[0, 0, math.inf]), "finite"),
        (lambda r: r["shots"]["s"].update(rotation=["0", 0, 0]), "finite numbers"),
        (lambda r: r["shots"].update({"": {}}), "non-empty strings"),
        (lambda r: r["points"]["p"].update(color=[256, 0, 0]), "0–255"),
        (lambda r: r["points"]["p"].update(coordinates=None), "coordinates must be 3 numbers"),
    ],
)
def test_reconstruction_validates(change: object, message: str) -> None:
    parts: dict[str, dict[str, object]] = {
        "lla": {"latitude": 1.0, "longitude": 2.0, "altitude": 3.0},
        "cameras": {"cam": {"projection_type": "perspective"}},
        "shots": {"s": {"camera": "cam", "rotation": [0, 0, 0], "translation": [0, 0, 0]}},
        "points": {"p": {"color": [0, 0, 0], "coordinates": [0, 0, 0]}},
    }
    reconstruction(parts["lla"], parts["cameras"], parts["shots"], parts["points"])  # type: ignore[arg-type]
    change(parts)  # type: ignore[operator]
    with pytest.raises(ValueError, match=message):
        reconstruction(parts["lla"], parts["cameras"], parts["shots"], parts["points"])  # type: ignore[arg-type]


def test_reconstruction_keeps_extra_keys_and_defaults_points() -> None:
    result = reconstruction(
        {"latitude": 0, "longitude": 0, "altitude": 0},
        {"c": {"projection_type": "fisheye", "focal": 0.5, "width": 4000}},
        {"s": {"camera": "c", "rotation": [0, 0, 0], "translation": [0, 0, 0], "capture_time": 1}},
    )
    assert result["cameras"]["c"]["width"] == 4000
    assert result["shots"]["s"]["capture_time"] == 1
    assert result["points"] == {}
    assert result["reference_lla"] == {"latitude": 0.0, "longitude": 0.0, "altitude": 0.0}
