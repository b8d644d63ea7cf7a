"""wayview.pipeline.perception: what the pipeline sees in a photo, and the map features it makes.

Per image (`Perceiver.look`, in the worker thread that derived the image): the configured
detectors (`pipeline.detectors`) and `quality_score` run on the uploaded photo decoded at most
2048 px wide (reduced DCT decoding), before blurring: a blurred patch must neither hide a sign
nor look like one. Only boxes and values come out of it; the unblurred pixels stay private.
`wayview reprocess` looks at the stored 2048-px derivative instead.

Per batch of stored images (`update_map_features`, after their rows are in): the detections
become sightings, are placed together with the stored detections of the same values nearby
(`pipeline.triangulate`), and the result is reconciled with the stored map features:

- a placed object whose evidence already belongs to a stored feature updates that feature
  (the one with most evidence, when several);
- otherwise a stored feature of the same value within `pipeline.feature_merge_radius_m` takes
  it in; otherwise it is a new feature;
- a stored feature left without evidence is deleted.

Everything is written by one `Store.apply_feature_changes`, which also invalidates the tiles.
Running it again over the same detections changes nothing (idempotent per image).
"""

from __future__ import annotations

import io
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from PIL import Image as PILImage

from wayview import metrics
from wayview.model.entities import (
    Detection,
    DetectionSearch,
    FeatureChanges,
    Image,
    MapFeature,
    MapFeatureSearch,
)
from wayview.pipeline.detectors import Found, open_detectors, run_detectors
from wayview.pipeline.positions import angle_axis_to_matrix
from wayview.pipeline.quality import measure_quality
from wayview.pipeline.thumbnails import pillow_errors
from wayview.pipeline.triangulate import (
    Placed,
    Sighting,
    TriangulationSettings,
    distance_m,
    place_sightings,
)
from wayview.settings import PipelineSettings
from wayview.store.base import Store

__all__ = ["Perceiver", "Perception", "update_map_features", "sighting_of"]

log = logging.getLogger("wayview.pipeline")

#: Photos are looked at this wide at most.
LOOK_WIDTH = 2048
#: Metres around a batch's images searched for stored detections and features.
CONTEXT_MARGIN_M = 150.0
#: Stored detections read as context for one batch, at most.
MAX_CONTEXT_DETECTIONS = 20_000
_POINT_PREFIXES = ("object--", "marking--", "construction--", "nature--", "void--")


@dataclass(frozen=True, slots=True)
class Perception:
    """What one photo showed."""

    found: tuple[Found, ...]
    quality_score: float | None


class Perceiver:
    """Detectors and the quality measure, built once per processor (models load once)."""

    def __init__(self, settings: PipelineSettings) -> None:
        self.detectors = open_detectors(settings)

    def look(self, jpeg: bytes) -> Perception:
        """Detections and quality of one JPEG, decoded at most `LOOK_WIDTH` wide (reduced
        DCT decoding: a large photo is never decoded at full size here).

        Raises:
            InvalidInput: the bytes are not a decodable JPEG ("corrupt image data: …").
        """
        with pillow_errors(), PILImage.open(io.BytesIO(jpeg)) as opened:
            if opened.width > LOOK_WIDTH:
                height = max(1, round(opened.height * LOOK_WIDTH / opened.width))
                opened.draft("RGB", (LOOK_WIDTH, height))
            image = opened.convert("RGB")
        if image.width > LOOK_WIDTH:
            height = max(1, round(image.height * LOOK_WIDTH / image.width))
            image = image.resize((LOOK_WIDTH, height), PILImage.Resampling.BILINEAR)
        found: tuple[Found, ...] = ()
        if self.detectors:
            try:
                found = tuple(run_detectors(self.detectors, image))
            except Exception:  # noqa: BLE001 - an operator's detector must not lose the photo
                log.exception("a detector failed; the image is kept without detections")
        return Perception(found, measure_quality(image).score)


def object_type(value: str) -> str:
    """`point` for street objects, `trafficsign` for signs.

    >>> object_type("regulatory--stop--g1"), object_type("object--fire-hydrant")
    ('trafficsign', 'point')
    """
    return "point" if value.startswith(_POINT_PREFIXES) else "trafficsign"


def _hfov_deg(image: Image) -> float:
    """Horizontal field of view of the displayed image from its focal (normalised by the
    larger side, as Mapillary's `camera_parameters`)."""
    if image.camera_type == "spherical" or image.is_pano:
        return 360.0
    focal = image.camera_parameters[0] if image.camera_parameters else 0.85
    width, height = image.width, image.height
    if image.exif_orientation in (5, 6, 7, 8):
        width, height = height, width
    focal_px = max(focal, 0.1) * max(width, height)
    return math.degrees(2 * math.atan(width / (2 * focal_px)))


def _displayed_span(d: Detection, orientation: int | None) -> tuple[float, float]:
    """(centre, width) of the detection along the displayed image's horizontal axis: the
    stored pixel grid is rotated by EXIF orientation before a person (or a ray) sees it."""
    us = [p[0] for ring in d.geometry for p in ring]
    vs = [p[1] for ring in d.geometry for p in ring]
    u0, u1, v0, v1 = min(us), max(us), min(vs), max(vs)
    if orientation in (3, 4):
        return 1 - (u0 + u1) / 2, u1 - u0
    if orientation in (6, 7):
        return 1 - (v0 + v1) / 2, v1 - v0
    if orientation in (5, 8):
        return (v0 + v1) / 2, v1 - v0
    return (u0 + u1) / 2, u1 - u0


def _pose_bearing(d: Detection, image: Image) -> float | None:
    """Compass bearing (degrees) of the ray through the detection's centre, from the image's
    `computed_rotation` and focal (None for panoramas or without a rotation).

    The rotation maps world (ENU) to the camera frame of the stored pixel grid (x right,
    y down, z forward), so EXIF orientation, pitch and roll are all accounted for; a level
    camera gives the same bearing as heading + angle in the picture.
    """
    if image.computed_rotation is None or image.camera_type == "spherical" or image.is_pano:
        return None
    us = [p[0] for ring in d.geometry for p in ring]
    vs = [p[1] for ring in d.geometry for p in ring]
    if not us:
        return None
    size = max(image.width, image.height, 1)
    focal = max(image.camera_parameters[0] if image.camera_parameters else 0.85, 0.1)
    x = ((min(us) + max(us)) / 2 - 0.5) * image.width / size / focal
    y = ((min(vs) + max(vs)) / 2 - 0.5) * image.height / size / focal
    ray = angle_axis_to_matrix(image.computed_rotation).T @ (x, y, 1.0)
    if math.hypot(float(ray[0]), float(ray[1])) < 1e-9:
        return None
    return math.degrees(math.atan2(float(ray[0]), float(ray[1]))) % 360.0


def sighting_of(d: Detection, image: Image) -> Sighting | None:
    """The ray of one detection, or None when its camera's heading is unknown."""
    heading = image.computed_compass_angle_deg
    if heading is None:
        heading = image.compass_angle_deg
    if heading is None:
        return None
    lon = image.computed_lon if image.computed_lon is not None else image.lon
    lat = image.computed_lat if image.computed_lat is not None else image.lat
    centre, width = _displayed_span(d, image.exif_orientation)
    bearing = _pose_bearing(d, image)
    if bearing is not None:  # the ray through the pose: exact for a tilted or rolled camera
        heading, centre = bearing, 0.5
    return Sighting(detection_id=d.id, image_id=image.id, value=d.value, lon=lon, lat=lat,
                    heading_deg=heading, u=centre, width_frac=max(width, 1e-4),
                    hfov_deg=_hfov_deg(image), captured_at_ms=image.captured_at_ms,
                    spherical=image.camera_type == "spherical" or image.is_pano)


def _bbox(images: Iterable[Image], margin_m: float) -> tuple[float, float, float, float]:
    lons = [im.lon for im in images]
    lats = [im.lat for im in images]
    dlat = margin_m / 111_195.0
    dlon = dlat / max(0.05, math.cos(math.radians((min(lats) + max(lats)) / 2)))
    return (max(-180.0, min(lons) - dlon), max(-90.0, min(lats) - dlat),
            min(180.0, max(lons) + dlon), min(90.0, max(lats) + dlat))


async def _context(store: Store, bbox: tuple[float, float, float, float],
                   values: tuple[str, ...]) -> list[Detection]:
    """Stored detections of `values` whose image lies in `bbox` (bounded)."""
    out: list[Detection] = []
    after: int | None = None
    while len(out) < MAX_CONTEXT_DETECTIONS:
        page = await store.search_detections(DetectionSearch(bbox=bbox, values=values,
                                                             limit=2000, after=after))
        out.extend(page.items)
        if page.next_after is None:
            break
        after = page.next_after[0]
    return out


@metrics.timed_stage("map_features")
async def update_map_features(settings: PipelineSettings, store: Store,
                              images: Sequence[Image], lost: Sequence[int] = ()
                              ) -> FeatureChanges:
    """Re-place the map features around `images` (already stored, with their detections).

    `lost`: features that lost evidence since (their detections were replaced or deleted);
    those left without any are deleted.
    """
    if not images or not settings.map_features:
        return FeatureChanges()
    own = await store.detections_for_images([im.id for im in images])
    values = tuple(sorted({d.value for ds in own.values() for d in ds}))
    if not values:
        changes = FeatureChanges(deletes=await _orphans(store, lost))
        await store.apply_feature_changes(changes)
        return changes
    bbox = _bbox(images, CONTEXT_MARGIN_M)
    detections = {d.id: d for d in await _context(store, bbox, values)}
    for ds in own.values():
        detections.update((d.id, d) for d in ds)
    by_image = await store.get_images(sorted({d.image_id for d in detections.values()}))
    sightings = []
    for d in detections.values():
        image = by_image.get(d.image_id)
        s = sighting_of(d, image) if image is not None else None
        if s is not None:
            sightings.append(s)
    placed = place_sightings(sightings, TriangulationSettings(
        merge_radius_m=settings.feature_merge_radius_m))
    stored = await _stored_features(store, bbox, values)
    changes = await _reconcile(store, settings, placed, detections, stored)
    in_use = {f.id for f in changes.upserts} | {fid for _, fid in changes.assignments}
    orphans = [fid for fid in await _orphans(store, lost) if fid not in in_use]
    if orphans:
        changes = FeatureChanges(changes.upserts, tuple(sorted({*changes.deletes, *orphans})),
                                 changes.assignments)
    await store.apply_feature_changes(changes)
    log.info("map features around %d images: %d placed, %d written, %d deleted",
             len(images), len(placed), len(changes.upserts), len(changes.deletes))
    return changes


async def _orphans(store: Store, lost: Sequence[int]) -> tuple[int, ...]:
    """Of the features in `lost`, those no detection is evidence of any more."""
    if not lost:
        return ()
    evidence = await store.detections_for_features(sorted(set(lost)))
    return tuple(fid for fid in sorted(set(lost)) if not evidence.get(fid))


async def _stored_features(store: Store, bbox: tuple[float, float, float, float],
                           values: tuple[str, ...]) -> dict[int, MapFeature]:
    out: dict[int, MapFeature] = {}
    after: int | None = None
    while True:
        page = await store.search_map_features(MapFeatureSearch(
            bbox=bbox, object_values=values, limit=2000, after=after))
        out.update((f.id, f) for f in page.items)
        if page.next_after is None or len(out) >= MAX_CONTEXT_DETECTIONS:
            return out
        after = page.next_after[0]


async def _reconcile(store: Store, settings: PipelineSettings, placed: list[Placed],
                     detections: dict[int, Detection], stored: dict[int, MapFeature]
                     ) -> FeatureChanges:
    upserts: list[MapFeature] = []
    assignments: list[tuple[int, int | None]] = []
    used: set[int] = set()
    new_needed: list[Placed] = []
    chosen: list[tuple[Placed, int | None]] = []
    for item in sorted(placed, key=lambda p: -len(p.sightings)):
        votes: dict[int, int] = {}
        for s in item.sightings:
            fid = detections[s.detection_id].map_feature_id
            if fid is not None and fid in stored and fid not in used:
                votes[fid] = votes.get(fid, 0) + 1
        target = max(votes, key=lambda f: (votes[f], -f)) if votes else None
        if target is None:
            near = [f for f in stored.values() if f.id not in used
                    and f.object_value == item.value
                    and distance_m(f.lon, f.lat, item.lon, item.lat)
                    <= settings.feature_merge_radius_m]
            if near:
                target = min(near, key=lambda f: distance_m(f.lon, f.lat, item.lon,
                                                            item.lat)).id
        if target is not None:
            used.add(target)
        else:
            new_needed.append(item)
        chosen.append((item, target))
    new_ids = iter(await store.reserve_ids("map_feature", len(new_needed))
                   if new_needed else [])
    for item, target in chosen:
        fid = target if target is not None else next(new_ids)
        feature = MapFeature(
            id=fid, object_value=item.value, object_type=object_type(item.value),
            lon=item.lon, lat=item.lat, first_seen_at_ms=item.first_seen_at_ms,
            last_seen_at_ms=item.last_seen_at_ms,
            aligned_direction_deg=round(item.aligned_direction_deg, 1))
        if target is None or stored[target] != feature:
            upserts.append(feature)
        for s in item.sightings:
            if detections[s.detection_id].map_feature_id != fid:
                assignments.append((s.detection_id, fid))
    # Stored features in the area that kept none of their evidence (their detections were
    # re-assigned or are gone) are deleted.
    keeps = {fid for _, fid in assignments if fid is not None} | used
    evidence = await store.detections_for_features(sorted(stored))
    moved = {did for did, _ in assignments}
    deletes = tuple(sorted(
        fid for fid in stored
        if fid not in keeps and evidence.get(fid)
        and all(d.id in moved for d in evidence[fid])))
    return FeatureChanges(upserts=tuple(upserts), deletes=deletes,
                          assignments=tuple(assignments))


def detections_from(image_id: int, found: Iterable[Found], ids: Iterable[int],
                    now_ms: int | None = None) -> list[Detection]:
    """Detection rows for what a photo showed (ids reserved by the caller)."""
    created = int(time.time() * 1000) if now_ms is None else now_ms
    return [Detection(id=did, image_id=image_id, value=f.value, geometry=(f.polygon,),
                      created_at_ms=created)
            for f, did in zip(found, ids, strict=True)]
