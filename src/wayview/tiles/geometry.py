"""wayview.tiles.geometry: clip and simplify polylines in pixel space for the `sequence` layer.

Both functions work on ``(n, 2)`` float arrays of world or tile pixel coordinates (see
`wayview.tiles.tilemath.world_px`) and are pure. The intended order for one tile is: project to
tile pixels (float), `clip_line` to the tile box grown by a small buffer, `simplify` each part with
a tolerance of about one pixel, then round; `wayview.tiles.mvt` drops the duplicate vertices that
rounding creates and any part left with fewer than two distinct vertices.
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = ["Box", "clip_line", "simplify"]

Box: TypeAlias = tuple[float, float, float, float]  # (minx, miny, maxx, maxy), inclusive
FloatArray: TypeAlias = npt.NDArray[np.float64]


def clip_line(px: npt.ArrayLike, box: Box) -> list[FloatArray]:
    """Clip a polyline to an axis-aligned box, one part per stretch that stays inside.

    Liang–Barsky on every segment at once (numpy), then consecutive visible segments are joined
    while the line stays inside; leaving and re-entering the box starts a new part. Vertices inside
    the box are returned bit-for-bit; crossing points are computed on the box edge. Parts with fewer
    than two distinct vertices (a line touching a corner or an edge) are dropped. O(n).

    Args:
        px: ``(n, 2)`` vertex coordinates.
        box: ``(minx, miny, maxx, maxy)``, edges included.

    Returns:
        The parts, each a float64 ``(m, 2)`` array with ``m ≥ 2``, in line order.

    >>> line = [[-10.0, 5.0], [5.0, 5.0], [5.0, 20.0], [8.0, 20.0], [8.0, 2.0]]
    >>> [part.tolist() for part in clip_line(line, (0.0, 0.0, 10.0, 10.0))]
    [[[0.0, 5.0], [5.0, 5.0], [5.0, 10.0]], [[8.0, 10.0], [8.0, 2.0]]]
    >>> clip_line([[20.0, 20.0], [30.0, 30.0]], (0.0, 0.0, 10.0, 10.0))
    []
    """
    pts = np.asarray(px, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 2:
        return []
    minx, miny, maxx, maxy = (float(v) for v in box)
    a, b = pts[:-1], pts[1:]
    d = b - a
    t0 = np.zeros(len(a))
    t1 = np.ones(len(a))
    visible = np.ones(len(a), dtype=bool)
    # Tiny deltas overflow to ±inf, which orders correctly; zero deltas are handled as parallel.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for axis, lo, hi in ((0, minx, maxx), (1, miny, maxy)):
            start, delta = a[:, axis], d[:, axis]
            parallel = delta == 0.0
            visible &= ~(parallel & ((start < lo) | (start > hi)))
            t_lo = (lo - start) / delta
            t_hi = (hi - start) / delta
            forward = delta > 0.0
            t_enter = np.where(forward, t_lo, t_hi)
            t_exit = np.where(forward, t_hi, t_lo)
            t0 = np.where(parallel, t0, np.maximum(t0, t_enter))
            t1 = np.where(parallel, t1, np.minimum(t1, t_exit))
    visible &= t0 <= t1
    (seg,) = np.nonzero(visible)
    if seg.size == 0:
        return []
    t0, t1 = t0[seg], t1[seg]
    # Inside endpoints are taken as given (a + 1·d need not equal b in floating point).
    seg_start = np.where((t0 == 0.0)[:, None], a[seg], a[seg] + t0[:, None] * d[seg])
    seg_end = np.where((t1 == 1.0)[:, None], b[seg], a[seg] + t1[:, None] * d[seg])
    # Interpolated points can land a rounding error outside; the box is convex, so pin them.
    lo_xy, hi_xy = np.array([minx, miny]), np.array([maxx, maxy])
    seg_start = np.clip(seg_start, lo_xy, hi_xy)
    seg_end = np.clip(seg_end, lo_xy, hi_xy)
    # A segment continues the current part when it directly follows a visible segment that ended
    # inside the box and it starts inside the box itself.
    joined = np.zeros(len(seg), dtype=bool)
    joined[1:] = (np.diff(seg) == 1) & (t1[:-1] == 1.0) & (t0[1:] == 0.0)
    starts = ~joined
    # Interleave [start, end] per segment and keep the start only where a part begins.
    out = np.empty((2 * len(seg), 2))
    out[0::2] = seg_start
    out[1::2] = seg_end
    keep = np.ones(2 * len(seg), dtype=bool)
    keep[0::2] = starts
    out = out[keep]
    # Output index of each part's first vertex: segment i contributes 1 + starts[i] vertices.
    first = (np.cumsum(1 + starts) - (1 + starts))[starts]
    parts = np.split(out, first[1:])
    return [part for part in parts if _has_two_distinct(part)]


def _has_two_distinct(part: FloatArray) -> bool:
    """Whether a vertex array holds at least two distinct points."""
    return bool(len(part) >= 2 and np.any(part[1:] != part[0]))


def simplify(points: npt.ArrayLike, tolerance_px: float) -> FloatArray:
    """Douglas–Peucker simplification that keeps both endpoints.

    Distances are measured to the *segment* between the kept vertices, not to the infinite line, so
    an out-and-back spike longer than the tolerance survives (a point-to-line measure would drop
    it). Hence every input vertex lies within ``tolerance_px`` of the returned polyline.
    Consecutive duplicate vertices are removed first. A closed line (first = last vertex) always
    keeps its farthest vertex, so a line with two or more distinct vertices never collapses to
    fewer than two distinct vertices.

    Args:
        points: ``(n, 2)`` vertex coordinates.
        tolerance_px: maximum distance, in the same units, between a dropped vertex and the result.

    Returns:
        The kept vertices, float64 ``(m, 2)``, a subsequence of the input (without repeats).

    >>> simplify([[0, 0], [1, 0.1], [2, -0.1], [3, 5], [4, 6], [5, 7.05], [6, 8]], 0.5).tolist()
    [[0.0, 0.0], [2.0, -0.1], [3.0, 5.0], [6.0, 8.0]]
    >>> simplify([[0, 0], [0, 0], [10, 0], [5, 0.2]], 1.0).tolist()
    [[0.0, 0.0], [10.0, 0.0], [5.0, 0.2]]
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) > 1:
        distinct = np.ones(len(pts), dtype=bool)
        distinct[1:] = np.any(pts[1:] != pts[:-1], axis=1)
        pts = pts[distinct]
    n = len(pts)
    if n <= 2:
        return pts.copy()
    keep = np.zeros(n, dtype=bool)
    keep[0] = keep[-1] = True
    stack = [(0, n - 1)]
    if np.array_equal(pts[0], pts[-1]):
        far = 1 + int(np.argmax(np.hypot(*(pts[1:-1] - pts[0]).T)))
        keep[far] = True
        stack = [(0, far), (far, n - 1)]
    tol = max(float(tolerance_px), 0.0)
    while stack:
        i, j = stack.pop()
        if j - i < 2:
            continue
        dist = _segment_distance(pts[i + 1 : j], pts[i], pts[j])
        k = int(np.argmax(dist))
        if dist[k] > tol:
            k += i + 1
            keep[k] = True
            stack.append((i, k))
            stack.append((k, j))
    return pts[keep]


def _segment_distance(p: FloatArray, a: FloatArray, b: FloatArray) -> FloatArray:
    """Euclidean distance from each row of ``p`` to the segment ``a``–``b``."""
    ab = b - a
    ap = p - a
    denom = float(ab @ ab)
    if denom == 0.0:
        closest = np.broadcast_to(a, p.shape)
    else:
        t = np.clip((ap @ ab) / denom, 0.0, 1.0)
        closest = a + t[:, None] * ab
    return np.asarray(np.hypot(*(p - closest).T), dtype=np.float64)
