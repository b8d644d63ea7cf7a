"""wayview.pipeline.sfm_job: structure from motion as a durable job per sequence.

An upload or import stores a sequence with the GPS-track positions (`TrackPositioner`, at once,
so the sequence is visible) and, when `pipeline.positioner` resolves to `sfm`, queues an `sfm`
job for it. The job (`solve_sequence`) reads the sequence's public 2048-px derivatives and those
of up to `sfm_max_neighbours` images of other sequences within `merge_radius_m`, runs
`wayview.pipeline.sfm.reconstruct` in a worker thread, and then writes, in this order:

1. each registered image's mesh (from the points it sees) and the sequence's `sfm_cluster`
   (points, shots of the sequence and of its neighbours); images that fell back get the flat
   mesh again, so a mesh always matches its image's `atomic_scale`;
2. the computed fields of every image (`Store.set_computed_fields`, one transaction), and the
   map features around the sequence placed again from the new poses;
3. a private report (`sfm_report_key`): counts, windows, and each fallback with its reason,
   shown by `wayview sfm-report` and logged.

Running it again gives the same result (the same seeds, to run-to-run noise of a metre). An
attempt checkpoints its features, matches and each solved window under
`<data_dir>/work/sfm/`: a job whose worker died is taken over and resumes from there (on the
same machine; elsewhere it starts again from the stored images). A sequence deleted meanwhile is
a no-op.
`wayview reprocess --stage sfm` queues it for stored sequences.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from wayview import metrics
from wayview.blobs.base import BlobStore, cluster_blob_key, image_blob_key, sfm_report_key
from wayview.errors import InvalidInput
from wayview.model.entities import (
    ASSET_CLUSTER,
    ASSET_MESH,
    ComputedFields,
    Image,
    ImageSearch,
)
from wayview.pipeline.jobs import JobContext, job_handler
from wayview.pipeline.perception import update_map_features
from wayview.pipeline.process import padded_bbox, shot_input
from wayview.pipeline.sfm import SfmImage, SfmOptions, SfmResult, reconstruct, sfm_unavailable
from wayview.pipeline.sfm_assets import encode_cluster, encode_mesh, image_plane_mesh
from wayview.settings import PipelineSettings
from wayview.store.base import Store

__all__ = [
    "SFM_JOB",
    "SfmReport",
    "enqueue_sfm",
    "positioner_in_use",
    "read_report",
    "sfm_work_root",
    "solve_sequence",
]

log = logging.getLogger("wayview.pipeline")

SFM_JOB = "sfm"
#: Stored images read around a sequence to find its neighbours.
_NEIGHBOURS_LIMIT = 5000
_logged_fallback = False


def positioner_in_use(settings: PipelineSettings) -> str:
    """`track` or `sfm`: what `pipeline.positioner` means on this machine.

    `auto` is `sfm` when pycolmap is installed, else `track` (said once in the log). An
    explicit `sfm` stays `sfm` without pycolmap (the jobs wait, parked, for a worker that has
    it; said once in the log as an error).
    """
    global _logged_fallback
    if settings.positioner == "track":
        return "track"
    reason = sfm_unavailable()
    if reason is None:
        return "sfm"
    if not _logged_fallback:
        _logged_fallback = True
        if settings.positioner == "sfm":
            log.error("pipeline.positioner is sfm, but %s: sfm jobs are parked until a "
                      "worker with pycolmap retries them (wayview jobs retry)", reason)
        else:
            log.info("computed positions come from the GPS track (pipeline.positioner=auto):"
                     " %s", reason)
    return "sfm" if settings.positioner == "sfm" else "track"


async def enqueue_sfm(settings: PipelineSettings, store: Store, sequence_id: str) -> bool:
    """Queue the SfM job of a stored sequence when SfM is in use; whether it was queued."""
    if positioner_in_use(settings) != "sfm":
        return False
    await store.enqueue_job(SFM_JOB, {"sequence_id": sequence_id},
                            dedupe_key=f"{SFM_JOB}:{sequence_id}")
    return True


@dataclass(slots=True)
class SfmReport:
    """What the last SfM run of a sequence did (stored as JSON, never served)."""

    sequence_id: str
    finished_at_ms: int
    images: int
    registered: int
    neighbours: int
    points: int
    cpu_s: float
    fallbacks: dict[str, str]
    windows: list[dict[str, Any]]

    def to_json(self) -> bytes:
        return orjson.dumps({
            "sequence_id": self.sequence_id, "finished_at_ms": self.finished_at_ms,
            "images": self.images, "registered": self.registered,
            "neighbours": self.neighbours, "points": self.points,
            "cpu_s": round(self.cpu_s, 2), "fallbacks": self.fallbacks,
            "windows": self.windows,
        }, option=orjson.OPT_INDENT_2)


def sfm_work_root(data_dir: Path) -> Path:
    """The local folder of SfM checkpoints (per sequence, removed after success)."""
    return data_dir / "work" / "sfm"


def read_report(blobs: BlobStore, sequence_id: str) -> dict[str, Any] | None:
    """The last SfM report of a sequence, or None when it never ran."""
    try:
        data = blobs.get_bytes(sfm_report_key(sequence_id))
    except (KeyError, FileNotFoundError):
        return None
    report = orjson.loads(data)
    return report if isinstance(report, dict) else None


def options_from(settings: PipelineSettings) -> SfmOptions:
    """The `reconstruct` tuning of `pipeline.sfm_*`."""
    return SfmOptions(
        window=settings.sfm_window, overlap=min(settings.sfm_window_overlap,
                                                settings.sfm_window - 1),
        match_overlap=settings.sfm_match_overlap, max_image_size=settings.sfm_max_image_size,
        max_features=settings.sfm_max_features, max_residual_m=settings.sfm_max_residual_m,
        seeds=settings.sfm_seeds, threads=settings.sfm_threads,
        max_points=settings.sfm_max_points,
    )


@metrics.timed_stage("sfm")
async def solve_sequence(settings: PipelineSettings, store: Store, blobs: BlobStore,
                         sequence_id: str, *, work_root: Path | None = None
                         ) -> SfmReport | None:
    """Run SfM on one stored sequence and store the results; None when it has no images.

    `work_root`: where the attempt keeps its checkpoints (features, matches, solved windows)
    so that a retry after a crash resumes; removed once the results are stored.
    """
    page = await store.search_images(ImageSearch(sequence_ids=(sequence_id,)))
    images = sorted(page.items, key=lambda im: (im.captured_at_ms, im.id))
    if not images:
        log.info("sfm: sequence %s has no images (deleted?): nothing to do", sequence_id)
        return None
    started = time.process_time()
    # Blob reads and writes run in threads: a stalled S3 must not block the event loop (and
    # with it the job's lease renewals, issue #22).
    own, missing = await asyncio.to_thread(_load, blobs, images)
    neighbours = await _neighbours(settings, store, blobs, images)
    fallbacks: dict[str, str] = {str(i): reason for i, reason in missing.items()}
    result: SfmResult | None = None
    options = options_from(settings)
    work_dir = None
    if work_root is not None:
        digest = hashlib.sha256(repr((sorted(im.shot.image_id for im in own),
                                      sorted(im.shot.image_id for im in neighbours),
                                      options)).encode()).hexdigest()[:16]
        work_dir = work_root / f"{sequence_id}-{digest}"
    if own:
        result = await asyncio.to_thread(reconstruct, [*own, *neighbours], options,
                                         work_dir=work_dir)
    by_id = {shot.image_id: shot for shot in result.shots} if result else {}
    if result:
        fallbacks.update({str(i): reason for i, reason in result.fallbacks.items()})
    written = await asyncio.to_thread(_write_assets, settings, blobs, sequence_id, images,
                                      result)
    fields: list[ComputedFields] = []
    for im in images:
        shot = by_id.get(im.id)
        if shot is None:
            continue  # no derivative to look at: it keeps what it has
        assets = im.assets
        if settings.meshes:
            assets |= ASSET_CLUSTER | (ASSET_MESH if im.id in written else 0)
        fields.append(ComputedFields(
            image_id=im.id, computed_lon=shot.lon, computed_lat=shot.lat,
            computed_altitude_m=shot.altitude_m,
            computed_compass_angle_deg=shot.compass_angle_deg % 360.0,
            computed_rotation=shot.rotation, atomic_scale=shot.atomic_scale,
            camera_parameters=shot.camera_parameters or im.camera_parameters,
            assets=assets,
        ))
    await store.set_computed_fields(fields)
    # Map features were placed from the GPS track at ingest: place them again from the poses.
    fresh = await store.get_images([im.id for im in images])
    await update_map_features(settings, store, [fresh[im.id] for im in images if im.id in fresh])
    report = SfmReport(
        sequence_id=sequence_id, finished_at_ms=int(time.time() * 1000), images=len(images),
        registered=result.registered if result else 0, neighbours=len(neighbours),
        points=len(result.cluster["points"]) if result else 0,
        cpu_s=time.process_time() - started, fallbacks=fallbacks,
        windows=[{"images": w.images, "registered": w.registered, "points": w.points,
                  "seed": w.seed, "cpu_s": round(w.cpu_s, 2), "error": w.error}
                 for w in (result.windows if result else [])],
    )
    await asyncio.to_thread(blobs.put_bytes, sfm_report_key(sequence_id), report.to_json())
    if work_root is not None:  # this attempt's checkpoints, and those of older settings
        for stale in work_root.glob(f"{sequence_id}-*"):
            shutil.rmtree(stale, ignore_errors=True)
    log.info("sfm: sequence %s: %d of %d images registered, %d neighbours, %d points, "
             "%.1f CPU-s", sequence_id, report.registered, report.images, report.neighbours,
             report.points, report.cpu_s)
    if fallbacks:
        log.warning("sfm: sequence %s: %d images keep their GPS-track position: %s",
                    sequence_id, len(fallbacks),
                    "; ".join(f"{i}: {r}" for i, r in sorted(fallbacks.items())[:20]))
    return report


def _load(blobs: BlobStore, images: Sequence[Image]
          ) -> tuple[list[SfmImage], dict[int, str]]:
    own: list[SfmImage] = []
    missing: dict[int, str] = {}
    for im in images:
        try:
            data = blobs.get_bytes(image_blob_key(im.id, "thumb_2048", im.media_version))
        except (KeyError, OSError) as exc:
            missing[im.id] = f"cannot read its 2048-px derivative: {exc}"
            continue
        own.append(SfmImage(shot_input(im), data, sequence_id=im.sequence_id))
    return own, missing


async def _neighbours(settings: PipelineSettings, store: Store, blobs: BlobStore,
                      images: Sequence[Image]) -> list[SfmImage]:
    """Up to `sfm_max_neighbours` images of other sequences within `merge_radius_m`, nearest
    first (an image with no 2048-px derivative is skipped)."""
    if settings.sfm_max_neighbours <= 0:
        return []
    radius = settings.merge_radius_m
    page = await store.search_images(ImageSearch(bbox=padded_bbox(images, radius),
                                                 limit=_NEIGHBOURS_LIMIT))
    sequence_id = images[0].sequence_id
    own_lon = np.array([im.lon for im in images])
    own_lat = np.array([im.lat for im in images])
    scored: list[tuple[float, int, Image, tuple[float, float, float | None]]] = []
    for other in page.items:
        if other.sequence_id == sequence_id:
            continue
        lon = other.computed_lon if other.computed_lon is not None else other.lon
        lat = other.computed_lat if other.computed_lat is not None else other.lat
        alt = other.computed_altitude_m if other.computed_altitude_m is not None \
            else other.altitude_m
        kx = 111_320.0 * math.cos(math.radians(lat))
        distance = float(np.min(np.hypot((lon - own_lon) * kx, (lat - own_lat) * 111_320.0)))
        if distance <= radius:
            scored.append((distance, other.id, other, (lat, lon, alt)))
    scored.sort(key=lambda entry: (entry[0], entry[1]))
    candidates = [(other, at) for _, _, other, at in scored]
    return await asyncio.to_thread(_load_neighbours, blobs, candidates,
                                   settings.sfm_max_neighbours)


def _load_neighbours(blobs: BlobStore,
                     candidates: Sequence[tuple[Image, tuple[float, float, float | None]]],
                     limit: int) -> list[SfmImage]:
    """The first `limit` candidates that have a 2048-px derivative, with its bytes."""
    out: list[SfmImage] = []
    for other, at in candidates:
        if len(out) >= limit:
            break
        try:
            data = blobs.get_bytes(image_blob_key(other.id, "thumb_2048", other.media_version))
        except (KeyError, OSError):
            continue
        out.append(SfmImage(shot_input(other), data, neighbour_at=at,
                            sequence_id=other.sequence_id))
    return out


def _write_assets(settings: PipelineSettings, blobs: BlobStore, sequence_id: str,
                  images: Sequence[Image], result: SfmResult | None) -> set[int]:
    """Meshes and the cluster of a solved sequence; the ids that have a mesh."""
    if not settings.meshes or result is None:
        return set()
    with_mesh: set[int] = set()
    by_id = {im.id: im for im in images}
    for shot in result.shots:
        im = by_id[shot.image_id]
        if im.camera_type == "spherical":
            continue
        mesh = result.meshes.get(shot.image_id)
        if mesh is None:
            params = shot.camera_parameters or im.camera_parameters or (0.85, 0.0, 0.0)
            try:
                mesh = image_plane_mesh(im.width, im.height, params)
            except ValueError:  # a distortion that cannot be inverted: the plane without it
                mesh = image_plane_mesh(im.width, im.height, (max(params[0], 0.1), 0.0, 0.0))
        blobs.put_bytes(image_blob_key(shot.image_id, "mesh"), encode_mesh(*mesh))
        with_mesh.add(shot.image_id)
    blobs.put_bytes(cluster_blob_key(sequence_id), encode_cluster([result.cluster]))
    return with_mesh


@job_handler(SFM_JOB)
async def run_sfm_job(ctx: JobContext, payload: dict[str, object]) -> None:
    """The `sfm` job: `solve_sequence` for `payload["sequence_id"]`."""
    sequence_id = payload.get("sequence_id")
    if not isinstance(sequence_id, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}",
                                                            sequence_id):
        raise InvalidInput("an sfm job needs a sequence_id (a sequence key)")
    reason = sfm_unavailable()
    if reason is not None:
        raise InvalidInput(f"this worker cannot run SfM: {reason}")
    await solve_sequence(ctx.settings.pipeline, ctx.store, ctx.blobs, sequence_id,
                         work_root=sfm_work_root(ctx.settings.data_dir))
