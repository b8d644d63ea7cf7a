"""wayview.pipeline.positions: computed positions and rotations from the GPS track (§3.2, §6.2).

Real structure-from-motion is not run. `TrackPositioner` derives the "computed" fields of every
image of a sequence from its GPS track alone, behind the `Positioner` protocol so that a real SfM
backend can replace it later:

1. positions are projected into a local topocentric ENU frame (x east, y north, z up) around the
   median fix — the frame of OpenSfM's `reference_lla`;
2. fixes that jump away from their time-neighbours are replaced by interpolation in time;
3. a light robust smoother (local linear fit in time, Huber weights, displacement capped)
   removes jitter;
4. the heading comes from the compass or, when that is missing or implausible, from the
   direction of travel;
5. rotations (OpenSfM angle-axis), translations (t = -R·C), camera parameters from EXIF, and
   `merge_cc` groups of sequences that come close to each other.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "DEFAULT_FOCAL",
    "MAX_COMPASS_DEVIATION_DEG",
    "STATIONARY_STEP_M",
    "ComputedShot",
    "Positioner",
    "Reconstruction",
    "ShotInput",
    "TrackPositioner",
    "angle_axis_to_matrix",
    "camera_parameters_from_exif",
    "enu_to_lla",
    "heading_from_rotation",
    "lla_to_enu",
    "matrix_to_angle_axis",
    "merge_components",
    "orientation_matrix",
    "rotation_from_heading",
]

FloatArray = NDArray[np.float64]

#: WGS84 ellipsoid: semi-major axis (m) and flattening.
WGS84_A_M = 6_378_137.0
WGS84_F = 1 / 298.257223563
_E2 = WGS84_F * (2 - WGS84_F)  # first eccentricity squared
_B_M = WGS84_A_M * (1 - WGS84_F)  # semi-minor axis
_EP2 = _E2 / (1 - _E2)  # second eccentricity squared
#: Mean Earth radius (IUGG) for the sphere used by `merge_components`.
_EARTH_RADIUS_M = 6_371_008.8

#: Normalised focal length MapillaryJS (and OpenSfM) assume when nothing is known.
DEFAULT_FOCAL = 0.85
#: Long side of a full-frame sensor, in mm: focal_35mm / 36 is the focal normalised by max(W, H)
#: (OpenSfM `exif.py` does the same).
FULL_FRAME_LONG_SIDE_MM = 36.0
#: Camera types without a focal length (`camera_parameters` is omitted for them).
SPHERICAL_CAMERA_TYPES = frozenset({"spherical", "equirectangular"})

#: Average step (m per image) below which the camera counts as stationary.
STATIONARY_STEP_M = 0.5
#: A moving perspective camera's compass is replaced by the track heading (plus mount offset)
#: when it differs from it by more than this.
MAX_COMPASS_DEVIATION_DEG = 30.0
#: A mount offset estimated within this of a multiple of 90° is snapped to it (forward, side and
#: rear cameras; a small consistent offset is compass bias, not mounting).
MOUNT_SNAP_DEG = 30.0
#: Minimum circular consistency (mean resultant length, 0–1) of compass-minus-track differences
#: for them to define a mount offset; below it the compass is noise and the offset is 0.
MOUNT_MIN_CONSISTENCY = 0.5
#: Fewest moving shots with a compass needed to estimate a mount offset.
MOUNT_MIN_SHOTS = 3

#: Time-neighbours on each side used to predict a fix when looking for outliers.
OUTLIER_HALF_WINDOW = 3
#: A fix is an outlier when it lies further than max(this, OUTLIER_STEP_FACTOR × local median
#: step) from the robust (Theil–Sen) line through its time-neighbours ...
OUTLIER_MIN_M = 15.0
OUTLIER_STEP_FACTOR = 3.0
#: ... or when reaching that distance from the line needs more than this speed (and it is more
#: than OUTLIER_SPEED_MIN_M).
OUTLIER_MAX_SPEED_M_S = 70.0
OUTLIER_SPEED_MIN_M = 5.0
#: Fewest fixes for outlier detection (with fewer, nobody can tell which fix is wrong).
OUTLIER_MIN_POINTS = 5

#: Fixes on each side of the local linear smoothing fit.
SMOOTHING_HALF_WINDOW = 2
#: The smoother never moves a fix further than this (keeps corners sharp).
SMOOTHING_MAX_SHIFT_M = 3.0
#: Huber tuning constant, and the floor of the residual scale (m) it is applied to.
_HUBER_K = 1.345
_SMOOTHING_SCALE_FLOOR_M = 0.5

#: Largest safe integer of JavaScript (merge_cc travels as a JSON number).
_MAX_SAFE_INTEGER = 2**53 - 1

#: EXIF orientation → (rotation of the stored pixel grid about the optical axis, as the rows of
#: the stored camera axes in the upright camera frame). Mirrored codes use their counterpart.
_ORIENTATION_ALIAS = {1: 1, 2: 1, 3: 3, 4: 3, 5: 8, 6: 6, 7: 6, 8: 8}
_ORIENTATION_MATRICES: dict[int, FloatArray] = {
    1: np.eye(3),
    3: np.array([[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]]),
    6: np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
    8: np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
}


@dataclass(frozen=True, slots=True)
class ShotInput:
    """One image of a sequence as uploaded: its GPS fix, compass and camera."""

    image_id: int
    captured_at_ms: int
    lon: float
    lat: float
    altitude_m: float | None
    compass_angle_deg: float | None
    camera_type: str
    width: int
    height: int
    exif_orientation: int
    focal_mm: float | None = None
    focal_35mm: float | None = None
    make: str | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class ComputedShot:
    """The computed fields of one image (§3.2) and its pose in the reconstruction (§6.2).

    `rotation` and `translation` follow OpenSfM: a world point X (local ENU metres around the
    reconstruction's `reference_lla`) maps to camera coordinates R·X + t, with R the rotation
    matrix of the angle-axis vector `rotation`; the camera centre is C = -Rᵀ·t.
    """

    image_id: int
    lon: float
    lat: float
    altitude_m: float | None
    compass_angle_deg: float
    rotation: tuple[float, float, float]
    camera_parameters: tuple[float, float, float] | None
    atomic_scale: float
    translation: tuple[float, float, float]
    camera_id: str = ""


@dataclass(frozen=True, slots=True)
class Reconstruction:
    """A set of posed shots in one local frame: what an `sfm_cluster` element describes (§6.2)."""

    reference_lla: tuple[float, float, float]  # (latitude, longitude, altitude)
    shots: list[ComputedShot]
    cameras: dict[str, dict[str, object]] = field(default_factory=dict)

    def to_opensfm(self) -> dict[str, object]:
        """The reconstruction as one element of the `sfm_cluster` JSON array (§6.2), no points.

        >>> Reconstruction((52.0, 13.0, 0.0), []).to_opensfm()["reference_lla"]
        {'latitude': 52.0, 'longitude': 13.0, 'altitude': 0.0}
        """
        lat, lon, alt = self.reference_lla
        return {
            "cameras": {key: dict(value) for key, value in self.cameras.items()},
            "shots": {
                str(shot.image_id): {
                    "camera": shot.camera_id,
                    "rotation": list(shot.rotation),
                    "translation": list(shot.translation),
                }
                for shot in self.shots
            },
            "points": {},
            "reference_lla": {"latitude": lat, "longitude": lon, "altitude": alt},
        }


class Positioner(Protocol):
    """Computes the poses of one sequence's images (GPS smoothing today, SfM later)."""

    def solve(self, sequence: Sequence[ShotInput]) -> Reconstruction:
        """Pose every image of `sequence` (any order; at least one image).

        Called by the processing pipeline once per sequence after ingest; its result fills
        computed_geometry/altitude/compass_angle/rotation, camera_parameters, atomic_scale and
        the sfm_cluster blob. Returns one shot per input image, in the input order.
        """
        ...


# --------------------------------------------------------------------------- geodesy


def _lla_to_ecef(lat_deg: FloatArray, lon_deg: FloatArray, alt_m: FloatArray) -> FloatArray:
    phi = np.radians(lat_deg)
    lam = np.radians(lon_deg)
    sin_phi = np.sin(phi)
    n = WGS84_A_M / np.sqrt(1.0 - _E2 * sin_phi * sin_phi)
    x = (n + alt_m) * np.cos(phi) * np.cos(lam)
    y = (n + alt_m) * np.cos(phi) * np.sin(lam)
    z = (n * (1.0 - _E2) + alt_m) * sin_phi
    return np.stack([x, y, z], axis=-1)


def _ecef_to_lla(ecef: FloatArray) -> FloatArray:
    x, y, z = ecef[..., 0], ecef[..., 1], ecef[..., 2]
    lam = np.arctan2(y, x)
    p = np.hypot(x, y)
    # Bowring's initial value, then two fixed-point refinements: sub-micrometre near the surface.
    theta = np.arctan2(z * WGS84_A_M, p * _B_M)
    phi = np.arctan2(z + _EP2 * _B_M * np.sin(theta) ** 3, p - _E2 * WGS84_A_M * np.cos(theta) ** 3)
    for _ in range(2):
        sin_phi = np.sin(phi)
        n = WGS84_A_M / np.sqrt(1.0 - _E2 * sin_phi * sin_phi)
        h = p * np.cos(phi) + z * sin_phi - WGS84_A_M * WGS84_A_M / n
        phi = np.arctan2(z, p * (1.0 - _E2 * n / (n + h)))
    sin_phi = np.sin(phi)
    n = WGS84_A_M / np.sqrt(1.0 - _E2 * sin_phi * sin_phi)
    h = p * np.cos(phi) + z * sin_phi - WGS84_A_M * WGS84_A_M / n
    return np.stack([np.degrees(phi), np.degrees(lam), h], axis=-1)


def _enu_basis(lat_deg: float, lon_deg: float) -> FloatArray:
    """Rows: the east, north and up unit vectors at (lat, lon), in ECEF."""
    phi, lam = math.radians(lat_deg), math.radians(lon_deg)
    sp, cp, sl, cl = math.sin(phi), math.cos(phi), math.sin(lam), math.cos(lam)
    return np.array([[-sl, cl, 0.0], [-sp * cl, -sp * sl, cp], [cp * cl, cp * sl, sp]])


def lla_to_enu(
    lat_deg: ArrayLike,
    lon_deg: ArrayLike,
    alt_m: ArrayLike,
    reference_lla: tuple[float, float, float],
) -> FloatArray:
    """WGS84 positions in the topocentric East-North-Up frame at `reference_lla` (metres).

    Exact (through ECEF), so round trips with `enu_to_lla` are sub-millimetre at any distance.

    Args:
        lat_deg, lon_deg, alt_m: scalars or arrays (broadcast together); altitude above the
            ellipsoid.
        reference_lla: (latitude, longitude, altitude) of the frame origin.

    Returns:
        Array of shape (..., 3): east, north, up.

    >>> [round(float(v), 3) + 0.0 for v in lla_to_enu(52.0, 13.0, 10.0, (52.0, 13.0, 0.0))]
    [0.0, 0.0, 10.0]
    >>> round(float(lla_to_enu(52.001, 13.0, 0.0, (52.0, 13.0, 0.0))[1]), 2)
    111.27
    """
    lat, lon, alt = np.broadcast_arrays(
        np.asarray(lat_deg, dtype=np.float64),
        np.asarray(lon_deg, dtype=np.float64),
        np.asarray(alt_m, dtype=np.float64),
    )
    ref_lat, ref_lon, ref_alt = reference_lla
    origin = _lla_to_ecef(np.array(ref_lat), np.array(ref_lon), np.array(ref_alt))
    delta = _lla_to_ecef(lat, lon, alt) - origin
    enu: FloatArray = delta @ _enu_basis(ref_lat, ref_lon).T
    return enu


def enu_to_lla(enu_m: ArrayLike, reference_lla: tuple[float, float, float]) -> FloatArray:
    """Inverse of `lla_to_enu`: ENU metres at `reference_lla` to (lat, lon, alt).

    Args:
        enu_m: array of shape (..., 3): east, north, up.
        reference_lla: (latitude, longitude, altitude) of the frame origin.

    Returns:
        Array of shape (..., 3): latitude (deg), longitude (deg), altitude (m, ellipsoidal).

    >>> lat, lon, alt = enu_to_lla([0.0, 0.0, 5.0], (52.0, 13.0, 100.0))
    >>> round(float(lat), 9), round(float(lon), 9), round(float(alt), 6)
    (52.0, 13.0, 105.0)
    """
    enu = np.asarray(enu_m, dtype=np.float64)
    ref_lat, ref_lon, ref_alt = reference_lla
    origin = _lla_to_ecef(np.array(ref_lat), np.array(ref_lon), np.array(ref_alt))
    ecef = enu @ _enu_basis(ref_lat, ref_lon) + origin
    return _ecef_to_lla(ecef)


# --------------------------------------------------------------------------- rotations


def angle_axis_to_matrix(rotation: ArrayLike) -> FloatArray:
    """The 3×3 rotation matrix of an angle-axis (Rodrigues) vector.

    Uses the Taylor series of sin(θ)/θ and (1 - cos θ)/θ² for tiny angles, so it is exact to
    rounding at θ → 0; any θ (also ≥ π) is accepted.

    >>> angle_axis_to_matrix([0.0, 0.0, 0.0]).tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """
    r = np.asarray(rotation, dtype=np.float64).reshape(3)
    theta2 = float(r @ r)
    if theta2 < 1e-8:  # θ < 1e-4: series to the θ⁴ term, error below 1e-17
        a = 1.0 - theta2 / 6.0 + theta2 * theta2 / 120.0
        b = 0.5 - theta2 / 24.0 + theta2 * theta2 / 720.0
    else:
        theta = math.sqrt(theta2)
        a = math.sin(theta) / theta
        b = (1.0 - math.cos(theta)) / theta2
    k = np.array([[0.0, -r[2], r[1]], [r[2], 0.0, -r[0]], [-r[1], r[0], 0.0]])
    matrix: FloatArray = np.eye(3) + a * k + b * (k @ k)
    return matrix


def matrix_to_angle_axis(matrix: ArrayLike) -> tuple[float, float, float]:
    """The angle-axis vector (angle in [0, π], radians) of a rotation matrix.

    Goes through a unit quaternion (Shepperd's method: the largest diagonal term picks the
    formula) and angle = 2·atan2(|v|, w), which stays accurate near 0 and near π, where the
    textbook arccos((trace - 1) / 2) formula loses half the digits. A slightly non-orthogonal
    input is tolerated; the nearest rotation's vector is returned approximately.

    >>> matrix_to_angle_axis([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    (0.0, 0.0, 0.0)
    """
    m = np.asarray(matrix, dtype=np.float64).reshape(3, 3)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    candidates = (trace, m[0, 0], m[1, 1], m[2, 2])
    best = int(np.argmax(candidates))
    if best == 0:
        s = 2.0 * math.sqrt(max(1.0 + trace, 0.0))
        w = 0.25 * s
        x = (m[2, 1] - m[1, 2]) / s
        y = (m[0, 2] - m[2, 0]) / s
        z = (m[1, 0] - m[0, 1]) / s
    elif best == 1:
        s = 2.0 * math.sqrt(max(1.0 + m[0, 0] - m[1, 1] - m[2, 2], 0.0))
        w = (m[2, 1] - m[1, 2]) / s
        x = 0.25 * s
        y = (m[0, 1] + m[1, 0]) / s
        z = (m[0, 2] + m[2, 0]) / s
    elif best == 2:
        s = 2.0 * math.sqrt(max(1.0 + m[1, 1] - m[0, 0] - m[2, 2], 0.0))
        w = (m[0, 2] - m[2, 0]) / s
        x = (m[0, 1] + m[1, 0]) / s
        y = 0.25 * s
        z = (m[1, 2] + m[2, 1]) / s
    else:
        s = 2.0 * math.sqrt(max(1.0 + m[2, 2] - m[0, 0] - m[1, 1], 0.0))
        w = (m[1, 0] - m[0, 1]) / s
        x = (m[0, 2] + m[2, 0]) / s
        y = (m[1, 2] + m[2, 1]) / s
        z = 0.25 * s
    if w < 0.0:  # q and -q are the same rotation; w ≥ 0 gives the angle in [0, π]
        w, x, y, z = -w, -x, -y, -z
    v_norm = math.sqrt(x * x + y * y + z * z)
    if v_norm < 1e-12:
        # angle ≈ 2·|v|/w: first order is exact to rounding here
        scale = 2.0 / w if w > 0.0 else 0.0
    else:
        scale = 2.0 * math.atan2(v_norm, w) / v_norm
    return (float(x * scale) + 0.0, float(y * scale) + 0.0, float(z * scale) + 0.0)


def _level_rotation(heading_deg: float) -> FloatArray:
    """World (ENU) → upright camera frame for a level camera looking along `heading_deg`."""
    h = math.radians(heading_deg)
    sin_h, cos_h = math.sin(h), math.cos(h)
    return np.array(
        [
            [cos_h, -sin_h, 0.0],  # right
            [0.0, 0.0, -1.0],  # down
            [sin_h, cos_h, 0.0],  # forward
        ]
    )


def orientation_matrix(exif_orientation: int) -> FloatArray:
    """The stored camera axes in the upright camera frame (rows) for an EXIF orientation
    (mirrored codes use their counterpart; unknown codes are upright)."""
    return _ORIENTATION_MATRICES[_ORIENTATION_ALIAS.get(exif_orientation, 1)]


def _rotation_matrix(heading_deg: float, exif_orientation: int) -> FloatArray:
    matrix: FloatArray = orientation_matrix(exif_orientation) @ _level_rotation(heading_deg)
    return matrix


def rotation_from_heading(
    heading_deg: float, exif_orientation: int = 1
) -> tuple[float, float, float]:
    """OpenSfM shot rotation (angle-axis) of a level camera looking along `heading_deg`.

    World frame: local ENU (x east, y north, z up). Camera frame (OpenSfM): x right, y down,
    z forward *in the stored pixel grid*. For an upright image (orientation 1) with heading h
    (degrees clockwise from north) R has the rows right = (cos h, -sin h, 0),
    down = (0, 0, -1) and forward = (sin h, cos h, 0).

    EXIF orientation: the stored grid is rotated about the optical axis relative to the upright
    view, so R = O·R_upright, where O expresses the stored axes in the upright frame:
    3 (rotated 180°): x = -right, y = -down; 6 (display needs 90° clockwise): x = down,
    y = -right; 8 (display needs 90° counter-clockwise): x = -down, y = right. The mirrored codes
    2, 4, 5, 7 are treated as their unmirrored counterparts 1, 3, 8, 6 (a rotation cannot mirror);
    unknown codes as 1. This equals MapillaryJS's `GraphCalculator.rotationFromCompass` for
    1, 3, 6, 8 (which, for 2/4/5/7, falls back to a camera looking straight down).

    >>> round(heading_from_rotation(rotation_from_heading(123.0, 6)), 9)
    123.0
    """
    return matrix_to_angle_axis(_rotation_matrix(heading_deg, exif_orientation))


def heading_from_rotation(rotation: ArrayLike) -> float:
    """The compass heading (degrees clockwise from north, in [0, 360)) of a shot rotation.

    The heading of the optical axis projected on the horizontal plane; it does not depend on the
    EXIF orientation. For a camera looking straight up or down, the heading of the image's
    "up" (-y) axis instead.
    """
    m = angle_axis_to_matrix(rotation)
    east, north = float(m[2, 0]), float(m[2, 1])
    if math.hypot(east, north) < 1e-9:
        east, north = -float(m[1, 0]), -float(m[1, 1])
    return _wrap_360(math.degrees(math.atan2(east, north)))


def _wrap_360(angle_deg: float) -> float:
    wrapped = angle_deg % 360.0
    return 0.0 if wrapped >= 360.0 else wrapped + 0.0


def _wrap_180(angle_deg: FloatArray) -> FloatArray:
    wrapped: FloatArray = (angle_deg + 180.0) % 360.0 - 180.0
    return wrapped


# --------------------------------------------------------------------------- camera


def camera_parameters_from_exif(
    camera_type: str, focal_35mm: float | None, focal_mm: float | None = None
) -> tuple[float, float, float] | None:
    """`camera_parameters` [focal, k1, k2] (focal normalised by max(width, height)).

    focal = focal_35mm / 36 when the 35-mm-equivalent focal length is known (36 mm is the long
    side of a full-frame sensor; OpenSfM does the same), else DEFAULT_FOCAL (0.85, MapillaryJS's
    assumption). A physical focal length (`focal_mm`) alone does not help without the sensor
    size and is ignored. k1 = k2 = 0 (no calibration). None for spherical cameras.

    >>> camera_parameters_from_exif("perspective", 27.0)
    (0.75, 0.0, 0.0)
    >>> camera_parameters_from_exif("perspective", None)
    (0.85, 0.0, 0.0)
    >>> camera_parameters_from_exif("spherical", 27.0) is None
    True
    """
    del focal_mm  # reserved for a sensor-size database
    if camera_type in SPHERICAL_CAMERA_TYPES:
        return None
    focal = DEFAULT_FOCAL
    if focal_35mm is not None and math.isfinite(focal_35mm):
        ratio = focal_35mm / FULL_FRAME_LONG_SIDE_MM
        if 0.1 <= ratio <= 20.0:  # 3.6–720 mm equivalent; anything else is a broken tag
            focal = ratio
    return (focal, 0.0, 0.0)


def _projection_type(camera_type: str) -> str:
    if camera_type in SPHERICAL_CAMERA_TYPES:
        return "spherical"
    if camera_type == "fisheye":
        return "fisheye"
    return "perspective"


def _camera(shot: ShotInput) -> tuple[str, dict[str, object], tuple[float, float, float] | None]:
    projection = _projection_type(shot.camera_type)
    params = camera_parameters_from_exif(shot.camera_type, shot.focal_35mm, shot.focal_mm)
    make = " ".join((shot.make or "unknown").split()).lower()
    model = " ".join((shot.model or "unknown").split()).lower()
    camera_id = f"v2 {make} {model} {shot.width} {shot.height} {projection}"
    camera: dict[str, object] = {
        "projection_type": projection,
        "width": shot.width,
        "height": shot.height,
    }
    if params is not None:
        camera_id += f" {params[0]:.4f}"
        camera.update({"focal": params[0], "k1": params[1], "k2": params[2]})
    return camera_id, camera, params


# --------------------------------------------------------------------------- track filtering


def _spread_ties(t_s: FloatArray) -> FloatArray:
    """Sorted times with runs of equal values spread evenly towards the next distinct time.

    Cameras often store whole seconds only, so several photos share a timestamp; the filters
    need a strictly increasing time. A final run uses the spacing of the run before it (1 s per
    photo when every time is equal).

    >>> _spread_ties(np.array([0.0, 0.0, 0.0, 1.0, 1.0, 3.0])).tolist()
    [0.0, 0.3333333333333333, 0.6666666666666666, 1.0, 2.0, 3.0]
    """
    n = t_s.shape[0]
    if n < 2 or bool(np.all(np.diff(t_s) > 0)):
        return t_s
    out = t_s.copy()
    starts = np.r_[0, np.flatnonzero(np.diff(t_s) > 0) + 1]
    ends = np.r_[starts[1:], n]
    step = 1.0
    for k, (s, e) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        if k + 1 < len(starts):
            step = (t_s[e] - t_s[s]) / (e - s)
        out[s:e] = t_s[s] + step * np.arange(e - s)
    return out


def _neighbour_windows(n: int, half: int) -> NDArray[np.intp]:
    """Row i: the `min(2·half, n-1)` indices nearest to i in a consecutive run, excluding i.

    At the ends the window shifts inwards so every row has the same count.
    """
    m = min(2 * half, n - 1)
    idx = np.arange(n)
    start = np.clip(idx - half, 0, n - (m + 1))
    window = start[:, None] + np.arange(m + 1)[None, :]
    keep = window != idx[:, None]
    rows: NDArray[np.intp] = window[keep].reshape(n, m)
    return rows


def _theil_sen_predictions(t_s: FloatArray, values: FloatArray, half: int) -> FloatArray:
    """Each fix predicted from its time-neighbours by a Theil–Sen line (per coordinate)."""
    n, _ = values.shape
    nb = _neighbour_windows(n, half)
    m = nb.shape[1]
    ia, ib = np.triu_indices(m, k=1)
    t_nb = t_s[nb]  # (n, m)
    v_nb = values[nb]  # (n, m, d)
    dt = t_nb[:, ib] - t_nb[:, ia]  # (n, pairs)
    dv = v_nb[:, ib, :] - v_nb[:, ia, :]  # (n, pairs, d)
    valid = np.abs(dt) > 1e-9
    with np.errstate(divide="ignore", invalid="ignore"):
        slopes = np.where(valid[:, :, None], dv / dt[:, :, None], np.nan)
    has_slope = valid.any(axis=1)
    slope = np.zeros((n, values.shape[1]))
    if has_slope.any():
        slope[has_slope] = np.nanmedian(slopes[has_slope], axis=1)
    offsets = v_nb - slope[:, None, :] * (t_nb - t_s[:, None])[:, :, None]
    predictions: FloatArray = np.median(offsets, axis=1)
    return predictions


def _window_median_steps(values: FloatArray, half: int) -> FloatArray:
    """Median length of the consecutive steps inside each fix's outlier window."""
    n = values.shape[0]
    steps = np.linalg.norm(np.diff(values, axis=0), axis=1)  # (n-1,)
    m = min(2 * half, n - 1)
    idx = np.arange(n)
    start = np.clip(idx - half, 0, n - (m + 1))
    step_idx = start[:, None] + np.arange(m)[None, :]
    medians: FloatArray = np.median(steps[step_idx], axis=1)
    return medians


def _repair_outliers(t_s: FloatArray, values: FloatArray, passes: int = 2) -> FloatArray:
    """Replace fixes far from their time-neighbours by interpolation in time (§ module doc)."""
    n = values.shape[0]
    if n < OUTLIER_MIN_POINTS:
        return values
    # strictly increasing abscissa for interpolation, also with duplicate timestamps
    order_t = t_s + np.arange(n) * 1e-6
    current = values.copy()
    flagged = np.zeros(n, dtype=bool)
    for _ in range(passes):
        predictions = _theil_sen_predictions(t_s, current, OUTLIER_HALF_WINDOW)
        residual = np.linalg.norm(current - predictions, axis=1)
        local_step = _window_median_steps(current, OUTLIER_HALF_WINDOW)
        gaps = np.abs(np.diff(t_s))
        dt_near = np.minimum(np.r_[np.inf, gaps], np.r_[gaps, np.inf])
        too_far = residual > np.maximum(OUTLIER_MIN_M, OUTLIER_STEP_FACTOR * local_step)
        too_fast = (residual > OUTLIER_SPEED_MIN_M) & (residual > OUTLIER_MAX_SPEED_M_S * dt_near)
        new = (too_far | too_fast) & ~flagged
        if not new.any():
            break
        flagged |= new
        good = ~flagged
        if good.sum() < 2:
            return values  # nothing trustworthy to interpolate from
        for dim in range(values.shape[1]):
            current[flagged, dim] = np.interp(order_t[flagged], order_t[good], values[good, dim])
    return current


def _smooth(t_s: FloatArray, values: FloatArray) -> FloatArray:
    """Local linear fit in time over ±SMOOTHING_HALF_WINDOW fixes with Huber weights.

    Two reweighting rounds; the Huber scale is 1.4826 × the median residual norm of the first
    fit (at least 0.5 m). The result never moves a fix by more than SMOOTHING_MAX_SHIFT_M.
    """
    n = values.shape[0]
    if n < 3:
        return values
    w_len = min(n, 2 * SMOOTHING_HALF_WINDOW + 1)
    idx = np.arange(n)
    start = np.clip(idx - SMOOTHING_HALF_WINDOW, 0, n - w_len)
    window = start[:, None] + np.arange(w_len)[None, :]  # (n, w)
    tau = t_s[window] - t_s[:, None]  # (n, w), time relative to the fix
    v = values[window]  # (n, w, d)
    weights = np.ones_like(tau)
    fitted = values
    scale = _SMOOTHING_SCALE_FLOOR_M
    for round_ in range(3):
        s0 = weights.sum(axis=1)
        s1 = (weights * tau).sum(axis=1)
        s2 = (weights * tau * tau).sum(axis=1)
        sy = (weights[:, :, None] * v).sum(axis=1)
        sty = (weights[:, :, None] * tau[:, :, None] * v).sum(axis=1)
        det = s0 * s2 - s1 * s1
        linear = det > 1e-9 * np.maximum(s0 * s2, 1e-300)
        safe_det = np.where(linear, det, 1.0)
        intercept = np.where(
            linear[:, None],
            (s2[:, None] * sy - s1[:, None] * sty) / safe_det[:, None],
            sy / s0[:, None],
        )
        slope_num = s0[:, None] * sty - s1[:, None] * sy
        slope = np.where(linear[:, None], slope_num / safe_det[:, None], 0.0)
        fitted = intercept
        if round_ == 2:
            break
        line = intercept[:, None, :] + slope[:, None, :] * tau[:, :, None]
        residual = np.linalg.norm(v - line, axis=2)
        if round_ == 0:
            scale = max(_SMOOTHING_SCALE_FLOOR_M, 1.4826 * float(np.median(residual)))
        k = _HUBER_K * scale
        weights = np.minimum(1.0, k / np.maximum(residual, 1e-12))
    shift = fitted - values
    length = np.linalg.norm(shift, axis=1)
    capped = SMOOTHING_MAX_SHIFT_M / np.maximum(length, 1e-300)
    factor = np.where(length > SMOOTHING_MAX_SHIFT_M, capped, 1.0)
    smoothed: FloatArray = values + shift * factor[:, None]
    return smoothed


def _track_headings(xy: FloatArray) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Direction of travel (deg) at each fix over ±2 fixes, and whether the camera moves there.

    Moving means the net displacement over that window averages at least STATIONARY_STEP_M per
    step (jitter around a parked camera adds path length, not net displacement).
    """
    n = xy.shape[0]
    idx = np.arange(n)
    a = np.clip(idx - 2, 0, n - 1)
    b = np.clip(idx + 2, 0, n - 1)
    disp = xy[b] - xy[a]
    steps = (b - a).astype(np.float64)
    dist = np.linalg.norm(disp, axis=1)
    moving = (steps > 0) & (dist >= STATIONARY_STEP_M * np.maximum(steps, 1.0))
    heading: FloatArray = np.degrees(np.arctan2(disp[:, 0], disp[:, 1])) % 360.0
    return heading, moving


def _mount_offset(diffs_deg: FloatArray) -> float:
    """Fixed angle between the camera and the direction of travel (see module constants)."""
    if diffs_deg.size < MOUNT_MIN_SHOTS:
        return 0.0
    rad = np.radians(diffs_deg)
    c, s = float(np.mean(np.cos(rad))), float(np.mean(np.sin(rad)))
    if math.hypot(c, s) < MOUNT_MIN_CONSISTENCY:
        return 0.0
    offset = math.degrees(math.atan2(s, c))
    snapped = 90.0 * round(offset / 90.0)
    if abs(offset - snapped) <= MOUNT_SNAP_DEG:
        offset = snapped
    return offset


def _headings(shots: Sequence[ShotInput], xy: FloatArray) -> FloatArray:
    """Computed compass angle of each shot (capture order); the rule is in TrackPositioner."""
    track, moving = _track_headings(xy)
    compass = np.array(
        [
            np.nan
            if s.compass_angle_deg is None or not math.isfinite(s.compass_angle_deg)
            else s.compass_angle_deg % 360.0
            for s in shots
        ]
    )
    pano = np.array([s.camera_type in SPHERICAL_CAMERA_TYPES for s in shots], dtype=bool)
    has_compass = ~np.isnan(compass)
    sample = moving & has_compass & ~pano
    offset = _mount_offset(_wrap_180(compass[sample] - track[sample]))
    expected = np.where(pano, track, (track + offset) % 360.0)

    result = compass.copy()
    deviates = np.abs(_wrap_180(np.where(has_compass, compass, 0.0) - expected)) > (
        MAX_COMPASS_DEVIATION_DEG
    )
    use_track = moving & (~has_compass | (deviates & ~pano))
    result[use_track] = expected[use_track]
    missing = np.flatnonzero(np.isnan(result))
    if missing.size:
        # stationary without compass: the heading of the nearest moving shot, else of the
        # nearest shot with a compass, else north
        donors = np.flatnonzero(moving)
        if donors.size == 0:
            donors = np.flatnonzero(~np.isnan(result))
        if donors.size == 0:
            result[missing] = 0.0
        else:
            nearest = np.abs(donors[None, :] - missing[:, None]).argmin(axis=1)
            result[missing] = result[donors[nearest]]
    return result % 360.0


# --------------------------------------------------------------------------- positioner


@dataclass(frozen=True, slots=True)
class TrackPositioner:
    """Positions from the GPS track: outlier repair, light smoothing, heading from the track.

    Heading rule (computed_compass_angle):
    - travel direction at a shot = direction of the smoothed displacement from 2 shots before to
      2 shots after it; the camera "moves" there when that displacement averages at least
      STATIONARY_STEP_M (0.5 m) per step;
    - mount offset = circular mean of (compass - travel direction) over moving non-panoramic
      shots with a compass, when they agree (mean resultant ≥ 0.5, at least 3 shots); snapped to
      0/90/180/270° when within 30° of one (side/rear cameras keep their mount, a small
      consistent offset is compass bias); otherwise 0;
    - moving perspective/fisheye shot: the compass is kept when within 30° of travel + offset,
      replaced by travel + offset when missing or further off;
    - panorama (spherical/equirectangular): the compass is kept when present; when missing and
      moving, the travel direction;
    - stationary shot: the compass is kept; when missing, the computed heading of the nearest
      moving shot, else the nearest known compass, else 0.

    `rotation` is the level-camera rotation for that heading and the EXIF orientation
    (`rotation_from_heading`) expressed in the reconstruction frame (the tiny meridian
    convergence between the shot's local ENU and the reference ENU is applied, so shots and
    translations share one frame).
    """

    smooth: bool = True

    def solve(self, sequence: Sequence[ShotInput]) -> Reconstruction:
        """Pose every image of `sequence`; shots come back in the input order.

        Raises:
            ValueError: the sequence is empty.
        """
        if not sequence:
            raise ValueError("a sequence has at least one image")
        order = sorted(
            range(len(sequence)),
            key=lambda i: (sequence[i].captured_at_ms, sequence[i].image_id),
        )
        shots = [sequence[i] for i in order]
        lat = np.array([s.lat for s in shots], dtype=np.float64)
        lon = np.array([s.lon for s in shots], dtype=np.float64)
        alt_known = np.array(
            [s.altitude_m is not None and math.isfinite(s.altitude_m) for s in shots], dtype=bool
        )
        altitudes = np.array(
            [s.altitude_m if known else 0.0 for s, known in zip(shots, alt_known, strict=True)],
            dtype=np.float64,
        )
        ref_alt = float(np.median(altitudes[alt_known])) if alt_known.any() else 0.0
        reference = (float(np.median(lat)), float(np.median(lon)), ref_alt)
        altitudes[~alt_known] = ref_alt
        enu = lla_to_enu(lat, lon, altitudes, reference).reshape(-1, 3)
        t_s = _spread_ties(
            np.array([s.captured_at_ms - shots[0].captured_at_ms for s in shots], dtype=np.float64)
            / 1000.0
        )

        xy = _repair_outliers(t_s, enu[:, :2])
        z = enu[:, 2].copy()
        if alt_known.sum() >= 1:
            z_known = _repair_outliers(t_s[alt_known], z[alt_known, None])
            if self.smooth:
                z_known = _smooth(t_s[alt_known], z_known)
            z[alt_known] = z_known[:, 0]
        if self.smooth:
            xy = _smooth(t_s, xy)
        centres = np.column_stack([xy, z])
        lla = enu_to_lla(centres, reference).reshape(-1, 3)
        headings = _headings(shots, xy)

        ref_basis = _enu_basis(reference[0], reference[1])
        cameras: dict[str, dict[str, object]] = {}
        computed: dict[int, ComputedShot] = {}
        for k, shot in enumerate(shots):
            shot_lat, shot_lon = float(lla[k, 0]), float(lla[k, 1])
            # reference ENU → shot's local ENU, then the level camera at the shot
            to_local = _enu_basis(shot_lat, shot_lon) @ ref_basis.T
            r = _rotation_matrix(float(headings[k]), shot.exif_orientation) @ to_local
            t = -r @ centres[k]
            camera_id, camera, params = _camera(shot)
            cameras.setdefault(camera_id, camera)
            computed[order[k]] = ComputedShot(
                image_id=shot.image_id,
                lon=shot_lon,
                lat=shot_lat,
                altitude_m=float(lla[k, 2]) if alt_known[k] else None,
                compass_angle_deg=_wrap_360(float(headings[k])),
                rotation=matrix_to_angle_axis(r),
                camera_parameters=params,
                atomic_scale=1.0,
                translation=(float(t[0]), float(t[1]), float(t[2])),
                camera_id=camera_id,
            )
        return Reconstruction(
            reference_lla=reference,
            shots=[computed[i] for i in range(len(sequence))],
            cameras=cameras,
        )


# --------------------------------------------------------------------------- merge_cc


class _UnionFind:
    __slots__ = ("parent",)

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, a: int) -> int:
        parent = self.parent
        root = a
        while parent[root] != root:
            root = parent[root]
        while parent[a] != root:
            parent[a], a = root, parent[a]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _merge_id(sequence_id: str) -> int:
    digest = hashlib.blake2b(sequence_id.encode(), digest_size=6, person=b"wayview-mergecc")
    value = int.from_bytes(digest.digest(), "big") & _MAX_SAFE_INTEGER
    return value or 1  # MapillaryJS treats merge_cc 0 as missing


_FORWARD_OFFSETS = [
    (dx, dy, dz)
    for dx in (-1, 0, 1)
    for dy in (-1, 0, 1)
    for dz in (-1, 0, 1)
    if (dx, dy, dz) > (0, 0, 0)
]


def merge_components(
    sequences: Mapping[str, Iterable[tuple[float, float]]], radius_m: float = 30.0
) -> dict[str, int]:
    """Group sequences whose images come within `radius_m` of each other; `merge_cc` per sequence.

    Two sequences are in one group when some image of one lies within `radius_m` (chord
    distance on the mean-radius sphere, equal to the great-circle distance to well under a
    millimetre at these ranges) of some image of the other, transitively. Points are hashed into
    a 3-D grid of `radius_m` cells on the sphere (no trouble at the antimeridian or the poles),
    and only pairs of different groups in the same or adjacent cells are compared.

    The id of a group is derived from its smallest sequence id (blake2b, 6 bytes): stable while
    that sequence stays in the group, positive and below 2^53.

    Args:
        sequences: sequence id → its images' (lon, lat) in degrees.
        radius_m: joining distance in metres (> 0).

    Returns:
        sequence id → merge_cc, for every given sequence (a sequence without images is alone).

    >>> cc = merge_components({"a": [(13.0, 52.0)], "b": [(13.0001, 52.0)], "c": [(14.0, 52.0)]})
    >>> cc["a"] == cc["b"] != cc["c"]
    True
    """
    if not radius_m > 0:
        raise ValueError("radius_m must be positive")
    ids = list(sequences)
    chunks: list[FloatArray] = []
    owners: list[NDArray[np.intp]] = []
    for index, seq_id in enumerate(ids):
        points = np.asarray(list(sequences[seq_id]), dtype=np.float64).reshape(-1, 2)
        chunks.append(points)
        owners.append(np.full(points.shape[0], index, dtype=np.intp))
    uf = _UnionFind(len(ids))
    lonlat = np.concatenate(chunks) if chunks else np.zeros((0, 2))
    owner = np.concatenate(owners) if owners else np.zeros(0, dtype=np.intp)
    finite = np.isfinite(lonlat).all(axis=1)
    lonlat, owner = lonlat[finite], owner[finite]
    if lonlat.shape[0]:
        lam, phi = np.radians(lonlat[:, 0]), np.radians(lonlat[:, 1])
        xyz = _EARTH_RADIUS_M * np.column_stack(
            [np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)]
        )
        cells = np.floor(xyz / radius_m).astype(np.int64)
        # group points by (cell, owner)
        keys = np.column_stack([cells, owner])
        order = np.lexsort((keys[:, 3], keys[:, 2], keys[:, 1], keys[:, 0]))
        keys, xyz_sorted = keys[order], xyz[order]
        boundaries = np.flatnonzero(np.any(np.diff(keys, axis=0) != 0, axis=1)) + 1
        starts = np.r_[0, boundaries]
        ends = np.r_[boundaries, keys.shape[0]]
        by_cell: dict[tuple[int, int, int], list[tuple[int, FloatArray]]] = {}
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            cx, cy, cz, seq_index = (int(v) for v in keys[s])
            by_cell.setdefault((cx, cy, cz), []).append((seq_index, xyz_sorted[s:e]))
        limit2 = radius_m * radius_m
        for (cx, cy, cz), members in by_cell.items():
            # same cell
            for a in range(len(members)):
                for b in range(a + 1, len(members)):
                    _join_if_close(uf, members[a], members[b], limit2)
            for dx, dy, dz in _FORWARD_OFFSETS:
                others = by_cell.get((cx + dx, cy + dy, cz + dz))
                if others is None:
                    continue
                for mine in members:
                    for other in others:
                        _join_if_close(uf, mine, other, limit2)
    smallest: dict[int, str] = {}
    for index, seq_id in enumerate(ids):
        root = uf.find(index)
        if root not in smallest or seq_id < smallest[root]:
            smallest[root] = seq_id
    return {seq_id: _merge_id(smallest[uf.find(index)]) for index, seq_id in enumerate(ids)}


def _join_if_close(
    uf: _UnionFind,
    first: tuple[int, FloatArray],
    second: tuple[int, FloatArray],
    limit2: float,
) -> None:
    a, points_a = first
    b, points_b = second
    if uf.find(a) == uf.find(b):
        return
    diff = points_a[:, None, :] - points_b[None, :, :]
    if float(np.min(np.einsum("ijk,ijk->ij", diff, diff))) <= limit2:
        uf.union(a, b)
