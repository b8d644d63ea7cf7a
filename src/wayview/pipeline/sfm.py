"""wayview.pipeline.sfm: structure from motion with pycolmap (the optional extra `wayview[sfm]`).

`reconstruct` poses a sequence's images from their pixels (§3.2, §6.2):

1. SIFT features of every image (its public ≤ 2048-px derivative), one camera per camera model
   of the sequence, with the EXIF focal length as a prior when known;
2. matching of image pairs: each image with the next `sfm_match_overlap` ones in capture
   order, and each *neighbour* (an image of another sequence that comes within
   `merge_radius_m`) with the sequence images nearest to it, so sequences that cross or
   revisit each other share one reconstruction;
3. global SfM (GLOMAP, `pycolmap.global_mapping`) on windows of `sfm_window` images that
   overlap by `sfm_window_overlap` (the global mapper's cost grows fast with size; a window
   that registers too few of its images is tried again with other seeds);
4. the windows are chained on their shared images and each chain is placed in the local ENU
   frame by the upright GPS fit (`wayview.pipeline.sfm_geometry`); neighbours count as
   targets with their already computed positions, at a higher weight, so the sequence lines
   up with what is stored;
5. per image: the pose (`computed_rotation`, translation, `computed_geometry`, altitude and
   compass angle), the camera refined by bundle adjustment, `atomic_scale` (the window's
   units per metre: the mesh is in window units) and a mesh from the points the image sees.

Images that are not registered, that land further than `sfm_max_residual_m` from their GPS
position, or whose window failed keep the `TrackPositioner` result; each such fallback is
returned with its reason.

pycolmap is BSD-3, but its manylinux wheel links GPL-2.0+ parts of SuiteSparse statically:
that is why it is an optional extra and never a default dependency.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import resource
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from wayview.pipeline.positions import (
    SPHERICAL_CAMERA_TYPES,
    ComputedShot,
    ShotInput,
    TrackPositioner,
    enu_to_lla,
    heading_from_rotation,
    lla_to_enu,
    matrix_to_angle_axis,
    orientation_matrix,
)
from wayview.pipeline.sfm_assets import point_mesh
from wayview.pipeline.sfm_geometry import (
    Similarity,
    WindowSolution,
    chain_windows,
    upright_fit,
)

__all__ = [
    "SfmImage",
    "SfmOptions",
    "SfmResult",
    "WindowReport",
    "reconstruct",
    "sfm_unavailable",
]

log = logging.getLogger("wayview.pipeline")

FloatArray = NDArray[np.float64]

#: COLMAP's SIMPLE_RADIAL camera (f, cx, cy, k): Mapillary's `[focal, k1, 0]` with the principal
#: point in the middle. RADIAL (k1, k2) overfits windows of 15 street photos (k2 ≈ -1 seen).
CAMERA_MODEL = "SIMPLE_RADIAL"
#: A window whose refined camera leaves these bounds failed (its poses are not trusted).
FOCAL_BOUNDS = (0.3, 3.0)
MAX_ABS_K1 = 0.5
#: Weight of a neighbour's computed position in the GPS fit (a sequence image weighs 1), as long
#: as the neighbours together weigh no more than the sequence: they all lie where the sequences
#: meet, and letting them dominate would pivot the far end of the sequence about that place.
NEIGHBOUR_WEIGHT = 4.0
#: Sequence images each neighbour is matched with.
NEIGHBOUR_PAIRS = 4
#: Neighbours of the same other sequence are matched with this many of their successors.
NEIGHBOUR_OVERLAP = 3


def sfm_unavailable() -> str | None:
    """Why SfM cannot run here (pycolmap missing or broken), or None when it can.

    Called when a server or worker starts (on its main thread), this is where pycolmap is
    first imported: see `_keep_stop_signals`."""
    first = "pycolmap" not in sys.modules
    try:
        import pycolmap  # noqa: F401
    except ImportError as exc:
        return f"pycolmap is not installed (pip install 'wayview[sfm]'): {exc}"
    if first:
        _keep_stop_signals()
    return None


def _keep_stop_signals() -> None:
    """Give SIGTERM and SIGINT back to Python. Importing pycolmap installs glog's fatal-signal
    handlers, SIGTERM among them: a server or worker told to stop then aborted with a stack
    dump instead of shutting down (no lifespan shutdown, queued log lines lost). Python's
    handlers (granian's and asyncio's among them) are re-installed as they were. Only the main
    thread may set handlers; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return
    for number in (signal.SIGTERM, signal.SIGINT):
        handler = signal.getsignal(number)
        if handler is not None:
            signal.signal(number, handler)


@dataclass(frozen=True, slots=True)
class SfmImage:
    """One image to reconstruct: its metadata and JPEG bytes (its ≤ 2048-px derivative).

    A *neighbour* is an image of another sequence, matched so both share one reconstruction
    but not positioned again: `neighbour_at` is its stored computed (lat, lon, alt).
    """

    shot: ShotInput
    jpeg: bytes
    neighbour_at: tuple[float, float, float | None] | None = None
    sequence_id: str = ""


@dataclass(frozen=True, slots=True)
class SfmOptions:
    """Tuning of `reconstruct` (from `pipeline.sfm_*` settings)."""

    window: int = 15
    overlap: int = 5
    match_overlap: int = 8
    max_image_size: int = 2048
    max_features: int = 8192
    max_residual_m: float = 20.0
    seeds: int = 3
    threads: int = 2
    max_points: int = 100_000
    mesh_divisions: int = 8


@dataclass(slots=True)
class WindowReport:
    """What one window did (for the operator and the benchmark)."""

    images: int
    registered: int
    points: int
    seed: int
    cpu_s: float
    peak_rss_mb: float
    error: str = ""


@dataclass(slots=True)
class SfmResult:
    """The reconstruction of one sequence."""

    reference_lla: tuple[float, float, float]
    #: One shot per sequence image (input order): SfM poses, or TrackPositioner's fallbacks.
    shots: list[ComputedShot]
    #: image id → why it fell back to the GPS track.
    fallbacks: dict[int, str]
    #: OpenSfM cluster (§6.2) with the points, shots of the sequence and of the neighbours.
    cluster: dict[str, Any]
    #: image id → (vertices, faces) in its window's units (see `atomic_scale`).
    meshes: dict[int, tuple[list[tuple[float, float, float]], list[tuple[int, int, int]]]]
    windows: list[WindowReport] = field(default_factory=list)
    extraction_cpu_s: float = 0.0
    matching_cpu_s: float = 0.0

    @property
    def registered(self) -> int:
        return len(self.shots) - len(self.fallbacks)


@contextlib.contextmanager
def _quiet_colmap() -> Iterator[None]:
    import pycolmap

    previous = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 2  # warnings and below go nowhere
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = previous


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mb() -> float:
    from wayview.pipeline.limits import peak_rss_mb

    return peak_rss_mb()


def _camera_group(shot: ShotInput) -> str:
    return "|".join(str(part) for part in (shot.make, shot.model, shot.width, shot.height,
                                           shot.camera_type, shot.focal_35mm))


def _up_in_camera(orientation: int) -> FloatArray:
    """The upright image's "up" in the stored camera frame (the stored grid may be rotated)."""
    matrix = orientation_matrix(orientation)
    return np.asarray(matrix @ np.array([0.0, -1.0, 0.0]), np.float64)


def reconstruct(images: Sequence[SfmImage], options: SfmOptions | None = None, *,
                work_dir: Path | None = None) -> SfmResult:
    """Pose the sequence images of `images` (neighbours are matched but not returned).

    `work_dir`: a folder kept between attempts (the caller removes it after success): the
    features and matches database and each solved window are checkpointed there, so an
    attempt that was killed resumes where it stopped. Without it, a temporary folder is used.

    Raises:
        RuntimeError: pycolmap is not installed.
        ValueError: no sequence image.
    """
    reason = sfm_unavailable()
    if reason is not None:
        raise RuntimeError(reason)
    options = options or SfmOptions()
    own = sorted((im for im in images if im.neighbour_at is None),
                 key=lambda im: (im.shot.captured_at_ms, im.shot.image_id))
    neighbours = [im for im in images if im.neighbour_at is not None]
    if not own:
        raise ValueError("no sequence image to reconstruct")
    track = TrackPositioner().solve([im.shot for im in own])
    reference = track.reference_lla
    fallback_shots = {shot.image_id: shot for shot in track.shots}
    fallbacks: dict[int, str] = {}
    perspective = [im for im in own if im.shot.camera_type not in SPHERICAL_CAMERA_TYPES]
    for im in own:
        if im.shot.camera_type in SPHERICAL_CAMERA_TYPES:
            fallbacks[im.shot.image_id] = "spherical images are not reconstructed yet"
    fitting = _Fitting(
        targets=_targets(own, neighbours, reference),
        up={im.shot.image_id: _up_in_camera(im.shot.exif_orientation)
            for im in [*own, *neighbours]},
        weights=_neighbour_weights(len(perspective), [im.shot.image_id for im in neighbours]),
        reject_m=options.max_residual_m)
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
        with _quiet_colmap():
            solved = _solve(perspective, neighbours, fitting, options, work_dir)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="wayview-sfm-"))
        try:
            with _quiet_colmap():
                solved = _solve(perspective, neighbours, fitting, options, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    windows, reports, extraction_s, matching_s = solved
    segments = chain_windows(windows)
    placed: dict[int, tuple[FloatArray, FloatArray, Similarity, int]] = {}
    window_enu: dict[int, Similarity] = {}  # window index → its frame to ENU
    own_ids = {im.shot.image_id for im in own}
    for segment in segments:
        fit = fitting.place(segment.poses)
        if fit is None:
            for image_id in segment.poses:
                if image_id in own_ids:
                    fallbacks.setdefault(image_id, "its reconstruction is too short to place "
                                         "on the GPS track")
            continue
        to_enu, residuals = fit
        for window_index, to_segment in segment.windows:
            window_enu[window_index] = to_segment.then(to_enu)
        for image_id, (rotation, centre) in segment.poses.items():
            if image_id in placed:
                continue
            if image_id in own_ids and residuals.get(image_id, 0.0) > options.max_residual_m:
                fallbacks.setdefault(
                    image_id, f"placed {residuals[image_id]:.0f} m from its GPS position "
                    f"(more than {options.max_residual_m:g} m)")
                continue
            window_index = segment.owner[image_id]
            r_enu, c_enu = to_enu.pose(rotation, centre)
            placed[image_id] = (r_enu, c_enu, window_enu[window_index], window_index)
    for im in perspective:
        if im.shot.image_id not in placed:
            fallbacks.setdefault(im.shot.image_id, "not registered by structure from motion")
    shots: list[ComputedShot] = []
    meshes: dict[int, tuple[list[tuple[float, float, float]], list[tuple[int, int, int]]]] = {}
    cameras: dict[str, dict[str, Any]] = {}
    cluster_shots: dict[str, dict[str, Any]] = {}
    for im in [*own, *neighbours]:
        image_id = im.shot.image_id
        is_own = image_id in own_ids
        if image_id not in placed or (is_own and image_id in fallbacks):
            if is_own:
                shot = fallback_shots[image_id]
                shots.append(shot)
                _add_camera(cameras, shot.camera_id, im.shot, shot.camera_parameters)
                cluster_shots[str(image_id)] = {"camera": shot.camera_id,
                                                "rotation": list(shot.rotation),
                                                "translation": list(shot.translation)}
            continue
        r_enu, c_enu, window_to_enu, window_index = placed[image_id]
        window = windows[window_index]
        assert window is not None
        params = window.cameras.get(image_id) or (0.85, 0.0, 0.0)
        camera_id = f"sfm {_camera_group(im.shot)} {params[0]:.4f}"
        _add_camera(cameras, camera_id, im.shot, params)
        angle_axis = matrix_to_angle_axis(r_enu)
        translation = -r_enu @ c_enu
        cluster_shots[str(image_id)] = {"camera": camera_id, "rotation": list(angle_axis),
                                        "translation": [float(v) for v in translation]}
        if not is_own:
            continue
        lat, lon, alt = (float(v) for v in enu_to_lla(c_enu, reference))
        w_rotation, w_centre = window.poses[image_id]
        seen = window.points[window.seen.get(image_id, np.zeros(0, np.int64))]
        in_camera = (seen - w_centre) @ w_rotation.T
        try:
            meshes[image_id] = point_mesh(im.shot.width, im.shot.height, params,
                                          in_camera.tolist(), divisions=options.mesh_divisions)
        except ValueError:
            # A wide lens whose one-term distortion folds before the image corners: the mesh
            # is built on undistorted rays (the viewer clamps and blends it anyway).
            meshes[image_id] = point_mesh(im.shot.width, im.shot.height, (params[0], 0.0, 0.0),
                                          in_camera.tolist(), divisions=options.mesh_divisions)
        shots.append(ComputedShot(
            image_id=image_id, lon=lon, lat=lat,
            altitude_m=alt if im.shot.altitude_m is not None else None,
            compass_angle_deg=heading_from_rotation(angle_axis),
            rotation=angle_axis, camera_parameters=params,
            atomic_scale=1.0 / window_to_enu.scale,
            translation=(float(translation[0]), float(translation[1]), float(translation[2])),
            camera_id=camera_id,
        ))
    by_id = {shot.image_id: shot for shot in shots}
    ordered = [by_id[im.shot.image_id] for im in images if im.neighbour_at is None]
    points = _cluster_points(windows, window_enu, options.max_points)
    lat0, lon0, alt0 = reference
    cluster = {"cameras": cameras, "shots": cluster_shots, "points": points,
               "reference_lla": {"latitude": lat0, "longitude": lon0, "altitude": alt0}}
    return SfmResult(reference, ordered, fallbacks, cluster, meshes, reports,
                     extraction_s, matching_s)


@dataclass(frozen=True, slots=True)
class _Fitting:
    """What the upright GPS fit of a sequence places its reconstructions with: each image's
    ENU target and "up" in its camera frame, the neighbours' weights, the rejection distance."""

    targets: dict[int, tuple[float, float, float | None]]
    up: dict[int, FloatArray]
    weights: dict[int, float]
    reject_m: float

    def place(self, poses: dict[int, tuple[FloatArray, FloatArray]]
              ) -> tuple[Similarity, dict[int, float]] | None:
        """`upright_fit` of `poses` (None when they cannot be placed)."""
        return upright_fit(poses, self.targets, up_in_camera=self.up, weights=self.weights,
                           reject_m=self.reject_m)


def _neighbour_weights(own: int, neighbour_ids: Sequence[int]) -> dict[int, float]:
    """Fit weights of the neighbours: `NEIGHBOUR_WEIGHT` each, at most `own` in all.

    >>> _neighbour_weights(15, [1, 2]), _neighbour_weights(15, list(range(30)))[0]
    ({1: 4.0, 2: 4.0}, 0.5)
    """
    if not neighbour_ids:
        return {}
    weight = min(NEIGHBOUR_WEIGHT, own / len(neighbour_ids))
    return {i: weight for i in neighbour_ids}


def _add_camera(cameras: dict[str, dict[str, Any]], camera_id: str, shot: ShotInput,
                params: tuple[float, float, float] | None) -> None:
    if camera_id in cameras:
        return
    focal, k1, k2 = params or (0.85, 0.0, 0.0)
    projection = "fisheye" if shot.camera_type == "fisheye" else "perspective"
    cameras[camera_id] = {"projection_type": projection, "width": shot.width,
                          "height": shot.height, "focal": focal, "k1": k1, "k2": k2}


def _targets(own: Sequence[SfmImage], neighbours: Sequence[SfmImage],
             reference: tuple[float, float, float]
             ) -> dict[int, tuple[float, float, float | None]]:
    """ENU targets of the fit: GPS of sequence images, computed positions of neighbours."""
    targets: dict[int, tuple[float, float, float | None]] = {}
    for im in own:
        alt = im.shot.altitude_m
        e, n, u = lla_to_enu(im.shot.lat, im.shot.lon, alt if alt is not None else reference[2],
                             reference)
        targets[im.shot.image_id] = (float(e), float(n), float(u) if alt is not None else None)
    for im in neighbours:
        assert im.neighbour_at is not None
        lat, lon, alt = im.neighbour_at
        e, n, u = lla_to_enu(lat, lon, alt if alt is not None else reference[2], reference)
        targets[im.shot.image_id] = (float(e), float(n), float(u) if alt is not None else None)
    return targets


def _windows(count: int, size: int, overlap: int) -> list[range]:
    """Index ranges of the windows over `count` images (the last one is never short).

    >>> [(w.start, w.stop) for w in _windows(29, 15, 5)]
    [(0, 15), (10, 25), (14, 29)]
    >>> [(w.start, w.stop) for w in _windows(12, 15, 5)]
    [(0, 12)]
    """
    size = max(3, size)
    step = max(1, size - max(0, min(overlap, size - 1)))
    if count <= size:
        return [range(0, count)]
    out = []
    start = 0
    while start + size < count:
        out.append(range(start, start + size))
        start += step
    out.append(range(count - size, count))
    return out


def _solve(own: Sequence[SfmImage], neighbours: Sequence[SfmImage], fitting: _Fitting,
           options: SfmOptions, tmp: Path
           ) -> tuple[list[WindowSolution | None], list[WindowReport], float, float]:
    """Features, matches and the windows' global SfM (pycolmap)."""

    if len(own) < 2:
        return [], [], 0.0, 0.0
    started = _cpu_s()
    image_dir = tmp / "images"
    database = tmp / "database.db"
    features_done = tmp / "features.done"
    matches_done = tmp / "matches.done"
    names: dict[int, str] = {}
    groups: dict[str, list[SfmImage]] = {}
    for im in [*own, *neighbours]:
        groups.setdefault(_camera_group(im.shot), []).append(im)
    # Named by position, not by id: ids are random, and names order images inside COLMAP.
    position = 0
    for number, (_, members) in enumerate(groups.items()):
        for im in members:
            names[im.shot.image_id] = f"camera{number}/{position:05d}.jpg"
            position += 1
    if not features_done.exists():  # a killed attempt left a partial database: start over
        database.unlink(missing_ok=True)
        matches_done.unlink(missing_ok=True)
        _extract(groups, names, image_dir, database, options)
        features_done.touch()
    extraction_s = _cpu_s() - started
    pairs = _pairs(own, neighbours, fitting.targets, options.match_overlap)
    started = _cpu_s()
    if not matches_done.exists():
        _match(pairs, names, database, tmp / "pairs.txt", options)
        matches_done.touch()
    matching_s = _cpu_s() - started
    partners: dict[int, set[int]] = {}
    for a, b in pairs:
        partners.setdefault(a, set()).add(b)
        partners.setdefault(b, set()).add(a)
    neighbour_ids = {im.shot.image_id for im in neighbours}
    solutions: list[WindowSolution | None] = []
    reports: list[WindowReport] = []
    for number, window in enumerate(_windows(len(own), options.window, options.overlap)):
        window_ids = [own[i].shot.image_id for i in window]
        extra = sorted({p for m in window_ids for p in partners.get(m, set())
                        if p in neighbour_ids})
        checkpoint = tmp / f"window{number}.npz"
        saved = _load_window(checkpoint)
        if saved is not None:
            solutions.append(saved[0])
            reports.append(saved[1])
            continue
        window_set = set(window_ids)

        def score(solution: WindowSolution, members: set[int] = window_set) -> int:
            """Members registered and, with the window placed alone, near their GPS fix."""
            fit = fitting.place(solution.poses)
            registered = members & set(solution.poses)
            if fit is None:
                return len(registered)
            return sum(1 for i in registered if fit[1].get(i, 0.0) <= options.max_residual_m)

        solution, report = _map_window(database, image_dir, tmp / f"window{number}",
                                       [*window_ids, *extra], window_set, names, options,
                                       score)
        _save_window(checkpoint, solution, report)
        solutions.append(solution)
        reports.append(report)
    return solutions, reports, extraction_s, matching_s


def _extract(groups: dict[str, list[SfmImage]], names: dict[int, str], image_dir: Path,
             database: Path, options: SfmOptions) -> None:
    """SIFT features of every image, one camera per camera group."""
    import pycolmap

    for number, (_, members) in enumerate(groups.items()):
        folder = image_dir / f"camera{number}"
        folder.mkdir(parents=True, exist_ok=True)
        for im in members:
            (image_dir / names[im.shot.image_id]).write_bytes(im.jpeg)
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = CAMERA_MODEL
        first = members[0].shot
        if first.focal_35mm:
            width, height = _jpeg_size(members[0].jpeg) or (first.width, first.height)
            focal_px = first.focal_35mm / 36.0 * max(width, height)
            reader.camera_params = f"{focal_px},{width / 2},{height / 2},0"
        extraction = pycolmap.FeatureExtractionOptions()
        extraction.max_image_size = options.max_image_size
        extraction.num_threads = options.threads
        extraction.sift.max_num_features = options.max_features
        image_names = [names[im.shot.image_id] for im in members]
        # Registered first, in this order: the extractor numbers images as its threads finish
        # them, and the numbering steers the mapper (runs differed by up to 0.2 m, and under
        # load a photo landed 23 m off).
        if not database.exists():
            pycolmap.Database.open(str(database)).close()
        pycolmap.import_images(database, image_dir, camera_mode=pycolmap.CameraMode.SINGLE,
                               image_names=image_names, options=reader)
        pycolmap.extract_features(
            database, image_dir, image_names=image_names,
            camera_mode=pycolmap.CameraMode.SINGLE, reader_options=reader,
            extraction_options=extraction, device=pycolmap.Device.cpu)


def _match(pairs: list[tuple[int, int]], names: dict[int, str], database: Path,
           pairs_file: Path, options: SfmOptions) -> None:
    """Match and verify the image pairs."""
    import pycolmap

    pairs_file.write_text("".join(f"{names[a]} {names[b]}\n" for a, b in pairs))
    matching = pycolmap.FeatureMatchingOptions()
    # One thread: with several, which thread's RANSAC generator verifies which pair depends
    # on scheduling, so a loaded machine verified other pairs and placed other poses.
    matching.num_threads = 1
    pairing = pycolmap.ImportedPairingOptions()
    pairing.match_list_path = str(pairs_file)
    verification = pycolmap.TwoViewGeometryOptions()
    verification.ransac.random_seed = 0  # the same matches give the same verified pairs
    pycolmap.match_image_pairs(database, matching_options=matching, pairing_options=pairing,
                               verification_options=verification, device=pycolmap.Device.cpu)


def _save_window(path: Path, solution: WindowSolution | None, report: WindowReport) -> None:
    """Checkpoint one solved window (written whole, then renamed: never half a file)."""
    arrays: dict[str, Any] = {"report": np.array(json.dumps(asdict(report)))}
    if solution is not None:
        ids = sorted(solution.poses)
        arrays.update(
            ids=np.array(ids, np.int64),
            rotations=np.array([solution.poses[i][0] for i in ids]).reshape(-1, 3, 3),
            centres=np.array([solution.poses[i][1] for i in ids]).reshape(-1, 3),
            cameras=np.array([solution.cameras.get(i, (0.85, 0.0, 0.0)) for i in ids]
                             ).reshape(-1, 3),
            points=solution.points, colors=solution.colors,
            seen_ids=np.array([i for i in ids for _ in solution.seen.get(i, ())], np.int64),
            seen_points=np.concatenate([solution.seen.get(i, np.zeros(0, np.int64))
                                        for i in ids] or [np.zeros(0, np.int64)]),
        )
    partial = path.with_suffix(".partial.npz")
    with partial.open("wb") as out:
        np.savez(out, **arrays)
    partial.replace(path)


def _load_window(path: Path) -> tuple[WindowSolution | None, WindowReport] | None:
    """A checkpointed window, or None when there is none (or it cannot be read)."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            report = WindowReport(**json.loads(str(data["report"])))
            if "ids" not in data:
                return None, report
            ids = [int(i) for i in data["ids"]]
            poses = {i: (np.asarray(data["rotations"][n], np.float64),
                         np.asarray(data["centres"][n], np.float64)) for n, i in enumerate(ids)}
            cameras = {i: (float(c[0]), float(c[1]), float(c[2]))
                       for i, c in zip(ids, data["cameras"], strict=True)}
            seen: dict[int, list[int]] = {}
            for i, point in zip(data["seen_ids"], data["seen_points"], strict=True):
                seen.setdefault(int(i), []).append(int(point))
            return WindowSolution(poses, cameras, np.asarray(data["points"], np.float64),
                                  np.asarray(data["colors"], np.uint8),
                                  {i: np.asarray(v, np.int64) for i, v in seen.items()}), report
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("sfm: ignoring the unreadable checkpoint %s: %s", path, exc)
        return None


def _pairs(own: Sequence[SfmImage], neighbours: Sequence[SfmImage],
           targets: dict[int, tuple[float, float, float | None]], overlap: int
           ) -> list[tuple[int, int]]:
    """Image pairs to match: sequential within the sequence, neighbours with the nearest."""
    ids = [im.shot.image_id for im in own]
    pairs = [(ids[i], ids[j]) for i in range(len(ids))
             for j in range(i + 1, min(len(ids), i + 1 + max(1, overlap)))]
    by_sequence: dict[str, list[SfmImage]] = {}
    for im in neighbours:
        by_sequence.setdefault(im.sequence_id, []).append(im)
        e, n, _ = targets[im.shot.image_id]
        nearest = sorted(ids, key=lambda i: math.hypot(targets[i][0] - e, targets[i][1] - n))
        pairs += [(i, im.shot.image_id) for i in nearest[:NEIGHBOUR_PAIRS]]
    for members in by_sequence.values():
        members.sort(key=lambda im: (im.shot.captured_at_ms, im.shot.image_id))
        pairs += [(members[i].shot.image_id, members[j].shot.image_id)
                  for i in range(len(members))
                  for j in range(i + 1, min(len(members), i + 1 + NEIGHBOUR_OVERLAP))]
    return pairs


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    from wayview.pipeline.thumbnails import jpeg_frame_size

    try:
        return jpeg_frame_size(data)
    except ValueError:
        return None


def _map_window(database: Path, image_dir: Path, out: Path, image_ids: list[int],
                members: set[int], names: dict[int, str], options: SfmOptions,
                score: Callable[[WindowSolution], int]
                ) -> tuple[WindowSolution | None, WindowReport]:
    """Global SfM of one window, with seed retries until every member is registered and
    placed near its GPS position (`score`); the best-scoring seed wins.

    The mapper runs on one thread: the same input then gives the same poses (with several
    threads GLOMAP's result changes from run to run), and it costs about 0.1 s per image.
    """
    import pycolmap

    by_name = {names[i]: i for i in image_ids}
    best: tuple[WindowSolution, int] | None = None
    best_report: WindowReport | None = None
    first_started = _cpu_s()
    for seed in range(max(1, options.seeds)):
        started = _cpu_s()
        attempt = out / f"seed{seed}"
        shutil.rmtree(attempt, ignore_errors=True)  # left by a killed attempt
        attempt.mkdir(parents=True)
        opts = pycolmap.GlobalPipelineOptions()
        opts.image_names = [names[i] for i in image_ids]
        opts.random_seed = seed
        opts.num_threads = 1
        opts.mapper.num_threads = 1
        error = ""
        solution: WindowSolution | None = None
        try:
            models = pycolmap.global_mapping(database, image_dir, attempt, opts)
        except Exception as exc:  # a window that cannot be solved falls back, never crashes
            models = {}
            error = f"{type(exc).__name__}: {exc}"
        if models:
            model = max(models.values(), key=lambda m: m.num_reg_images())
            solution = _solution(model, by_name)
            odd = _implausible_camera(solution)
            if odd:
                solution, error = None, odd
        registered = len(set(solution.poses) & members) if solution else 0
        good = score(solution) if solution else 0
        report = WindowReport(images=len(members), registered=registered,
                              points=len(solution.points) if solution else 0, seed=seed,
                              cpu_s=_cpu_s() - started, peak_rss_mb=_peak_rss_mb(),
                              error=error or ("" if solution else "no reconstruction"))
        if solution is not None and (best is None or good > best[1]):
            best = (solution, good)
            best_report = report
        elif best_report is None:
            best_report = report
        shutil.rmtree(attempt, ignore_errors=True)
        if good >= len(members):
            break
    assert best_report is not None
    best_report.cpu_s = _cpu_s() - first_started  # every seed tried, not only the kept one
    return (best[0] if best else None), best_report


def _implausible_camera(solution: WindowSolution) -> str:
    """Why a window's refined cameras cannot be right ("" when they can)."""
    for focal, k1, k2 in solution.cameras.values():
        if not FOCAL_BOUNDS[0] <= focal <= FOCAL_BOUNDS[1]:
            return f"implausible focal {focal:.3f} after bundle adjustment"
        if abs(k1) > MAX_ABS_K1 or abs(k2) > MAX_ABS_K1:
            return f"implausible distortion k1={k1:.3f}, k2={k2:.3f} after bundle adjustment"
    return ""


def _solution(model: Any, by_name: dict[str, int]) -> WindowSolution:
    """A pycolmap reconstruction as a `WindowSolution` (image ids instead of names)."""
    poses: dict[int, tuple[FloatArray, FloatArray]] = {}
    cameras: dict[int, tuple[float, float, float]] = {}
    colmap_ids: dict[int, int] = {}
    for colmap_id, image in model.images.items():
        image_id = by_name.get(image.name)
        if image_id is None or not image.has_pose:
            continue
        pose = image.cam_from_world()
        rotation = np.asarray(pose.rotation.matrix(), np.float64)
        centre = np.asarray(image.projection_center(), np.float64)
        poses[image_id] = (rotation, centre)
        camera = model.cameras[image.camera_id]
        params = [float(v) for v in camera.params]  # SIMPLE_RADIAL: f, cx, cy, k
        k1 = params[3] if len(params) > 3 else 0.0
        k2 = params[4] if len(params) > 4 else 0.0
        cameras[image_id] = (params[0] / max(camera.width, camera.height), k1, k2)
        colmap_ids[colmap_id] = image_id
    xyz: list[Any] = []
    colors: list[Any] = []
    seen: dict[int, list[int]] = {}
    for point in model.points3D.values():
        index = len(xyz)
        xyz.append(point.xyz)
        colors.append(point.color)
        for element in point.track.elements:
            image_id = colmap_ids.get(element.image_id)
            if image_id is not None:
                seen.setdefault(image_id, []).append(index)
    return WindowSolution(
        poses, cameras,
        np.asarray(xyz, np.float64).reshape(-1, 3),
        np.asarray(colors, np.uint8).reshape(-1, 3),
        {i: np.asarray(v, np.int64) for i, v in seen.items()},
    )


def _cluster_points(windows: Sequence[WindowSolution | None], window_enu: dict[int, Similarity],
                    max_points: int) -> dict[str, dict[str, Any]]:
    """The points of every placed window in ENU (at most `max_points`, evenly thinned)."""
    clouds = [(window_enu[index].apply(window.points), window.colors)
              for index, window in enumerate(windows)
              if window is not None and index in window_enu and len(window.points)]
    if not clouds:
        return {}
    xyz = np.concatenate([c[0] for c in clouds])
    rgb = np.concatenate([c[1] for c in clouds])
    if len(xyz) > max_points > 0:
        keep = np.linspace(0, len(xyz) - 1, max_points).astype(np.int64)
        xyz, rgb = xyz[keep], rgb[keep]
    return {str(n): {"color": [int(c) for c in rgb[n]],
                     "coordinates": [round(float(v), 3) for v in xyz[n]]}
            for n in range(len(xyz))}
