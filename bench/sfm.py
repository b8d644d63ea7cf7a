"""bench/sfm.py: structure from motion against the GPS track, on real photos (issue #16).

    .venv/bin/python bench/sfm.py [--seeds 3] [--quick] [--lengths 15,30,60,120] [--write-docs]

Needs the `sfm` extra (`pip install 'wayview[sfm]'`, pycolmap) and the shared photos in
../shared/data (see SOURCE.txt there); PyAV (`av`, a core dependency; `pip install av` if it
is missing) decodes the GoPro video. A section whose data or package is missing is skipped
with the reason.

One table per section; every baseline is measured in the same run:

- **lund**: the 29 Lund photos (one walk) through `reconstruct` with the shipped
  `pipeline.sfm_*` settings, `--seeds` times (`SfmOptions` has no seed offset: the runs are
  repeated calls, which differ when the mapper runs multi-threaded; each run is a row and the
  range is given), against the raw GPS (with the
  phone's compass) and `TrackPositioner` (GPS smoothing): images registered, heading against
  the direction of travel, smoothness of the track, distance to the raw GPS, CPU per image
  (feature extraction / matching / mapping) and peak RSS;
- **berlin**: the 3 Berlin photos against OpenSfM's own `reconstruction_example.json`:
  relative rotation and translation direction of each image pair (target ≤ 1°), and the
  camera centres after a similarity fit (shape) and as placed (both are GPS-registered);
  `TrackPositioner` and the raw GPS + compass are the baselines;
- **gopro**: 15, 30, 60 and 120 frames taken evenly along the GPS5 track of the GoPro MAX sample
  (`gopro_max_sample/max-heromode.mp4`, ~11 s of a pavement walk) with wayview's own video
  path (`plan_frames` + `write_frames`, GPMF parser), then `reconstruct`: how registration,
  CPU per image and memory grow with the sequence length and the number of windows.

Inputs follow the product path: metadata from `read_photo_metadata` (the importer's reader,
with its default camera when the file has none), pixels from the `thumb_2048` derivative
(`make_derivatives`), as the sfm job reads them. Each reconstruction runs in a fresh process
(spawned), so its peak RSS is its own; CPU is process time (all threads), not wall time.
`--quick`: one run, Lund and Berlin only.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import multiprocessing
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(BENCH))

from cpumeter import CpuMeter  # noqa: E402
from machine import cpu_model, memory_gib, sh  # noqa: E402

from wayview.ingest.exif import read_photo_metadata  # noqa: E402
from wayview.ingest.importer import DEFAULT_CAMERA_PARAMETERS  # noqa: E402
from wayview.pipeline.positions import (  # noqa: E402
    ShotInput,
    TrackPositioner,
    angle_axis_to_matrix,
    enu_to_lla,
    lla_to_enu,
    rotation_from_heading,
)
from wayview.pipeline.sfm import SfmImage, reconstruct, sfm_unavailable  # noqa: E402
from wayview.pipeline.sfm_job import options_from  # noqa: E402
from wayview.pipeline.thumbnails import make_derivatives  # noqa: E402
from wayview.settings import PipelineSettings  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
LUND, BERLIN, GOPRO = Path(), Path(), Path()


def use_shared(folder: Path) -> None:
    """Read the photos and the video from `folder` (default ../shared/data)."""
    global SHARED, LUND, BERLIN, GOPRO
    SHARED = folder
    LUND = folder / "opensfm_lund"
    BERLIN = folder / "opensfm_berlin"
    GOPRO = folder / "gopro_max_sample" / "max-heromode.mp4"


use_shared(SHARED)
DOCS = ROOT / "docs" / "performance.md"
START, END = "<!-- bench/sfm.py:start -->", "<!-- bench/sfm.py:end -->"
HEADING = "## Structure from motion (issue #16)"
SECTIONS = ("lund", "berlin", "gopro")
#: The modules whose code the numbers describe; a run notices when they change under it.
WATCHED = ("sfm.py", "sfm_geometry.py", "sfm_assets.py", "positions.py")
PIPELINE_SRC = ROOT / "src" / "wayview" / "pipeline"
#: (digest of WATCHED at the start, runs that saw another one)
SOURCE_CHECK: tuple[str, list[str]] = ("", [])


def source_digest(folder: Path) -> str:
    """Short SHA-256 of the watched pipeline modules in `folder`."""
    digest = hashlib.sha256()
    for name in WATCHED:
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()[:12]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- inputs (the product path) ---------------------------------------------------------------


def photo_image(image_id: int, data: bytes) -> SfmImage:
    """A photo as the sfm job sees it: the importer's metadata, the 2048-px derivative."""
    meta = read_photo_metadata(data)
    params = meta.camera_parameters
    if params is None and meta.camera_type != "spherical":
        params = DEFAULT_CAMERA_PARAMETERS
    shot = ShotInput(
        image_id=image_id, captured_at_ms=meta.captured_at_ms, lon=meta.lon, lat=meta.lat,
        altitude_m=meta.altitude_m, compass_angle_deg=meta.compass_angle_deg,
        camera_type=meta.camera_type, width=meta.width, height=meta.height,
        exif_orientation=meta.exif_orientation,
        focal_35mm=params[0] * 36.0 if params else None, make=meta.make, model=meta.model)
    return SfmImage(shot, make_derivatives(data)["thumb_2048"], sequence_id="bench")


def folder_images(paths: Sequence[Path]) -> list[SfmImage]:
    return [photo_image(k + 1, path.read_bytes()) for k, path in enumerate(paths)]


def gopro_frames(count: int, out_dir: Path) -> tuple[list[Path], str]:
    """`count` frames evenly along the video's GPS track, written by wayview's video path."""
    from wayview.ingest.video import read_telemetry
    from wayview.ingest.video.frames import write_frames
    from wayview.ingest.video.sampling import plan_frames
    from wayview.model.geo import haversine_m

    telemetry, duration_s, start_s = read_telemetry(GOPRO)
    points = telemetry.points
    total_m = sum(haversine_m(a.lat, a.lon, b.lat, b.lon) for a, b in pairwise(points))
    # Just under total/(count-1), so float rounding cannot drop the last frame.
    distance_m = total_m / max(1, count - 1) * (1 - 1e-9)
    plans = plan_frames(points, distance_m=distance_m, start_epoch_s=start_s or 0.0,
                        duration_s=duration_s or None, max_frames=count)
    paths = write_frames(GOPRO, plans, out_dir, make=telemetry.make, model=telemetry.model)
    about = (f"{telemetry.source.upper()} track of {len(points)} fixes, {total_m:.1f} m in "
             f"{duration_s:.1f} s; camera {telemetry.make} {telemetry.model}")
    return paths, about


# --- one reconstruction in its own process ---------------------------------------------------


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_mb() -> float:
    from wayview.pipeline.limits import peak_rss_mb

    return peak_rss_mb()


def _reconstruct_job(images: list[SfmImage]) -> dict[str, Any]:
    """Run in a spawned process: `reconstruct` with the shipped settings, and what it cost.

    `point_mesh` is watched (not changed): the images whose refined radial distortion it
    could not invert over the picture (wide-angle cameras) are counted. When `reconstruct`
    raises, the error is returned instead of the result.
    """
    import pycolmap  # noqa: F401  (imported before the baseline RSS is read)

    from wayview.pipeline import sfm as sfm_module

    shipped = sfm_module.point_mesh
    mesh_errors: list[str] = []

    def watched(*args: Any, **kwargs: Any) -> Any:
        try:
            return shipped(*args, **kwargs)
        except ValueError as exc:
            mesh_errors.append(str(exc))
            raise

    sfm_module.point_mesh = watched  # type: ignore[assignment]
    source = source_digest(Path(sfm_module.__file__).parent)
    options = options_from(PipelineSettings())
    baseline_mb = _rss_mb()
    cpu, wall = _cpu_s(), time.perf_counter()
    try:
        result = reconstruct(images, options)
    except Exception as exc:  # reported in the table, never hidden
        return {"error": f"{type(exc).__name__}: {exc}", "mesh_errors": mesh_errors,
                "source": source,
                "process_cpu_s": _cpu_s(), "cpu_s": _cpu_s() - cpu,
                "peak_rss_mb": _rss_mb()}
    cpu, wall = _cpu_s() - cpu, time.perf_counter() - wall
    return {
        "shots": {s.image_id: (s.lat, s.lon, s.altitude_m, s.compass_angle_deg,
                               tuple(s.rotation), tuple(s.translation)) for s in result.shots},
        "reference": result.reference_lla,
        "fallbacks": dict(result.fallbacks),
        "registered": result.registered,
        "points": len(result.cluster.get("points", {})),
        "windows": [asdict(w) for w in result.windows],
        "cpu_s": cpu, "wall_s": wall,
        "extraction_cpu_s": result.extraction_cpu_s,
        "matching_cpu_s": result.matching_cpu_s,
        "baseline_rss_mb": baseline_mb, "peak_rss_mb": _rss_mb(),
        "options": asdict(options),
        "mesh_errors": mesh_errors,
        "source": source,
        "meshes": len(result.meshes),
        "process_cpu_s": _cpu_s(),
        "cameras": sorted({tuple(round(v, 3) for v in s.camera_parameters or ())
                           for s in result.shots}),
    }


def run_isolated(images: list[SfmImage], label: str) -> dict[str, Any]:
    """`_reconstruct_job` in a fresh spawned process, after (at most 10 s of) waiting for a
    quiet machine; adds `other_cores`: what the rest of the machine used meanwhile."""
    meter = CpuMeter()
    meter.wait_quiet(limit_s=10.0, log=log)
    before = meter.snapshot()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        job = pool.submit(_reconstruct_job, images).result()
    after = meter.snapshot()
    wall = max(1e-9, after[0] - before[0])
    busy = after[1] - before[1]
    # after[3] - before[3]: this process and its reaped children (the worker) together.
    mine = max(after[3] - before[3], job["process_cpu_s"])
    job["other_cores"] = max(0.0, busy - mine) / wall
    if job["source"] != SOURCE_CHECK[0]:
        SOURCE_CHECK[1].append(label)
    return job


# --- geometry helpers ------------------------------------------------------------------------


def turn_deg(a: float, b: float) -> float:
    return abs((b - a + 180.0) % 360.0 - 180.0)


def travel_deg(xy: np.ndarray) -> np.ndarray:
    """Direction of each step i → i+1 (degrees clockwise from north)."""
    d = np.diff(xy, axis=0)
    return np.asarray(np.degrees(np.arctan2(d[:, 0], d[:, 1])) % 360.0)


def track_metrics(xy: np.ndarray, headings: Sequence[float], gps_xy: np.ndarray
                  ) -> dict[str, float]:
    """Heading against the next step's direction (median), mean turn per step, RMS to GPS."""
    travel = travel_deg(xy)
    return {
        "heading_vs_travel": float(np.median([turn_deg(h, t) for h, t in
                                              zip(headings[:-1], travel, strict=True)])),
        "turn": float(np.mean([turn_deg(a, b) for a, b in
                               zip(travel[:-1], travel[1:], strict=True)])),
        "rms_to_gps": float(np.sqrt(np.mean(np.sum((xy - gps_xy) ** 2, axis=1)))),
    }


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Umeyama: (s, R, t) minimising |s R src + t - dst|."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, d, vt = np.linalg.svd(b.T @ a / len(src))
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2, 2] = -1
    r = u @ sign @ vt
    s = float(np.trace(np.diag(d) @ sign) / (a ** 2).sum(1).mean())
    return s, r, mu_d - s * r @ mu_s


def angle_deg(r: np.ndarray) -> float:
    return math.degrees(math.acos(max(-1.0, min(1.0, (float(np.trace(r)) - 1) / 2))))


def rng(values: Sequence[float], fmt: str = "{:.1f}") -> str:
    """"a" or "a–b" over runs."""
    lo, hi = min(values), max(values)
    return fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else \
        f"{fmt.format(lo)}–{fmt.format(hi)}"


# --- sections --------------------------------------------------------------------------------


def lund_section(runs: int) -> list[str]:
    paths = sorted((LUND / "images").glob("*.jpg"))
    images = folder_images(paths)
    shots = [im.shot for im in images]
    ref = (shots[0].lat, shots[0].lon, 0.0)

    def xy(lat_lon: Sequence[tuple[float, float]]) -> np.ndarray:
        return np.array([lla_to_enu(lat, lon, 0.0, ref)[:2] for lat, lon in lat_lon])

    gps = xy([(s.lat, s.lon) for s in shots])
    rows: list[tuple[str, dict[str, Any]]] = []
    sfm_runs: list[dict[str, Any]] = []
    failures: list[str] = []
    for k in range(runs):
        log(f"  lund: reconstruct, run {k + 1}/{runs} …")
        job = run_isolated(images, f"Lund run {k + 1}")
        if "error" in job:
            failures.append(failure(f"run {k + 1}", job))
            continue
        solved = [job["shots"][s.image_id] for s in shots]
        m = track_metrics(xy([(v[0], v[1]) for v in solved]), [v[3] for v in solved], gps)
        job["metrics"] = m
        job["headings"] = [v[3] for v in solved]
        job["xy"] = xy([(v[0], v[1]) for v in solved])
        sfm_runs.append(job)
        rows.append((f"SfM run {k + 1}", job))
    cpu = time.process_time()
    track = TrackPositioner().solve(shots)
    track_cpu = time.process_time() - cpu
    by_id = {s.image_id: s for s in track.shots}
    track_xy = xy([(by_id[s.image_id].lat, by_id[s.image_id].lon) for s in shots])
    track_headings = [by_id[s.image_id].compass_angle_deg for s in shots]
    raw_headings = [s.compass_angle_deg or 0.0 for s in shots]
    baselines = [("TrackPositioner (GPS smoothing)", track_metrics(track_xy, track_headings, gps),
                  track_headings, track_cpu),
                 ("raw GPS + phone compass", track_metrics(gps, raw_headings, gps),
                  raw_headings, 0.0)]

    n = len(shots)
    head = ("| positions | registered | heading vs travel, median ° | vs SfM heading, median ° | "
            "mean turn per step ° | RMS to raw GPS m | CPU s/image | extraction / matching / "
            "mapping s/image | wall s | peak RSS MB | windows: registered/images (seed) |")
    lines = ["### Lund: 29 photos of one walk", "",
             f"{n} photos (1024 × 768, iPhone 4S, one walk of ~3 min), `reconstruct` with the "
             "shipped settings, each run in a fresh process. *heading vs travel*: the computed "
             "compass angle of image i against the direction from i to i + 1 of the same row's "
             "track; *vs SfM heading*: against the compass angle of SfM run 1; *mean turn*: how "
             "much the direction of travel changes from one step to the next (a walk along "
             "streets: small); *RMS to raw GPS*: horizontal distance to the photo's own GPS fix. "
             "*mapping* = the run's CPU minus extraction and matching (GLOMAP on every window, "
             "seed retries included, chaining, the GPS fit and the meshes).", "",
             head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    if not sfm_runs:
        return [*lines[:2], *failures]
    runs = len(sfm_runs)
    ref_headings = sfm_runs[0]["headings"]
    for label, job in rows:
        m = job["metrics"]
        vs_sfm = float(np.median([turn_deg(a, b) for a, b in
                                  zip(job["headings"], ref_headings, strict=True)]))
        mapping = job["cpu_s"] - job["extraction_cpu_s"] - job["matching_cpu_s"]
        windows = ", ".join(f"{w['registered']}/{w['images']} ({w['seed']})"
                            for w in job["windows"])
        lines.append(
            f"| {label} | **{job['registered']}/{n}** | {m['heading_vs_travel']:.1f} | "
            f"{vs_sfm:.1f} | {m['turn']:.1f} | {m['rms_to_gps']:.1f} | "
            f"{job['cpu_s'] / n:.2f} | {job['extraction_cpu_s'] / n:.2f} / "
            f"{job['matching_cpu_s'] / n:.2f} / {mapping / n:.2f} | {job['wall_s']:.0f} | "
            f"{job['peak_rss_mb']:.0f} | {windows} |")
    if runs > 1:
        ms = [j["metrics"] for j in sfm_runs]
        lines.append(
            f"| SfM, range over {runs} runs | {rng([j['registered'] for j in sfm_runs], '{:.0f}')}"
            f"/{n} | {rng([m['heading_vs_travel'] for m in ms])} | | "
            f"{rng([m['turn'] for m in ms])} | {rng([m['rms_to_gps'] for m in ms])} | "
            f"{rng([j['cpu_s'] / n for j in sfm_runs], '{:.2f}')} | | "
            f"{rng([j['wall_s'] for j in sfm_runs], '{:.0f}')} | "
            f"{rng([j['peak_rss_mb'] for j in sfm_runs], '{:.0f}')} | |")
    for label, m, headings, cpu_s in baselines:
        vs_sfm = float(np.median([turn_deg(a, b) for a, b in
                                  zip(headings, ref_headings, strict=True)]))
        lines.append(f"| {label} | — | {m['heading_vs_travel']:.1f} | {vs_sfm:.1f} | "
                     f"{m['turn']:.1f} | {m['rms_to_gps']:.1f} | {cpu_s / n:.4f} | | | | |")
    lines.append("")
    spread_m = max(float(np.max(np.linalg.norm(a["xy"] - b["xy"], axis=1)))
                   for a in sfm_runs for b in sfm_runs)
    spread_deg = max(max(turn_deg(x, y) for x, y in zip(a["headings"], b["headings"],
                                                         strict=True))
                     for a in sfm_runs for b in sfm_runs)
    job = sfm_runs[0]
    lines.append(
        (f"Run to run ({runs} runs): an image's position differs by at most {spread_m:.2f} m "
         f"and its heading by at most {spread_deg:.2f}°. " if runs > 1 else "")
        + f"Baseline RSS of the worker process "
        f"(Python, numpy, pycolmap imported, photos loaded) {job['baseline_rss_mb']:.0f} MB. "
        f"Points in the cluster: {rng([j['points'] for j in sfm_runs], '{:,.0f}')}. Windows "
        f"of {job['options']['window']} images overlapping by {job['options']['overlap']}, "
        f"{job['options']['threads']} threads, features at ≤ "
        f"{job['options']['max_image_size']} px, ≤ {job['options']['max_features']:,} per "
        "image; *(seed)*: the seed of the attempt `reconstruct` kept (it retries a window "
        f"with the next seed, {job['options']['seeds']} seeds at most; a window failing every "
        "seed shows the last).")
    lines.append("")
    lines.append(notes(sfm_runs, [label.removeprefix("SfM ") for label, _ in rows]))
    lines += failures
    return lines


def berlin_section(runs: int) -> list[str]:
    import json

    manifest = json.loads((BERLIN / "manifest.json").read_text())
    [expected] = json.loads((BERLIN / "reconstruction_example.json").read_text())
    names = [Path(e["file"]).name for e in manifest["images"]]
    images = folder_images([BERLIN / e["file"] for e in manifest["images"]])
    shots = [im.shot for im in images]
    name_of = {im.shot.image_id: name for im, name in zip(images, names, strict=True)}
    theirs_ref = expected["reference_lla"]
    theirs_ref = (theirs_ref["latitude"], theirs_ref["longitude"], theirs_ref["altitude"])

    def pose(rotation: Sequence[float], translation: Sequence[float]
             ) -> tuple[np.ndarray, np.ndarray]:
        r = angle_axis_to_matrix(rotation)
        return r, -r.T @ np.asarray(translation, float)

    theirs = {name: pose(s["rotation"], s["translation"])
              for name, s in expected["shots"].items()}

    pairs = [("01.jpg", "02.jpg"), ("02.jpg", "03.jpg"), ("01.jpg", "03.jpg")]

    def compare(ours: dict[str, tuple[np.ndarray, np.ndarray]], ref: tuple[float, float, float]
                ) -> dict[str, Any]:
        out: dict[str, Any] = {"rot": [], "dir": []}
        for a, b in pairs:
            (ra, ca), (rb, cb) = ours[a], ours[b]
            (ea, eca), (eb, ecb) = theirs[a], theirs[b]
            out["rot"].append(angle_deg((rb @ ra.T).T @ (eb @ ea.T)))
            ours_dir = ra @ (cb - ca) / np.linalg.norm(cb - ca)
            theirs_dir = ea @ (ecb - eca) / np.linalg.norm(ecb - eca)
            out["dir"].append(math.degrees(math.acos(float(np.clip(ours_dir @ theirs_dir,
                                                                      -1, 1)))))
        src = np.array([ours[n][1] for n in names])
        dst = np.array([theirs[n][1] for n in names])
        s, r, t = similarity_fit(src, dst)
        out["fit"] = float(np.max(np.linalg.norm((s * (r @ src.T)).T + t - dst, axis=1)))
        out["scale"] = s
        # As placed: OpenSfM's centres moved into our ENU frame (both are GPS-registered).
        placed = lla_to_enu(*enu_to_lla(dst, theirs_ref).T, ref)
        out["placed"] = float(np.max(np.linalg.norm(src - placed, axis=1)))
        return out

    results: list[tuple[str, dict[str, Any]]] = []
    jobs = []
    failures: list[str] = []
    for k in range(runs):
        log(f"  berlin: reconstruct, run {k + 1}/{runs} …")
        job = run_isolated(images, f"Berlin run {k + 1}")
        if "error" in job:
            failures.append(failure(f"run {k + 1}", job))
            continue
        jobs.append(job)
        ours = {name_of[i]: pose(v[4], v[5]) for i, v in job["shots"].items()}
        results.append((f"SfM run {k + 1}", compare(ours, job["reference"])))
    track = TrackPositioner().solve(shots)
    ours = {name_of[s.image_id]: pose(s.rotation, s.translation) for s in track.shots}
    results.append(("TrackPositioner (GPS smoothing + compass)", compare(ours, track.reference_lla)))
    raw_ref = (shots[0].lat, shots[0].lon, shots[0].altitude_m or 0.0)
    raw = {}
    for s in shots:
        r = angle_axis_to_matrix(rotation_from_heading(s.compass_angle_deg or 0.0,
                                                       s.exif_orientation))
        raw[name_of[s.image_id]] = (r, lla_to_enu(s.lat, s.lon, s.altitude_m or 0.0, raw_ref))
    results.append(("raw GPS + phone compass", compare(raw, raw_ref)))

    lines = ["### Berlin: 3 photos against OpenSfM's reconstruction", "",
             "The 3 Berlin photos (3264 × 2448, iPhone 4S; the sfm job reads their 2048-px "
             "derivative) against `reconstruction_example.json` from OpenSfM's repository. Per "
             "image pair: the angle of the relative rotation R_b·R_aᵀ against OpenSfM's, and "
             "the angle between the directions to b seen from camera a (target ≤ 1° each). "
             "*shape*: the largest distance between the camera centres after the best "
             "similarity (scale, rotation, shift) onto OpenSfM's; *placed*: the largest distance "
             "as both place them on the map (both fit their cameras to the same GPS); *scale*: "
             "that similarity's scale (1 = the same metres).", "",
             "| poses | rotation 01–02 ° | 02–03 ° | 01–03 ° | direction 01→02 ° | 02→03 ° | "
             "01→03 ° | shape m | placed m | scale | registered |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for k, (label, c) in enumerate(results):
        registered = f"{jobs[k]['registered']}/3" if k < len(jobs) else "—"
        cells = [f"{v:.2f}" for v in c["rot"] + c["dir"]]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {c['fit']:.2f} | "
                     f"{c['placed']:.1f} | {c['scale']:.2f} | {registered} |")
    lines.append("")
    if not jobs:
        return [*lines, *failures]
    lines.append(f"Cost per SfM run: {rng([j['cpu_s'] for j in jobs])} CPU s "
                 f"({rng([j['extraction_cpu_s'] for j in jobs])} extraction, "
                 f"{rng([j['matching_cpu_s'] for j in jobs])} matching), "
                 f"{rng([j['wall_s'] for j in jobs])} s wall, peak RSS "
                 f"{rng([j['peak_rss_mb'] for j in jobs], '{:.0f}')} MB; "
                 f"{rng([j['points'] for j in jobs], '{:,.0f}')} points. "
                 + notes(jobs, [label.removeprefix("SfM ") for label, _ in results[:len(jobs)]]))
    lines += failures
    return lines


def gopro_section(lengths: Sequence[int]) -> list[str]:
    rows = []
    about = ""
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="wayview-bench-sfm-") as tmp:
        for count in lengths:
            out = Path(tmp) / f"n{count}"
            out.mkdir()
            paths, about = gopro_frames(count, out)
            images = folder_images(paths)
            shots = [im.shot for im in images]
            log(f"  gopro: {len(images)} frames, reconstruct …")
            job = run_isolated(images, f"GoPro {len(images)} frames")
            if "error" in job:
                failures.append(failure(f"{len(images)} frames", job))
                continue
            ref = (shots[0].lat, shots[0].lon, 0.0)
            gps = np.array([lla_to_enu(s.lat, s.lon, 0.0, ref)[:2] for s in shots])
            kept = [k for k, s in enumerate(shots) if s.image_id not in job["fallbacks"]]
            solved = [job["shots"][shots[k].image_id] for k in kept]
            sfm_xy = np.array([lla_to_enu(v[0], v[1], 0.0, ref)[:2] for v in solved])
            rms = (float(np.sqrt(np.mean(np.sum((sfm_xy - gps[kept]) ** 2, axis=1))))
                   if kept else float("nan"))
            # The frame's own heading is the GPS track's direction (plan_frames).
            heading = (float(np.median([turn_deg(v[3], shots[k].compass_angle_deg or 0.0)
                                        for v, k in zip(solved, kept, strict=True)]))
                       if kept else float("nan"))
            spacing = float(np.mean(np.linalg.norm(np.diff(gps, axis=0), axis=1)))
            rows.append((len(images), spacing, rms, heading, job))
    lines = ["### Cost growth: GoPro MAX video frames", "",
             f"`gopro_max_sample/max-heromode.mp4` ({about}; 848 × 480 frames of a walk on a "
             "pavement beside an office building, street-level). Frames taken evenly along the "
             "GPS track by wayview's own video path (`plan_frames` + `write_frames`: position, "
             "time and heading from the GPMF GPS5 track; no focal length in the frames, so the "
             "importer's default camera is the prior), then `reconstruct` with the shipped "
             "settings in a fresh process. The whole video covers only ~13 m, so longer "
             "sequences here are denser, not longer: the rows show cost against the number of "
             "images and windows, with more overlap between neighbours as they grow. *heading "
             "vs track*: the SfM compass angle against the frame's heading from the GPS track. "
             "*mapping per window*: GLOMAP CPU of one window (the attempt kept), mean. *RSS "
             "after each window*: the process's peak so far (ru_maxrss) when the window "
             "finished.", "",
             "| frames | spacing m | windows | registered | RMS to GPS m | heading vs track ° | "
             "CPU s/image | extraction / matching / mapping s/image | mapping per window s | "
             "wall s | peak RSS MB | RSS after each window MB | windows: registered/images "
             "(seed) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for n, spacing, rms, heading, job in rows:
        mapping = job["cpu_s"] - job["extraction_cpu_s"] - job["matching_cpu_s"]
        windows = ", ".join(f"{w['registered']}/{w['images']} ({w['seed']})"
                            for w in job["windows"])
        rss = ", ".join(f"{w['peak_rss_mb']:.0f}" for w in job["windows"])
        per_window = float(np.mean([w["cpu_s"] for w in job["windows"]]))
        lines.append(
            f"| {n} | {spacing:.2f} | {len(job['windows'])} | **{job['registered']}/{n}** | "
            f"{rms:.2f} | {heading:.1f} | {job['cpu_s'] / n:.2f} | "
            f"{job['extraction_cpu_s'] / n:.2f} / {job['matching_cpu_s'] / n:.2f} / "
            f"{mapping / n:.2f} | {per_window:.1f} | {job['wall_s']:.0f} | "
            f"{job['peak_rss_mb']:.0f} | {rss} | {windows} |")
    lines.append("")
    jobs = [row[-1] for row in rows]
    if jobs:
        lines.append(notes(jobs, [f"{row[0]} frames" for row in rows]))
    lines += failures
    return lines


def failure(label: str, job: dict[str, Any]) -> str:
    """The line for a run where `reconstruct` raised."""
    extra = (f" (`point_mesh` failed first for {len(job['mesh_errors'])} images)"
             if job["mesh_errors"] else "")
    return (f"**{label}: `reconstruct` raised `{job['error']}`**{extra} after "
            f"{job['cpu_s']:.0f} CPU s.")


def notes(jobs: Sequence[dict[str, Any]], labels: Sequence[str]) -> str:
    """Refined cameras, meshes that failed, fallbacks, failed windows and the other load."""
    out = []
    focals = [c[0] for j in jobs for c in j["cameras"]]
    k1s = [c[1] for j in jobs for c in j["cameras"] if len(c) > 1]
    if focals:
        out.append(f"Refined cameras: focal {rng(focals, '{:.3f}')}, k1 "
                   f"{rng(k1s, '{:.3f}')} (focal ÷ the longer side).")
    for job, label in zip(jobs, labels, strict=True):
        if job["mesh_errors"]:
            out.append(f"**{label}: `point_mesh` could not invert the refined distortion for "
                       f"{len(job['mesh_errors'])} images** (`{job['mesh_errors'][0]}`): "
                       f"{job['meshes']} point meshes for {len(job['shots'])} images.")
        if job["fallbacks"]:
            reasons: dict[str, int] = {}
            for why in job["fallbacks"].values():
                reasons[why] = reasons.get(why, 0) + 1
            out.append(f"{label}, fallbacks: " + "; ".join(
                f"{count} × {why}" for why, count in reasons.items()) + ".")
        errors = [f"window {k + 1} of {len(job['windows'])}: {w['error']} (seeds 0–{w['seed']})"
                  for k, w in enumerate(job["windows"]) if w["error"]]
        if errors:
            out.append(f"**{label}: " + "; ".join(errors) + "**.")
    out.append("Other processes on the machine used "
               f"{rng([j['other_cores'] for j in jobs], '{:.2f}')} cores during these runs.")
    return " ".join(out)


# --- report ----------------------------------------------------------------------------------


def machine_line() -> str:
    import pycolmap

    model = cpu_model()
    mem = memory_gib()
    commit = sh("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD") or "?"
    changed = sh("git", "-C", str(ROOT), "diff", "--name-only", "HEAD", "--",
                 "src/wayview/pipeline").split()
    source = f"src at {commit}" + (
        f" with uncommitted changes to {', '.join(changed)}" if changed else "")
    return (f"Machine: {os.cpu_count()} cores ({model}), {mem} GiB RAM, {platform.platform()}; "
            f"Python {platform.python_version()}, pycolmap {pycolmap.__version__}, numpy "
            f"{np.__version__}; {source}.")


def missing(section: str) -> str | None:
    """Why a section cannot run here, or None."""
    if section == "lund" and not (LUND / "images").is_dir():
        return f"the shared Lund photos are not at {LUND} (../shared beside the repository)"
    if section == "berlin" and not (BERLIN / "reconstruction_example.json").is_file():
        return f"the shared Berlin data is not at {BERLIN} (../shared beside the repository)"
    if section == "gopro":
        if not GOPRO.is_file():
            return f"the GoPro sample is not at {GOPRO} (../shared beside the repository)"
        try:
            import av  # noqa: F401
        except ImportError:
            return "PyAV is not installed (pip install av)"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3,
                        help="SfM runs of Lund and Berlin (each a fresh process; default 3)")
    parser.add_argument("--lengths", default="15,30,60,120",
                        help="GoPro frame counts, comma-separated (default 15,30,60,120)")
    parser.add_argument("--quick", action="store_true", help="one run, Lund and Berlin only")
    parser.add_argument("--only", choices=SECTIONS, action="append")
    parser.add_argument("--shared", type=Path, default=SHARED,
                        help="the shared data folder (default ../shared/data)")
    parser.add_argument("--write-docs", action="store_true",
                        help="replace the bench/sfm.py block of docs/performance.md")
    args = parser.parse_args()
    use_shared(args.shared.resolve())
    global SOURCE_CHECK
    SOURCE_CHECK = (source_digest(PIPELINE_SRC), [])
    runs = 1 if args.quick else max(1, args.seeds)
    wanted = args.only or [s for s in SECTIONS if not (args.quick and s == "gopro")]
    lengths = [int(v) for v in args.lengths.split(",") if v.strip()]
    why = sfm_unavailable()
    if why is not None:
        print(f"bench/sfm.py skipped: {why}")
        return
    out = [f"Made by `.venv/bin/python bench/sfm.py --write-docs"
           f"{' --quick' if args.quick else ''}` on "
           f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC. {machine_line()} CPU s are process time "
           "(all threads of the worker process); other load on the machine possible.", ""]
    sections: dict[str, Callable[[], list[str]]] = {
        "lund": lambda: lund_section(runs),
        "berlin": lambda: berlin_section(runs),
        "gopro": lambda: gopro_section(lengths),
    }
    for section in wanted:
        reason = missing(section)
        if reason is not None:
            out += [f"### {section}: skipped", "", f"Skipped: {reason}.", ""]
            log(f"[{section}: skipped: {reason}]")
            continue
        started = time.perf_counter()
        out += sections[section]()
        out.append("")
        log(f"[{section}: {time.perf_counter() - started:.0f} s]")
    if SOURCE_CHECK[1]:
        out.append(f"**Warning: {', '.join(f'src/wayview/pipeline/{n}' for n in WATCHED)} "
                   f"changed while this ran: {', '.join(SOURCE_CHECK[1])} measured other code "
                   "than the rest. Run again.**")
    text = "\n".join(out).rstrip() + "\n"
    print(text)
    if args.write_docs:
        write_docs(text)


def write_docs(text: str) -> None:
    """Replace the text between the bench/sfm.py markers (the section is made when missing)."""
    doc = DOCS.read_text()
    if START not in doc:
        doc = doc.rstrip() + f"\n\n{HEADING}\n\n{START}\n{END}\n"
    before, rest = doc.split(START, 1)
    _, after = rest.split(END, 1)
    DOCS.write_text(before + START + "\n" + text.rstrip() + "\n" + END + after)


if __name__ == "__main__":
    main()
