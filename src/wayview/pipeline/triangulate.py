"""wayview.pipeline.triangulate: map features from detections seen by several cameras.

Each detection is a *sighting*: a ray in the ground plane from the camera position, along the
camera's heading turned by the detection centre's angle from the optical axis. Sightings of one
value (`regulatory--stop--g1`) are grouped into objects by a consensus search:

1. every pair of rays that meet in front of both cameras, within `max_range_m` and at an angle
   of at least `min_angle_deg`, proposes a point;
2. the proposal that most rays pass close to (within `max_miss_m`, measured perpendicular to
   each ray) wins, is refined by least squares over those rays (iteratively reweighted, so a
   stray ray pulls little), and takes its rays away;
3. this repeats until no two remaining rays agree.

A ray left alone is placed by the object's known physical size (`PHYSICAL_SIZE_M`): a 0.75 m
stop sign that spans 4 % of a 60° field of view stands ~18 m away. Positions are computed in a
local east/north plane in metres (equirectangular around the sightings' mean; exact to
centimetres over the few hundred metres a group spans).

`aligned_direction_deg` is the compass direction the object faces: the mean bearing from the
object to the cameras that saw it (a sign faces the traffic that reads it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from wayview.model.geo import EARTH_RADIUS_M, haversine_m
from wayview.model.geo import bearing_deg as geo_bearing_deg

__all__ = [
    "DEFAULT_SIZE_M",
    "PHYSICAL_SIZE_M",
    "Placed",
    "Sighting",
    "TriangulationSettings",
    "bearing_deg",
    "distance_m",
    "physical_size_m",
    "place_sightings",
]

#: Width in metres of objects by taxonomy value prefix (the longest matching prefix wins).
PHYSICAL_SIZE_M: dict[str, float] = {
    "regulatory--stop": 0.75,
    "regulatory--yield": 0.9,
    "regulatory--maximum-speed-limit": 0.6,
    "regulatory--no-entry": 0.6,
    "regulatory--priority-road": 0.6,
    "regulatory--": 0.6,
    "warning--": 0.9,
    "information--pedestrians-crossing": 0.6,
    "information--parking": 0.6,
    "information--": 0.6,
    "complementary--": 0.5,
    "object--traffic-light": 0.35,
    "object--street-light": 0.5,
    "object--fire-hydrant": 0.35,
    "object--bench": 1.6,
    "object--": 0.5,
}
#: Width assumed for values with no entry above.
DEFAULT_SIZE_M = 0.6


def physical_size_m(value: str) -> float:
    """The assumed width of an object of taxonomy `value`.

    >>> physical_size_m("regulatory--stop--g1"), physical_size_m("warning--curve-left--g2")
    (0.75, 0.9)
    >>> physical_size_m("marking--discrete--crosswalk-zebra")
    0.6
    """
    best = ""
    for prefix in PHYSICAL_SIZE_M:
        if value.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return PHYSICAL_SIZE_M[best] if best else DEFAULT_SIZE_M


@dataclass(frozen=True, slots=True)
class Sighting:
    """One detection as a ray: where the camera stood, where it looked, where the object was
    in its picture."""

    detection_id: int
    image_id: int
    value: str
    lon: float
    lat: float
    #: Compass heading of the optical axis (0 = north, clockwise), degrees.
    heading_deg: float
    #: Horizontal position of the detection centre in the image, 0 (left) to 1 (right).
    u: float
    #: The detection's width as a fraction of the image width.
    width_frac: float
    #: Horizontal field of view of the camera, degrees (360 for panoramas).
    hfov_deg: float
    captured_at_ms: int
    #: True for equirectangular panoramas: `u` maps linearly to the full circle.
    spherical: bool = False

    @property
    def bearing_deg(self) -> float:
        """Compass bearing of the ray from the camera through the detection centre."""
        if self.spherical:
            return (self.heading_deg + (self.u - 0.5) * 360.0) % 360.0
        half = math.radians(self.hfov_deg) / 2
        # Pinhole: x on the image plane at unit focal length is tan(angle).
        angle = math.atan((2 * self.u - 1) * math.tan(half))
        return (self.heading_deg + math.degrees(angle)) % 360.0

    def single_view_distance_m(self) -> float:
        """Distance at which an object of the value's physical width spans `width_frac`."""
        size = physical_size_m(self.value)
        if self.spherical:
            angular = math.radians(self.width_frac * 360.0)
        else:
            half = math.tan(math.radians(self.hfov_deg) / 2)
            angular = 2 * math.atan(self.width_frac * half)
        angular = max(angular, 1e-4)
        return size / (2 * math.tan(angular / 2))


@dataclass(frozen=True, slots=True)
class TriangulationSettings:
    """Tolerances of the consensus search (metres and degrees)."""

    max_range_m: float = 60.0
    max_miss_m: float = 2.0
    min_angle_deg: float = 3.0
    #: Single-view placements are clamped to this distance from the camera.
    max_single_view_m: float = 40.0
    #: Objects of one value placed closer than this are one object (their sightings join).
    merge_radius_m: float = 6.0
    #: A ray that agrees with no other joins a triangulated object of its value when it
    #: passes within this angle of it (phone compasses err by 15° and more) and the
    #: object's size in the picture puts it at a compatible distance (×0.4 to ×2.5).
    join_angle_deg: float = 20.0


@dataclass(slots=True)
class Placed:
    """One object: its position and the sightings that placed it."""

    value: str
    lon: float
    lat: float
    sightings: list[Sighting] = field(default_factory=list)
    #: Root mean square of the rays' perpendicular misses (0 for a single view), metres.
    residual_m: float = 0.0
    #: "triangulated" (two or more rays cross), "fused" (nearly parallel rays placed by
    #: their directions and sizes together) or "single-view" (one ray, known size).
    method: str = "triangulated"

    @property
    def first_seen_at_ms(self) -> int:
        """Capture time of the earliest sighting."""
        return min(s.captured_at_ms for s in self.sightings)

    @property
    def last_seen_at_ms(self) -> int:
        """Capture time of the latest sighting."""
        return max(s.captured_at_ms for s in self.sightings)

    @property
    def aligned_direction_deg(self) -> float:
        """The direction the object faces: mean bearing from it to the cameras."""
        x = y = 0.0
        for s in self.sightings:
            b = math.radians(bearing_deg(self.lon, self.lat, s.lon, s.lat))
            x += math.sin(b)
            y += math.cos(b)
        return math.degrees(math.atan2(x, y)) % 360.0


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres (arguments lon, lat: the order of this module).

    >>> round(distance_m(13.0, 55.0, 13.0, 55.001), 1)
    111.2
    """
    return haversine_m(lat1, lon1, lat2, lon2)


def bearing_deg(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Initial compass bearing from point 1 to point 2, degrees (arguments lon, lat).

    >>> round(bearing_deg(13.0, 55.0, 13.0, 55.001)), round(bearing_deg(13.0, 55.0, 13.001, 55.0))
    (0, 90)
    """
    return geo_bearing_deg(lat1, lon1, lat2, lon2)


class _Plane:
    """A local east/north plane in metres around (lon0, lat0)."""

    def __init__(self, lon0: float, lat0: float) -> None:
        self.lon0, self.lat0 = lon0, lat0
        self.kx = math.radians(1.0) * EARTH_RADIUS_M * math.cos(math.radians(lat0))
        self.ky = math.radians(1.0) * EARTH_RADIUS_M

    def to_xy(self, lon: float, lat: float) -> tuple[float, float]:
        return (lon - self.lon0) * self.kx, (lat - self.lat0) * self.ky

    def to_lonlat(self, x: float, y: float) -> tuple[float, float]:
        return self.lon0 + x / self.kx, self.lat0 + y / self.ky


def place_sightings(sightings: Iterable[Sighting],
                    settings: TriangulationSettings | None = None) -> list[Placed]:
    """Group sightings into objects per value and place each one (see the module docstring).

    Every sighting ends in exactly one object. The result is ordered by value, then by the
    number of sightings (most first).
    """
    settings = settings or TriangulationSettings()
    by_value: dict[str, list[Sighting]] = {}
    for s in sightings:
        by_value.setdefault(s.value, []).append(s)
    placed: list[Placed] = []
    for value in sorted(by_value):
        for group in _neighbourhoods(by_value[value], 2 * settings.max_range_m):
            plane = _Plane(float(np.mean([s.lon for s in group])),
                           float(np.mean([s.lat for s in group])))
            placed.extend(_merge_close(_place_value(value, group, plane, settings), plane,
                                       settings.merge_radius_m))
    return placed


def _neighbourhoods(group: list[Sighting], reach_m: float) -> list[list[Sighting]]:
    """Split sightings into sets whose cameras are linked by hops of at most `reach_m`
    (two cameras farther apart cannot both see one object within range): the consensus
    search is quadratic, so it runs per neighbourhood, not per city."""
    plane = _Plane(group[0].lon, group[0].lat)
    cells: dict[tuple[int, int], list[int]] = {}
    points = [plane.to_xy(s.lon, s.lat) for s in group]
    for k, (x, y) in enumerate(points):
        cells.setdefault((int(x // reach_m), int(y // reach_m)), []).append(k)
    parent = list(range(len(group)))

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for (cx, cy), members in cells.items():
        near = [m for dx in (-1, 0, 1) for dy in (-1, 0, 1)
                for m in cells.get((cx + dx, cy + dy), [])]
        for a in members:
            for b in near:
                if a < b and math.dist(points[a], points[b]) <= reach_m:
                    parent[root(a)] = root(b)
    sets: dict[int, list[Sighting]] = {}
    for k, s in enumerate(group):
        sets.setdefault(root(k), []).append(s)
    return list(sets.values())


def _merge_close(placed: list[Placed], plane: _Plane, radius_m: float) -> list[Placed]:
    """Join objects closer than `radius_m` (most-seen first; positions weighted by sightings,
    a triangulated position outweighing single views)."""
    out: list[Placed] = []
    for item in sorted(placed, key=lambda p: (p.method != "triangulated", -len(p.sightings))):
        xy = plane.to_xy(item.lon, item.lat)
        target = next((o for o in out
                       if math.dist(plane.to_xy(o.lon, o.lat), xy) <= radius_m), None)
        if target is None:
            out.append(item)
            continue
        if target.method == "triangulated" and item.method != "triangulated":
            target.sightings.extend(item.sightings)  # a single view does not move it
            continue
        wa, wb = len(target.sightings), len(item.sightings)
        txy = plane.to_xy(target.lon, target.lat)
        target.lon, target.lat = plane.to_lonlat((txy[0] * wa + xy[0] * wb) / (wa + wb),
                                                 (txy[1] * wa + xy[1] * wb) / (wa + wb))
        target.sightings.extend(item.sightings)
    out.sort(key=lambda p: -len(p.sightings))
    return out


#: How far a ray's distance to an object may be from its distance by size (× this range).
_MIN_SIZE_RATIO = 0.4
_MAX_SIZE_RATIO = 2.5
#: Standard errors assumed when rays are fused: the bearing (radians; 5°, what phone compasses
#: and headings from the track err by) and the distance from the object's size (a quarter).
_BEARING_SIGMA = 0.087
_SIZE_SIGMA = 0.25


def _fuse(origins: np.ndarray, directions: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The point best agreeing with every ray's direction *and* its distance from size.

    Weighted linear least squares: across each ray the miss counts with the bearing's error
    at that distance, along it the difference from the size distance counts with the size's
    error. Rays of well-separated directions pin the point by their crossing; nearly parallel
    ones (a sign straight ahead) by their sizes, never an ill-conditioned intersection.
    """
    a = np.zeros((2, 2))
    b = np.zeros(2)
    for p, d, dist in zip(origins, directions, sizes, strict=True):
        normal = np.array([d[1], -d[0]])
        w_perp = 1.0 / (_BEARING_SIGMA * dist) ** 2
        w_along = 1.0 / (_SIZE_SIGMA * dist) ** 2
        a += w_perp * np.outer(normal, normal) + w_along * np.outer(d, d)
        b += w_perp * normal * (normal @ p) + w_along * d * (d @ p + dist)
    solved: np.ndarray = np.linalg.solve(a, b)
    return solved


def _rays(group: Sequence[Sighting], plane: _Plane) -> tuple[np.ndarray, np.ndarray]:
    origins = np.array([plane.to_xy(s.lon, s.lat) for s in group], dtype=float)
    angles = np.radians([s.bearing_deg for s in group])
    directions = np.stack([np.sin(angles), np.cos(angles)], axis=1)
    return origins, directions


def _intersect(p1: np.ndarray, d1: np.ndarray, p2: np.ndarray, d2: np.ndarray
               ) -> tuple[np.ndarray, float, float] | None:
    """Where ray 1 meets ray 2: (point, t1, t2) with point = p + t·d, or None if parallel."""
    cross = d1[0] * d2[1] - d1[1] * d2[0]
    if abs(cross) < 1e-9:
        return None
    delta = p2 - p1
    t1 = (delta[0] * d2[1] - delta[1] * d2[0]) / cross
    t2 = (delta[0] * d1[1] - delta[1] * d1[0]) / cross
    return p1 + t1 * d1, float(t1), float(t2)


def _misses(point: np.ndarray, origins: np.ndarray, directions: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """Perpendicular distance of `point` from each ray, and how far along each ray it lies."""
    rel = point[None, :] - origins
    along = rel[:, 0] * directions[:, 0] + rel[:, 1] * directions[:, 1]
    perp = np.abs(rel[:, 0] * directions[:, 1] - rel[:, 1] * directions[:, 0])
    return perp, along


def _least_squares(origins: np.ndarray, directions: np.ndarray, weights: np.ndarray
                   ) -> np.ndarray | None:
    """The point closest (weighted, squared perpendicular distance) to every ray."""
    a = np.zeros((2, 2))
    b = np.zeros(2)
    for p, d, w in zip(origins, directions, weights, strict=True):
        m = np.eye(2) - np.outer(d, d)
        a += w * m
        b += w * (m @ p)
    if abs(np.linalg.det(a)) < 1e-9:
        return None
    solved: np.ndarray = np.linalg.solve(a, b)
    return solved


def _refine(point: np.ndarray, origins: np.ndarray, directions: np.ndarray,
            scale: float) -> np.ndarray:
    """Iteratively reweighted least squares (Cauchy weights at `scale` metres)."""
    for _ in range(10):
        perp, _ = _misses(point, origins, directions)
        weights = 1.0 / (1.0 + (perp / scale) ** 2)
        better = _least_squares(origins, directions, weights)
        if better is None:
            break
        moved = float(np.hypot(*(better - point)))
        point = better
        if moved < 1e-3:
            break
    return point


def _place_value(value: str, group: list[Sighting], plane: _Plane,
                 settings: TriangulationSettings) -> list[Placed]:
    origins, directions = _rays(group, plane)
    sizes = np.array([s.single_view_distance_m() for s in group])
    remaining = list(range(len(group)))
    out: list[Placed] = []
    min_sin = math.sin(math.radians(settings.min_angle_deg))

    def agree(perp: np.ndarray, along: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Rays that pass close to a point, in front of their camera, at a distance the
        object's size in their picture allows (a crossing right at a camera, or far behind
        the object, is not the object)."""
        ratio = along / sizes[idx]
        ok: np.ndarray = ((perp <= settings.max_miss_m) & (along > 0)
                          & (along <= settings.max_range_m)
                          & (ratio >= _MIN_SIZE_RATIO) & (ratio <= _MAX_SIZE_RATIO))
        return ok

    while len(remaining) >= 2:
        best: tuple[int, float, np.ndarray, list[int]] | None = None
        for i_pos, i in enumerate(remaining):
            for j in remaining[i_pos + 1:]:
                if abs(directions[i][0] * directions[j][1]
                       - directions[i][1] * directions[j][0]) < min_sin:
                    continue
                hit = _intersect(origins[i], directions[i], origins[j], directions[j])
                if hit is None:
                    continue
                point, t1, t2 = hit
                if not (0 < t1 <= settings.max_range_m and 0 < t2 <= settings.max_range_m):
                    continue
                idx = np.array(remaining)
                perp, along = _misses(point, origins[idx], directions[idx])
                ok = agree(perp, along, idx)
                inliers = [int(k) for k in idx[ok]]
                score = float(np.sum(perp[ok]))
                if best is None or len(inliers) > best[0] or \
                        (len(inliers) == best[0] and score < best[1]):
                    best = (len(inliers), score, point, inliers)
        if best is None or best[0] < 2:
            break
        _, _, point, inliers = best
        idx = np.array(inliers)
        point = _refine(point, origins[idx], directions[idx], settings.max_miss_m / 2)
        # Rays that the refined point now misses go back to the pool.
        perp, along = _misses(point, origins[idx], directions[idx])
        keep = [k for k, ok in zip(inliers, agree(perp, along, idx), strict=True) if ok]
        if len(keep) < 2:
            remaining = [k for k in remaining if k not in inliers[:2]] + inliers[:2]
            break
        lon, lat = plane.to_lonlat(float(point[0]), float(point[1]))
        kept_perp, _ = _misses(point, origins[np.array(keep)], directions[np.array(keep)])
        out.append(Placed(value, lon, lat, [group[k] for k in keep],
                          residual_m=float(np.sqrt(np.mean(kept_perp ** 2)))))
        remaining = [k for k in remaining if k not in keep]
    # Rays no pair agreed on, the most reliable first (the largest in the picture: their
    # distance from size is best). Each joins an object it points near (within
    # `join_angle_deg`, at a distance its size allows) or is placed by size; later rays may
    # then join it.
    for k in sorted(remaining, key=lambda k: -group[k].width_frac):
        s = group[k]
        near: tuple[float, Placed] | None = None
        for item in out:
            x, y = plane.to_xy(item.lon, item.lat)
            perp, along = _misses(np.array([x, y]), origins[k:k + 1], directions[k:k + 1])
            if not 0 < along[0] <= settings.max_range_m:
                continue
            angle = math.degrees(math.atan2(perp[0], along[0]))
            ratio = along[0] / sizes[k]
            if angle <= settings.join_angle_deg and \
                    _MIN_SIZE_RATIO <= ratio <= _MAX_SIZE_RATIO and \
                    (near is None or angle < near[0]):
                near = (angle, item)
        if near is not None:
            near[1].sightings.append(s)
            continue
        dist = min(s.single_view_distance_m(), settings.max_single_view_m)
        point = origins[k] + dist * directions[k]
        lon, lat = plane.to_lonlat(float(point[0]), float(point[1]))
        out.append(Placed(value, lon, lat, [s], residual_m=0.0, method="single-view"))
    index = {id(g): k for k, g in enumerate(group)}
    for item in out:
        if item.method == "single-view" and len(item.sightings) >= 2:
            ks = np.array([index[id(s)] for s in item.sightings])
            point = _fuse(origins[ks], directions[ks],
                          np.array([s.single_view_distance_m() for s in item.sightings]))
            item.lon, item.lat = plane.to_lonlat(float(point[0]), float(point[1]))
            item.method = "fused"
    out.sort(key=lambda p: -len(p.sightings))
    return out
