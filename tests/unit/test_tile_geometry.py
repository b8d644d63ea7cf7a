"""Line clipping and simplification for the sequence layer (wayview.tiles.geometry)."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from hypothesis import assume, given
from hypothesis import strategies as st

from wayview.tiles.geometry import clip_line, simplify

BOX = (-64.0, -64.0, 4160.0, 4160.0)  # a tile with a 64 px buffer
coord = st.floats(-3000.0, 7000.0, allow_nan=False, width=64)
points = st.lists(st.tuples(coord, coord), min_size=0, max_size=40)


def segment_distance(p: np.ndarray, line: np.ndarray) -> float:
    """Distance from point p to the polyline `line`."""
    if len(line) == 1:
        return float(np.hypot(*(p - line[0])))
    a, b = line[:-1], line[1:]
    ab = b - a
    denom = np.einsum("ij,ij->i", ab, ab)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(denom > 0, np.einsum("ij,ij->i", p - a, ab) / denom, 0.0)
    closest = a + np.clip(t, 0, 1)[:, None] * ab
    return float(np.min(np.hypot(*(p - closest).T)))


def inside(part: np.ndarray, box) -> bool:
    minx, miny, maxx, maxy = box
    return bool(
        np.all(part[:, 0] >= minx)
        and np.all(part[:, 0] <= maxx)
        and np.all(part[:, 1] >= miny)
        and np.all(part[:, 1] <= maxy)
    )


# --- clip_line -------------------------------------------------------------------------------------


def test_clip_line_splits_when_leaving_and_reentering():
    line = np.array([[-10, 5], [5, 5], [5, 20], [8, 20], [8, 2], [20, 2]], dtype=float)
    parts = clip_line(line, (0, 0, 10, 10))
    assert [p.tolist() for p in parts] == [
        [[0, 5], [5, 5], [5, 10]],
        [[8, 10], [8, 2], [10, 2]],
    ]


def test_clip_line_segment_crossing_box_without_vertex_inside():
    (part,) = clip_line(np.array([[-5.0, 5.0], [15.0, 5.0]]), (0, 0, 10, 10))
    assert part.tolist() == [[0, 5], [10, 5]]


def test_clip_line_drops_corner_touch_and_outside_lines():
    assert clip_line(np.array([[-5.0, 5.0], [5.0, -5.0]]), (0, 0, 10, 10)) == []  # touches (0, 0)
    assert clip_line(np.array([[20.0, 20.0], [30.0, 40.0]]), (0, 0, 10, 10)) == []
    assert clip_line(np.array([[1.0, 1.0]]), (0, 0, 10, 10)) == []
    assert clip_line(np.empty((0, 2)), (0, 0, 10, 10)) == []


def test_clip_line_keeps_edges_and_duplicates_inside():
    line = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 0.0], [10.0, 10.0]])
    (part,) = clip_line(line, (0, 0, 10, 10))
    assert np.array_equal(part, line)


@given(points)
def test_clip_line_fully_inside_is_unchanged(pts):
    line = np.array(pts, dtype=float).reshape(-1, 2)
    line = np.clip(line, BOX[:2], BOX[2:])
    assume(len(line) >= 2 and np.any(line[1:] != line[0]))
    (part,) = clip_line(line, BOX)
    assert np.array_equal(part, line)


@given(points)
def test_clip_line_parts_inside_box_on_line_and_same_length_as_shapely(pts):
    line = np.array(pts, dtype=float).reshape(-1, 2)
    parts = clip_line(line, BOX)
    for part in parts:
        assert part.dtype == np.float64 and part.shape[1] == 2 and len(part) >= 2
        assert np.any(part[1:] != part[0])  # ≥ 2 distinct vertices
        assert inside(part, BOX)
        for p in part:
            assert segment_distance(p, line) <= 1e-6
    if len(line) >= 2:
        # Per segment: shapely merges overlapping stretches of a line that doubles back.
        box = shapely.box(*BOX)
        expected = sum(
            shapely.LineString(line[i : i + 2]).intersection(box).length
            for i in range(len(line) - 1)
        )
        got = sum(float(np.sum(np.hypot(*np.diff(part, axis=0).T))) for part in parts)
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-6)


@given(points)
def test_clip_line_keeps_every_vertex_strictly_inside(pts):
    line = np.array(pts, dtype=float).reshape(-1, 2)
    parts = clip_line(line, BOX)
    kept = np.concatenate(parts) if parts else np.empty((0, 2))
    minx, miny, maxx, maxy = BOX
    for p in line:
        if minx < p[0] < maxx and miny < p[1] < maxy and len(line) >= 2:
            if np.all(line == p):  # a line of one repeated point has no part
                continue
            assert np.any(np.all(kept == p, axis=1))


# --- simplify --------------------------------------------------------------------------------------


def test_simplify_drops_near_collinear_points_and_keeps_endpoints():
    line = np.array([[0, 0], [5, 0.2], [10, 0], [10, 5], [10.1, 10]], dtype=float)
    assert simplify(line, 0.5).tolist() == [[0, 0], [10, 0], [10.1, 10]]
    assert simplify(line, 0.0).tolist() == line.tolist()


def test_simplify_keeps_out_and_back_spike():
    # A point-to-line measure would drop the spike at (20, 0) (it lies on the line through (0,0)
    # and (10,0)); the segment measure keeps it.
    line = np.array([[0, 0], [20, 0], [10, 0]], dtype=float)
    assert simplify(line, 1.0).tolist() == line.tolist()


def test_simplify_closed_loop_keeps_a_far_vertex():
    loop = np.array([[0, 0], [0.3, 0.1], [0.2, 0.3], [0, 0]], dtype=float)
    out = simplify(loop, 5.0)
    assert out[0].tolist() == [0, 0] and out[-1].tolist() == [0, 0]
    assert len(np.unique(out, axis=0)) == 2


def test_simplify_short_and_duplicate_inputs():
    assert simplify(np.empty((0, 2)), 1.0).shape == (0, 2)
    assert simplify([[1.0, 2.0]], 1.0).tolist() == [[1.0, 2.0]]
    assert simplify([[1.0, 2.0], [1.0, 2.0], [3.0, 4.0]], 1.0).tolist() == [[1, 2], [3, 4]]
    assert simplify([[1.0, 2.0], [1.0, 2.0]], 1.0).tolist() == [[1, 2]]


@given(points, st.floats(0.0, 50.0))
def test_simplify_bounds_error_and_keeps_endpoints(pts, tolerance):
    line = np.array(pts, dtype=float).reshape(-1, 2)
    out = simplify(line, tolerance)
    if len(line) == 0:
        assert len(out) == 0
        return
    assert out[0].tolist() == line[0].tolist() and out[-1].tolist() == line[-1].tolist()
    distinct = len(np.unique(line, axis=0))
    if distinct >= 2:
        assert len(np.unique(out, axis=0)) >= 2
    for p in line:
        assert segment_distance(p, out) <= tolerance + 1e-9
    # The result is a subsequence of the input.
    j = 0
    for p in out:
        while j < len(line) and not np.array_equal(line[j], p):
            j += 1
        assert j < len(line)
        j += 1
