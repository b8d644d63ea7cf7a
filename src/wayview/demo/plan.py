"""wayview.demo.plan: the demo city on paper: streets, users, sequences, map features (pure).

Everything here is deterministic for a given `(images, seed)` and does no IO, so tests can check
the plan of a 2,000-image demo without drawing a single JPEG. `wayview.demo.build` turns a plan
into JPEGs, imports them and stores the planned map features and detections.

Geometry is planned in a local frame in metres (x east, y north) around `CITY_CENTRE_LAT/LON`
(Lund, Sweden) and converted to WGS84 with an equirectangular projection, which is exact to
centimetres over the ~2 × 1.7 km the demo covers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import numpy as np

__all__ = [
    "CITY_CENTRE_LAT",
    "CITY_CENTRE_LON",
    "DEMO_TZ",
    "ORGANIZATIONS",
    "USERS",
    "Camera",
    "DemoOrganization",
    "DemoUser",
    "PlannedDetection",
    "PlannedFeature",
    "PlannedImage",
    "PlannedSequence",
    "PlannedSighting",
    "demo_feature_count",
    "demo_sequence_count",
    "local_to_lat_lon",
    "plan_demo",
    "plan_features",
    "plan_loose_detections",
]

CITY_CENTRE_LAT = 55.7047
CITY_CENTRE_LON = 13.1910
#: Capture times are local summer time in Lund (CEST).
DEMO_TZ = timezone(timedelta(hours=2))
EARTH_RADIUS_M = 6_371_008.8

#: Street grid in the local frame before rotation: north–south streets at these x, east–west
#: streets at these y (metres). Irregular spacing and a rotation make it look less synthetic.
_GRID_X_M = (-930.0, -620.0, -315.0, -10.0, 300.0, 615.0, 925.0)
_GRID_Y_M = (-640.0, -390.0, -145.0, 105.0, 360.0, 620.0)
_GRID_ROTATION_DEG = 11.0
_NODE_JITTER_M = 18.0

_FIRST_DAY_LOCAL = datetime(2024, 5, 6, 9, 0, tzinfo=DEMO_TZ)
_LAST_START_HOUR = 17
_MIN_GAP_BETWEEN_SEQUENCES_MIN = 8.0  # the importer cuts at 60 s; the brief asks >= 5 min
_MAX_GAP_BETWEEN_SEQUENCES_MIN = 45.0

_SPACING_M = (3.0, 5.0)  # mean distance between consecutive images, per sequence
_INTERVAL_S = (1.0, 2.0)  # time between consecutive images
_LANE_OFFSET_M = 2.5  # drive/walk on the right-hand side of the street centreline
_GPS_NOISE_M = 0.6
_HEADING_NOISE_DEG = 1.5
_CAMERA_HEIGHT_M = 1.8

_MAX_SEQUENCES = 26
_IMAGES_PER_SEQUENCE = 75
_PERSPECTIVE_SIZE = (1024, 768)
_PANO_SIZE = (2048, 1024)

_FEATURE_RANGE_M = (4.0, 30.0)  # a feature is "seen" by images this far away
_FEATURE_ATTEMPTS = 40


# -- people and cameras ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Camera:
    """A camera a demo user drives with."""

    make: str
    model: str
    focal_35mm: int | None
    pano: bool = False
    writes_altitude: bool = True

    @property
    def hfov_deg(self) -> float:
        """Horizontal field of view (360 for panoramas)."""
        if self.pano or self.focal_35mm is None:
            return 360.0
        return math.degrees(2 * math.atan(36.0 / (2 * self.focal_35mm)))


@dataclass(frozen=True, slots=True)
class DemoUser:
    """A demo contributor: a perspective camera and maybe a 360° one.

    `map_descriptions` users' JPEGs carry a mapillary_tools ImageDescription (as if uploaded with
    mapillary_tools); the others only standard EXIF.
    """

    username: str
    camera: Camera
    pano_camera: Camera | None = None
    map_descriptions: bool = False


@dataclass(frozen=True, slots=True)
class DemoOrganization:
    """A demo organization and the usernames of its members."""

    slug: str
    name: str
    description: str
    members: tuple[str, ...]


USERS: tuple[DemoUser, ...] = (
    DemoUser("alice", Camera("Apple", "iPhone 13", 26), map_descriptions=True),
    DemoUser("bob", Camera("GoPro", "HERO9 Black", 19)),
    DemoUser(
        "carol",
        Camera("samsung", "SM-G991B", 26),
        pano_camera=Camera("GoPro", "GoPro Max", None, pano=True),
        map_descriptions=True,
    ),
    DemoUser(
        "dave",
        Camera("Google", "Pixel 7", 24, writes_altitude=False),
        pano_camera=Camera("RICOH", "RICOH THETA Z1", None, pano=True, writes_altitude=False),
    ),
)

ORGANIZATIONS: tuple[DemoOrganization, ...] = (
    DemoOrganization(
        "lund-streets",
        "Lund Street Imagery",
        "Volunteers mapping the streets of central Lund (demo data).",
        ("alice", "bob"),
    ),
    DemoOrganization(
        "skane-road-survey",
        "Skåne Road Survey",
        "Road condition survey with 360° cameras (demo data).",
        ("bob", "carol", "dave"),
    ),
)


# -- plan objects ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlannedImage:
    """One image to generate: where, when and which way the camera looks."""

    index: int
    x_m: float
    y_m: float
    lat: float
    lon: float
    compass_deg: float
    altitude_m: float | None
    captured_at_ms: int

    @property
    def captured_at(self) -> datetime:
        """The capture time in the demo's local time zone."""
        return datetime.fromtimestamp(self.captured_at_ms / 1000, tz=UTC).astimezone(DEMO_TZ)


@dataclass(frozen=True, slots=True)
class PlannedSequence:
    """One drive along the streets: imported as one folder, so one sequence."""

    index: int
    username: str
    organization_slug: str | None
    camera: Camera
    width: int
    height: int
    map_descriptions: bool
    images: tuple[PlannedImage, ...]

    @property
    def pano(self) -> bool:
        """Whether this is a 360° sequence."""
        return self.camera.pano

    @property
    def folder_name(self) -> str:
        """The folder its JPEGs are written to."""
        return f"seq{self.index:02d}-{self.username}"


@dataclass(frozen=True, slots=True)
class PlannedSighting:
    """A detection of a planned feature in one planned image (normalised ring, y down)."""

    sequence_index: int
    image_index: int
    ring: tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class PlannedFeature:
    """A map feature next to a street and the 2–4 images that see it."""

    object_type: str
    object_value: str
    x_m: float
    y_m: float
    lat: float
    lon: float
    aligned_direction_deg: float | None
    sightings: tuple[PlannedSighting, ...]


@dataclass(frozen=True, slots=True)
class PlannedDetection:
    """A detection that belongs to no map feature (cars, people)."""

    sequence_index: int
    image_index: int
    value: str
    ring: tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class _ObjectKind:
    object_type: str
    values: tuple[str, ...]
    centre_height_m: float
    width_m: float
    height_m: float
    shape: str  # "octagon", "triangle", "triangle-down", "circle", "box"


_OBJECT_KINDS: tuple[tuple[_ObjectKind, float], ...] = (
    (_ObjectKind("trafficsign", ("regulatory--stop--g1",), 2.2, 0.75, 0.75, "octagon"), 0.07),
    (_ObjectKind("trafficsign", ("regulatory--yield--g1",), 2.2, 0.8, 0.7, "triangle-down"), 0.05),
    (
        _ObjectKind(
            "trafficsign",
            (
                "regulatory--no-entry--g1",
                "regulatory--maximum-speed-limit-30--g1",
                "regulatory--no-parking--g2",
                "regulatory--keep-right--g1",
            ),
            2.2,
            0.65,
            0.65,
            "circle",
        ),
        0.15,
    ),
    (
        _ObjectKind(
            "trafficsign",
            ("warning--pedestrians-crossing--g4", "warning--children--g2"),
            2.3,
            0.8,
            0.7,
            "triangle",
        ),
        0.09,
    ),
    (
        _ObjectKind(
            "trafficsign",
            ("information--parking--g1", "information--pedestrians-crossing--g1"),
            2.2,
            0.6,
            0.6,
            "box",
        ),
        0.09,
    ),
    (_ObjectKind("point", ("object--street-light",), 3.5, 0.4, 7.0, "box"), 0.14),
    (_ObjectKind("point", ("object--support--utility-pole",), 4.0, 0.35, 8.0, "box"), 0.08),
    (_ObjectKind("point", ("object--fire-hydrant",), 0.4, 0.4, 0.8, "box"), 0.07),
    (_ObjectKind("point", ("object--bench",), 0.45, 1.8, 0.9, "box"), 0.06),
    (_ObjectKind("point", ("object--trash-can",), 0.5, 0.5, 1.0, "box"), 0.05),
    (_ObjectKind("point", ("marking--discrete--crosswalk-zebra",), 0.0, 4.0, 0.05, "box"), 0.07),
    (
        _ObjectKind("point", ("object--traffic-light--general-upright",), 3.0, 0.4, 1.0, "box"),
        0.08,
    ),
)

_LOOSE_VALUES: tuple[tuple[str, float, float, float], ...] = (
    # value, centre height, width, height (m)
    ("object--vehicle--car", 0.75, 4.3, 1.5),
    ("object--vehicle--car", 0.75, 4.3, 1.5),
    ("human--person", 0.9, 0.6, 1.8),
    ("object--vehicle--bicycle", 0.55, 1.8, 1.1),
    ("object--vehicle--bus", 1.6, 11.0, 3.2),
)


# -- geometry --------------------------------------------------------------------------------


def local_to_lat_lon(x_m: float, y_m: float) -> tuple[float, float]:
    """WGS84 (lat, lon) of a point in the demo's local frame.

    >>> local_to_lat_lon(0.0, 0.0)
    (55.7047, 13.191)
    """
    lat = CITY_CENTRE_LAT + math.degrees(y_m / EARTH_RADIUS_M)
    lon = CITY_CENTRE_LON + math.degrees(
        x_m / (EARTH_RADIUS_M * math.cos(math.radians(CITY_CENTRE_LAT)))
    )
    return round(lat, 7), round(lon, 7)


def _compass_deg(dx: float, dy: float) -> float:
    return math.degrees(math.atan2(dx, dy)) % 360.0


def _street_network(seed: int) -> tuple[list[tuple[float, float]], dict[int, list[int]]]:
    """Intersections (local metres) and their neighbours: a rotated grid plus two avenues."""
    rng = np.random.default_rng([seed, 1])
    cols, rows = len(_GRID_X_M), len(_GRID_Y_M)
    rot = math.radians(_GRID_ROTATION_DEG)
    nodes: list[tuple[float, float]] = []
    for i in range(cols):
        for j in range(rows):
            jx, jy = rng.uniform(-_NODE_JITTER_M, _NODE_JITTER_M, size=2)
            x, y = _GRID_X_M[i] + float(jx), _GRID_Y_M[j] + float(jy)
            nodes.append(
                (x * math.cos(rot) - y * math.sin(rot), x * math.sin(rot) + y * math.cos(rot))
            )

    def node(i: int, j: int) -> int:
        return i * rows + j

    adjacency: dict[int, list[int]] = {n: [] for n in range(len(nodes))}

    def link(a: int, b: int) -> None:
        adjacency[a].append(b)
        adjacency[b].append(a)

    for i in range(cols):
        for j in range(rows):
            if i + 1 < cols:
                link(node(i, j), node(i + 1, j))
            if j + 1 < rows:
                link(node(i, j), node(i, j + 1))
    # two diagonal avenues crossing near the centre
    for k in range(min(cols, rows) - 1):
        link(node(k, k), node(k + 1, k + 1))
        link(node(cols - 1 - k, k), node(cols - 2 - k, k + 1))
    return nodes, adjacency


def _turn_deg(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> float:
    """How far the direction changes at `b` going a → b → c (0 = straight on)."""
    h1 = _compass_deg(b[0] - a[0], b[1] - a[1])
    h2 = _compass_deg(c[0] - b[0], c[1] - b[1])
    return abs((h2 - h1 + 180.0) % 360.0 - 180.0)


def _walk(
    nodes: Sequence[tuple[float, float]],
    adjacency: dict[int, list[int]],
    rng: np.random.Generator,
    length_m: float,
) -> list[tuple[float, float]]:
    """A random walk along streets (no immediate U-turns) at least `length_m` long."""
    current = int(rng.integers(len(nodes)))
    previous: int | None = None
    path = [nodes[current]]
    total = 0.0
    while total < length_m:
        options = [n for n in adjacency[current] if n != previous] or adjacency[current]
        if previous is not None:  # no hairpins where an avenue meets the grid at an acute angle
            gentle = [
                n for n in options if _turn_deg(nodes[previous], nodes[current], nodes[n]) < 120
            ]
            options = gentle or options
        nxt = options[int(rng.integers(len(options)))]
        total += math.dist(nodes[current], nodes[nxt])
        path.append(nodes[nxt])
        previous, current = current, nxt
    return path


def _sample_path(
    path: Sequence[tuple[float, float]], distances_m: Sequence[float]
) -> list[tuple[float, float, float]]:
    """(x, y, heading) at each cumulative distance along a polyline."""
    out: list[tuple[float, float, float]] = []
    seg = 0
    seg_start = 0.0
    for d in distances_m:
        while True:
            (x0, y0), (x1, y1) = path[seg], path[seg + 1]
            seg_len = math.dist((x0, y0), (x1, y1))
            if d <= seg_start + seg_len or seg + 2 >= len(path):
                break
            seg_start += seg_len
            seg += 1
        t = min(1.0, (d - seg_start) / seg_len) if seg_len > 0 else 0.0
        out.append((x0 + (x1 - x0) * t, y0 + (y1 - y0) * t, _compass_deg(x1 - x0, y1 - y0)))
    return out


# -- sequences -------------------------------------------------------------------------------


def demo_sequence_count(images: int) -> int:
    """How many sequences a demo of `images` images has (26 from 1,950 images up).

    >>> demo_sequence_count(2000), demo_sequence_count(120), demo_sequence_count(3)
    (26, 6, 1)
    """
    lower = min(6, max(1, images // 10))
    return max(lower, min(_MAX_SEQUENCES, images // _IMAGES_PER_SEQUENCE))


def _split_counts(total: int, parts: int, rng: np.random.Generator) -> list[int]:
    """`total` split into `parts` counts of varying size (±30 %), summing exactly."""
    weights = rng.uniform(0.7, 1.3, size=parts)
    raw = weights / weights.sum() * total
    counts = [int(c) for c in np.floor(raw)]
    order = np.argsort(-(raw - np.floor(raw)), kind="stable")
    for k in range(total - sum(counts)):
        counts[int(order[k % parts])] += 1
    return counts


def _assign_owners(count: int, rng: np.random.Generator) -> list[tuple[DemoUser, Camera]]:
    """Who drives each sequence with which camera; about one in nine is a panorama."""
    pano_users = [u for u in USERS if u.pano_camera is not None]
    pano_count = max(1, round(count / 9)) if count >= 3 else 0
    pano_slots = {int(round((k + 0.5) * count / max(pano_count, 1))) for k in range(pano_count)}
    owners: list[tuple[DemoUser, Camera]] = []
    perspective_seen = 0
    order: list[int] = list(range(len(USERS)))
    for k in range(count):
        if k in pano_slots:
            user = pano_users[len([o for o in owners if o[1].pano]) % len(pano_users)]
            assert user.pano_camera is not None
            owners.append((user, user.pano_camera))
            continue
        # everyone drives in turn; after the first round the order of each round is shuffled
        turn, within = divmod(perspective_seen, len(USERS))
        if within == 0:
            order = list(range(len(USERS))) if turn == 0 else list(rng.permutation(len(USERS)))
        user = USERS[int(order[within])]
        perspective_seen += 1
        owners.append((user, user.camera))
    return owners


def _assign_organizations(
    owners: Sequence[tuple[DemoUser, Camera]], rng: np.random.Generator
) -> list[str | None]:
    """About 40 % of sequences belong to an organization of their driver; each org gets ≥ 1."""
    result: list[str | None] = []
    for user, _camera in owners:
        orgs = [o.slug for o in ORGANIZATIONS if user.username in o.members]
        if orgs and rng.uniform() < 0.4:
            result.append(orgs[int(rng.integers(len(orgs)))])
        else:
            result.append(None)
    for org in ORGANIZATIONS:
        if org.slug in result:
            continue
        for k, (user, _camera) in enumerate(owners):
            if result[k] is None and user.username in org.members:
                result[k] = org.slug
                break
    return result


def plan_demo(images: int, seed: int) -> list[PlannedSequence]:
    """The demo's sequences: owners, cameras, positions, headings and capture times.

    Deterministic for `(images, seed)`. The images of all sequences add up to `images`; every
    image lies within about 2.2 × 1.8 km of `CITY_CENTRE_LAT/LON`; consecutive images are 3–5 m
    and 1–2 s apart; sequences of one user are at least `_MIN_GAP_BETWEEN_SEQUENCES_MIN` apart.

    Raises:
        ValueError: if `images` < 1.
    """
    if images < 1:
        raise ValueError("a demo needs at least one image")
    rng = np.random.default_rng([seed, 2])
    nodes, adjacency = _street_network(seed)
    count = demo_sequence_count(images)
    counts = _split_counts(images, count, rng)
    owners = _assign_owners(count, rng)
    organizations = _assign_organizations(owners, rng)
    # each user's clock: their first drive starts on a different day
    clocks: dict[str, datetime] = {
        u.username: _FIRST_DAY_LOCAL + timedelta(days=3 * k, minutes=17 * k)
        for k, u in enumerate(USERS)
    }
    sequences: list[PlannedSequence] = []
    for k in range(count):
        user, camera = owners[k]
        n = counts[k]
        spacing_m = float(rng.uniform(*_SPACING_M))
        interval_s = float(rng.uniform(*_INTERVAL_S))
        steps = rng.uniform(0.85, 1.15, size=max(n - 1, 0)) * spacing_m
        offset_m = float(rng.uniform(0, 40))
        distances = np.concatenate([[0.0], np.cumsum(steps)]) + offset_m
        path = _walk(nodes, adjacency, rng, float(distances[-1]) + 1.0)
        samples = _sample_path(path, [float(d) for d in distances])
        gaps_s = np.clip(steps / spacing_m * interval_s, _INTERVAL_S[0], _INTERVAL_S[1])
        offsets_ms = np.concatenate([[0.0], np.cumsum(gaps_s * 1000.0)])
        start = clocks[user.username]
        if start.hour >= _LAST_START_HOUR:
            next_day = start + timedelta(days=int(rng.integers(1, 12)))
            start = next_day.replace(hour=9, minute=int(rng.integers(0, 50)))
        start_ms = int(start.timestamp() * 1000) + int(rng.integers(0, 1000))
        noise = rng.normal(0.0, _GPS_NOISE_M, size=(n, 2))
        heading_noise = rng.normal(0.0, _HEADING_NOISE_DEG, size=n)
        planned: list[PlannedImage] = []
        for i, (x, y, heading) in enumerate(samples):
            rad = math.radians(heading)
            # keep to the right-hand side of the street
            px = x + _LANE_OFFSET_M * math.cos(rad) + float(noise[i, 0])
            py = y - _LANE_OFFSET_M * math.sin(rad) + float(noise[i, 1])
            lat, lon = local_to_lat_lon(px, py)
            altitude = (
                42.0 + 0.012 * py + 3.0 * math.sin(px / 230.0) if camera.writes_altitude else None
            )
            planned.append(
                PlannedImage(
                    index=i,
                    x_m=round(px, 3),
                    y_m=round(py, 3),
                    lat=lat,
                    lon=lon,
                    compass_deg=round((heading + float(heading_noise[i])) % 360.0, 2),
                    altitude_m=None if altitude is None else round(altitude, 2),
                    captured_at_ms=start_ms + int(offsets_ms[i]),
                )
            )
        end = datetime.fromtimestamp(planned[-1].captured_at_ms / 1000, tz=UTC).astimezone(DEMO_TZ)
        gap_min = float(rng.uniform(_MIN_GAP_BETWEEN_SEQUENCES_MIN, _MAX_GAP_BETWEEN_SEQUENCES_MIN))
        clocks[user.username] = end + timedelta(minutes=gap_min)
        width, height = _PANO_SIZE if camera.pano else _PERSPECTIVE_SIZE
        sequences.append(
            PlannedSequence(
                index=k,
                username=user.username,
                organization_slug=organizations[k],
                camera=camera,
                width=width,
                height=height,
                map_descriptions=user.map_descriptions,
                images=tuple(planned),
            )
        )
    return sequences


# -- map features and detections -------------------------------------------------------------


def demo_feature_count(images: int) -> int:
    """How many map features a demo of `images` images has (150 at 2,000).

    >>> demo_feature_count(2000), demo_feature_count(120)
    (150, 9)
    """
    return max(4, min(150, round(images * 0.075)))


def _shape_ring(
    shape: str, u: float, v: float, half_u: float, half_v: float
) -> tuple[tuple[float, float], ...]:
    """A polygon around (u, v), clockwise on screen (y down), clipped to the unit square."""
    if shape == "octagon":
        angles = [math.pi / 8 + k * math.pi / 4 for k in range(8)]
    elif shape == "circle":
        angles = [k * math.pi / 6 for k in range(12)]
    elif shape == "triangle":  # point up
        angles = [-math.pi / 2, math.pi / 6, 5 * math.pi / 6]
    elif shape == "triangle-down":
        angles = [-5 * math.pi / 6, -math.pi / 6, math.pi / 2]
    else:
        angles = [-3 * math.pi / 4, -math.pi / 4, math.pi / 4, 3 * math.pi / 4]
    scale = math.sqrt(2) if shape == "box" else 1.0
    points: list[tuple[float, float]] = []
    for a in angles:
        pu = min(1.0, max(0.0, u + scale * half_u * math.cos(a)))
        pv = min(1.0, max(0.0, v + scale * half_v * math.sin(a)))
        point = (round(pu, 4), round(pv, 4))
        if point not in points:
            points.append(point)
    return tuple(points)


def _project(
    sequence: PlannedSequence,
    image: PlannedImage,
    x_m: float,
    y_m: float,
    centre_height_m: float,
    width_m: float,
    height_m: float,
) -> tuple[float, float, float, float] | None:
    """Normalised (u, v, half_u, half_v) of an object seen from an image, or None if unseen."""
    dx, dy = x_m - image.x_m, y_m - image.y_m
    dist = math.hypot(dx, dy)
    if not _FEATURE_RANGE_M[0] <= dist <= _FEATURE_RANGE_M[1]:
        return None
    rel = (_compass_deg(dx, dy) - image.compass_deg + 180.0) % 360.0 - 180.0
    elevation = math.atan2(centre_height_m - _CAMERA_HEIGHT_M, dist)
    half_w = math.atan2(width_m / 2, dist)
    half_h = math.atan2(height_m / 2, dist)
    if sequence.pano:
        u = 0.5 + rel / 360.0
        return (
            u,
            0.5 - math.degrees(elevation) / 180.0,
            math.degrees(half_w) / 360.0,
            max(math.degrees(half_h) / 180.0, 0.004),
        )
    half_hfov = math.radians(sequence.camera.hfov_deg / 2)
    if abs(math.radians(rel)) > half_hfov * 0.85:
        return None
    tan_half_vfov = math.tan(half_hfov) * sequence.height / sequence.width
    u = 0.5 + math.tan(math.radians(rel)) / (2 * math.tan(half_hfov))
    v = 0.5 - math.tan(elevation) / (2 * tan_half_vfov)
    return (
        u,
        v,
        math.tan(half_w) / (2 * math.tan(half_hfov)),
        max(math.tan(half_h) / (2 * tan_half_vfov), 0.004),
    )


def plan_features(
    sequences: Sequence[PlannedSequence], seed: int, count: int | None = None
) -> list[PlannedFeature]:
    """Map features beside the planned routes, each seen by the 2–4 nearest images facing it.

    A feature is placed 8–22 m ahead of a random planned image and 5–8 m to one side of its
    path; its sightings are images 4–30 m away that have it in view (any direction for
    panoramas). `count` defaults to `demo_feature_count(total images)`.
    """
    all_images = [(s, img) for s in sequences for img in s.images]
    if not all_images:
        return []
    if count is None:
        count = demo_feature_count(len(all_images))
    rng = np.random.default_rng([seed, 3])
    xs = np.array([img.x_m for _s, img in all_images])
    ys = np.array([img.y_m for _s, img in all_images])
    kinds = [k for k, _w in _OBJECT_KINDS]
    weights = np.array([w for _k, w in _OBJECT_KINDS])
    weights = weights / weights.sum()
    features: list[PlannedFeature] = []
    placed: list[tuple[float, float]] = []
    for _ in range(count * _FEATURE_ATTEMPTS):
        if len(features) >= count:
            break
        kind = kinds[int(rng.choice(len(kinds), p=weights))]
        value = kind.values[int(rng.integers(len(kind.values)))]
        _seq, anchor = all_images[int(rng.integers(len(all_images)))]
        rad = math.radians(anchor.compass_deg)
        ahead = float(rng.uniform(8.0, 22.0))
        side = float(rng.uniform(5.0, 8.0)) * (1 if rng.uniform() < 0.7 else -1)
        fx = anchor.x_m + ahead * math.sin(rad) + side * math.cos(rad)
        fy = anchor.y_m + ahead * math.cos(rad) - side * math.sin(rad)
        wanted = int(rng.integers(2, 5))
        if any(math.dist((fx, fy), p) < 4.0 for p in placed):
            continue
        dist = np.hypot(xs - fx, ys - fy)
        sightings: list[tuple[float, PlannedSighting, PlannedImage]] = []
        for idx in np.argsort(dist, kind="stable"):
            if dist[idx] > _FEATURE_RANGE_M[1] or len(sightings) >= wanted:
                break
            seq, img = all_images[int(idx)]
            seen = _project(seq, img, fx, fy, kind.centre_height_m, kind.width_m, kind.height_m)
            if seen is None:
                continue
            ring = _shape_ring(kind.shape, *seen)
            if len(ring) < 3:  # clipped away at the image border
                continue
            sightings.append((float(dist[idx]), PlannedSighting(seq.index, img.index, ring), img))
        if len(sightings) < 2:
            continue
        aligned: float | None = None
        if kind.object_type == "trafficsign":
            nearest = sightings[0][2]
            aligned = round(_compass_deg(nearest.x_m - fx, nearest.y_m - fy), 1)
        lat, lon = local_to_lat_lon(fx, fy)
        placed.append((fx, fy))
        features.append(
            PlannedFeature(
                object_type=kind.object_type,
                object_value=value,
                x_m=round(fx, 3),
                y_m=round(fy, 3),
                lat=lat,
                lon=lon,
                aligned_direction_deg=aligned,
                sightings=tuple(s for _d, s, _i in sightings),
            )
        )
    return features


def plan_loose_detections(
    sequences: Sequence[PlannedSequence], seed: int
) -> list[PlannedDetection]:
    """Detections without a map feature (vehicles, people) in about one image in ten."""
    rng = np.random.default_rng([seed, 4])
    out: list[PlannedDetection] = []
    for seq in sequences:
        for img in seq.images:
            if rng.uniform() >= 0.1:
                continue
            value, centre_h, width_m, height_m = _LOOSE_VALUES[
                int(rng.integers(len(_LOOSE_VALUES)))
            ]
            rad = math.radians(img.compass_deg + float(rng.uniform(-25.0, 25.0)))
            dist = float(rng.uniform(8.0, 25.0))
            ox, oy = img.x_m + dist * math.sin(rad), img.y_m + dist * math.cos(rad)
            seen = _project(seq, img, ox, oy, centre_h, width_m, height_m)
            if seen is None:
                continue
            ring = _shape_ring("box", *seen)
            if len(ring) >= 3:
                out.append(PlannedDetection(seq.index, img.index, value, ring))
    return out
