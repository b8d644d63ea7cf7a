"""wayview.pipeline.sfm_geometry: the geometry around structure from motion (numpy only).

pycolmap (`wayview.pipeline.sfm`) solves overlapping windows of a sequence, each in its own
arbitrary frame (rotation, translation and scale are free). This module puts them together:

1. `chain_windows`: each window is brought into the frame of the windows before it by the
   similarity that its shared images agree on (rotation from the shared cameras' orientations,
   scale from the distances between their centres, translation from their centroid). Without
   two shared images a window starts a new *segment*.
2. `upright_fit`: each segment is placed in the local ENU frame. A free 3-D similarity fit to
   GPS is ill-posed on a near-straight street (the roll about the street axis is free), so the
   "up" of the reconstruction is taken from the cameras (their mean up vector, made
   perpendicular to the track), and only a 2-D similarity (east/north) plus a height offset is
   fitted to the targets, with weights and one round of outlier rejection.

Poses follow OpenSfM and COLMAP: a world point X maps to camera coordinates R·X + t; the camera
centre is C = -Rᵀ·t.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "Similarity",
    "WindowSolution",
    "chain_windows",
    "rotation_between",
    "similarity_from_shared",
    "upright_fit",
]

FloatArray = NDArray[np.float64]

#: Shared images a window needs with the chain to join it.
MIN_SHARED = 2
#: A window joins the chain only if its shared cameras agree within this after the fit
#: (degrees of rotation, and centre error relative to the shared images' spread).
MAX_JOIN_ROTATION_DEG = 5.0
MAX_JOIN_CENTRE_RATIO = 0.25


@dataclass(slots=True)
class WindowSolution:
    """One window's reconstruction in its own frame.

    `poses`: image id → (R 3×3 world→camera, C camera centre); `cameras`: image id → refined
    `[focal, k1, k2]` (focal normalised by max(width, height)); `points` (n, 3) and `colors`
    (n, 3, 0–255); `seen`: image id → indices of the points the image observes.
    """

    poses: dict[int, tuple[FloatArray, FloatArray]]
    cameras: dict[int, tuple[float, float, float]] = field(default_factory=dict)
    points: FloatArray = field(default_factory=lambda: np.zeros((0, 3)))
    colors: NDArray[np.uint8] = field(default_factory=lambda: np.zeros((0, 3), np.uint8))
    seen: dict[int, NDArray[np.int64]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Similarity:
    """X' = scale · rotation · X + translation."""

    scale: float
    rotation: FloatArray
    translation: FloatArray

    @staticmethod
    def identity() -> Similarity:
        return Similarity(1.0, np.eye(3), np.zeros(3))

    def apply(self, points: FloatArray) -> FloatArray:
        """Transform points of shape (..., 3)."""
        return np.asarray(self.scale * points @ self.rotation.T + self.translation, np.float64)

    def pose(self, rotation: FloatArray, centre: FloatArray) -> tuple[FloatArray, FloatArray]:
        """A camera pose (R world→camera, C) moved into the new frame."""
        return rotation @ self.rotation.T, self.apply(centre)

    def then(self, other: Similarity) -> Similarity:
        """This similarity followed by `other`."""
        return Similarity(other.scale * self.scale, other.rotation @ self.rotation,
                          other.apply(self.translation))


def _project_rotation(matrix: FloatArray) -> FloatArray:
    """The rotation nearest to a 3×3 matrix (SVD, determinant +1)."""
    u, _, vt = np.linalg.svd(matrix)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    return np.asarray(u @ np.diag([1.0, 1.0, d]) @ vt, np.float64)


def rotation_between(a: FloatArray, b: FloatArray) -> FloatArray:
    """The smallest rotation taking unit vector `a` to unit vector `b`.

    >>> np.round(rotation_between(np.array([1.0, 0, 0]), np.array([0, 1.0, 0])) @ [1, 0, 0], 6)
    array([0., 1., 0.])
    """
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    v = np.cross(a, b)
    c = float(np.dot(a, b))
    if c < -1 + 1e-12:  # opposite: half a turn about any perpendicular axis
        axis = np.cross(a, [1.0, 0.0, 0.0])
        if np.linalg.norm(axis) < 1e-6:
            axis = np.cross(a, [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return np.asarray(2 * np.outer(axis, axis) - np.eye(3), np.float64)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.asarray(np.eye(3) + vx + vx @ vx / (1 + c), np.float64)


def _angle_deg(rotation: FloatArray) -> float:
    cos = (float(np.trace(rotation)) - 1) / 2
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def similarity_from_shared(
    target: Mapping[int, tuple[FloatArray, FloatArray]],
    source: Mapping[int, tuple[FloatArray, FloatArray]],
) -> Similarity | None:
    """The similarity taking `source`'s frame to `target`'s, from the images both posed.

    Rotation: the chordal mean of Rₜᵢᵀ·Rₛᵢ over the shared images (well-posed even when their
    centres lie on a line); scale: median ratio of centre distances; translation: centroids.
    None when fewer than `MIN_SHARED` images are shared, their centres coincide, or they
    disagree (rotation spread over `MAX_JOIN_ROTATION_DEG`, centre error over
    `MAX_JOIN_CENTRE_RATIO` of their spread).
    """
    shared = sorted(set(target) & set(source))
    if len(shared) < MIN_SHARED:
        return None
    rotations = [target[i][0].T @ source[i][0] for i in shared]
    rotation = _project_rotation(np.sum(rotations, axis=0))
    if max(_angle_deg(rotation.T @ r) for r in rotations) > MAX_JOIN_ROTATION_DEG:
        return None
    ct = np.array([target[i][1] for i in shared])
    cs = np.array([source[i][1] for i in shared])
    ratios = []
    for a in range(len(shared)):
        for b in range(a + 1, len(shared)):
            ds = float(np.linalg.norm(cs[a] - cs[b]))
            dt = float(np.linalg.norm(ct[a] - ct[b]))
            if ds > 1e-9 and dt > 1e-9:
                ratios.append(dt / ds)
    if not ratios:
        return None
    scale = float(np.median(ratios))
    translation = ct.mean(axis=0) - scale * rotation @ cs.mean(axis=0)
    fitted = Similarity(scale, rotation, translation)
    spread = float(np.max(np.linalg.norm(ct - ct.mean(axis=0), axis=1)))
    error = float(np.max(np.linalg.norm(fitted.apply(cs) - ct, axis=1)))
    if spread <= 0 or error > MAX_JOIN_CENTRE_RATIO * spread:
        return None
    return fitted


@dataclass(slots=True)
class Segment:
    """Windows chained into one frame: image poses, and each window's similarity into it."""

    poses: dict[int, tuple[FloatArray, FloatArray]] = field(default_factory=dict)
    #: (window index, similarity window → segment frame)
    windows: list[tuple[int, Similarity]] = field(default_factory=list)
    #: image id → the window whose pose it keeps (the first that registered it)
    owner: dict[int, int] = field(default_factory=dict)


def chain_windows(windows: Sequence[WindowSolution | None]) -> list[Segment]:
    """Chain consecutive windows (None = a window that failed) into segments.

    >>> r = np.eye(3)
    >>> w1 = WindowSolution({1: (r, np.zeros(3)), 2: (r, np.array([1.0, 0, 0]))})
    >>> w2 = WindowSolution({2: (r, np.zeros(3)), 3: (r, np.array([2.0, 0, 0]))})
    >>> w2.poses[1] = (r, np.array([-2.0, 0, 0]))
    >>> [sorted(s.poses) for s in chain_windows([w1, w2])]
    [[1, 2, 3]]
    >>> chain_windows([w1, w2])[0].poses[3][1].tolist()
    [2.0, 0.0, 0.0]
    """
    segments: list[Segment] = []
    current: Segment | None = None
    for index, window in enumerate(windows):
        if window is None or not window.poses:
            continue
        joined = similarity_from_shared(current.poses, window.poses) if current else None
        if current is None or joined is None:
            current = Segment()
            segments.append(current)
            joined = Similarity.identity()
        current.windows.append((index, joined))
        for image_id, (rotation, centre) in window.poses.items():
            if image_id not in current.poses:
                current.poses[image_id] = joined.pose(rotation, centre)
                current.owner[image_id] = index
    return segments


def upright_fit(
    poses: Mapping[int, tuple[FloatArray, FloatArray]],
    targets: Mapping[int, tuple[float, float, float | None]],
    *,
    up_in_camera: Mapping[int, FloatArray] | None = None,
    weights: Mapping[int, float] | None = None,
    reject_m: float = 20.0,
) -> tuple[Similarity, dict[int, float]] | None:
    """The similarity placing a segment in ENU, and each target image's horizontal residual.

    Args:
        poses: image id → (R, C) in the segment frame.
        targets: image id → (east, north, up or None) to fit to (GPS, or an already placed
            neighbour's computed position).
        up_in_camera: image id → the image's "up" direction in its camera frame (default
            (0, -1, 0): y points down in the stored pixel grid; EXIF-rotated images differ).
        weights: image id → weight of its target (default 1).
        reject_m: targets further than this (or than 3 × the median residual, when larger)
            from the fit are left out of the next one, until the kept set is stable.

    Returns None when fewer than two targets are posed or they span less than 1 m.
    """
    ids = [i for i in poses if i in targets]
    if len(ids) < 2:
        return None
    centres = np.array([poses[i][1] for i in ids])
    goal = np.array([targets[i][:2] for i in ids], np.float64)
    if float(np.max(np.linalg.norm(goal - goal.mean(axis=0), axis=1))) < 0.5:
        return None
    # The reconstruction's up: mean of the cameras' up vectors, perpendicular to the track.
    ups = []
    for i in poses:
        local = up_in_camera.get(i) if up_in_camera else None
        local = np.array([0.0, -1.0, 0.0]) if local is None else local
        ups.append(poses[i][0].T @ local)
    up = np.mean(ups, axis=0)
    spread = centres - centres.mean(axis=0)
    direction = np.linalg.svd(spread, full_matrices=False)[2][0]
    up = up - float(np.dot(up, direction)) * direction
    if np.linalg.norm(up) < 1e-9:
        return None
    level = rotation_between(up / np.linalg.norm(up), np.array([0.0, 0.0, 1.0]))
    levelled = centres @ level.T
    weight = np.array([(weights or {}).get(i, 1.0) for i in ids], np.float64)
    keep = np.ones(len(ids), bool)
    fit: tuple[float, FloatArray, FloatArray] | None = None
    for _ in range(10):  # refit without the targets far off the fit, until that is stable
        fit = _umeyama_2d(levelled[keep, :2], goal[keep], weight[keep])
        if fit is None:
            return None
        scale, rot2, shift = fit
        placed = scale * levelled[:, :2] @ rot2.T + shift
        residual = np.linalg.norm(placed - goal, axis=1)
        threshold = max(reject_m, 3.0 * float(np.median(residual[keep])))
        new_keep = residual <= threshold
        if new_keep.sum() < 2 or np.array_equal(new_keep, keep):
            break
        keep = new_keep
    assert fit is not None
    scale, rot2, shift = fit
    rotation = np.eye(3)
    rotation[:2, :2] = rot2
    heights = [(targets[i][2] - scale * levelled[n, 2], weight[n])
               for n, i in enumerate(ids) if targets[i][2] is not None and keep[n]]
    offset = _weighted_median(heights) if heights else 0.0
    similarity = Similarity(scale, rotation @ level, np.array([shift[0], shift[1], offset]))
    placed = similarity.apply(centres)
    residuals = {i: float(np.linalg.norm(placed[n, :2] - goal[n])) for n, i in enumerate(ids)}
    return similarity, residuals


def _umeyama_2d(source: FloatArray, target: FloatArray, weight: FloatArray
                ) -> tuple[float, FloatArray, FloatArray] | None:
    """Weighted least-squares 2-D similarity (scale, rotation, translation) source → target."""
    total = float(weight.sum())
    if total <= 0 or len(source) < 2:
        return None
    w = weight / total
    mu_s = w @ source
    mu_t = w @ target
    s = source - mu_s
    t = target - mu_t
    variance = float(w @ np.sum(s * s, axis=1))
    if variance <= 1e-12:
        return None
    covariance = (t * w[:, None]).T @ s
    u, d, vt = np.linalg.svd(covariance)
    sign = np.diag([1.0, 1.0 if np.linalg.det(u @ vt) > 0 else -1.0])
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(d) @ sign)) / variance
    if not math.isfinite(scale) or scale <= 0:
        return None
    return scale, rotation, mu_t - scale * rotation @ mu_s


def _weighted_median(values: Sequence[tuple[float, float]]) -> float:
    ordered = sorted(values)
    half = sum(w for _, w in ordered) / 2
    running = 0.0
    for value, w in ordered:
        running += w
        if running >= half:
            return float(value)
    return float(ordered[-1][0])
