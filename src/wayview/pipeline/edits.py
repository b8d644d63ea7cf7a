"""wayview.pipeline.edits: owners correct their data (issue #17, "Correct").

One service for the API, the web pages and the CLI:

- `correct_image`: the compass angle, position or capture time of one image;
- `reorder_sequence`: a new order of a sequence's images, defined as a correction of capture
  times: the sequence's capture times, ascending, are given to its images in the order asked
  (made strictly increasing by a millisecond where two were equal);
- `split_sequence`: an image and every later one become a new sequence (a fresh key, as
  ingest makes them);
- `merge_sequences`: every image of one sequence joins another of the same creator and
  organization.

Each writes the store in one transaction (`wayview.store.parts.edits`: rows, both tile
indexes, epochs), then records the action in the audit log with its old and new values, then
queues a durable `reposition` job per touched sequence: computed positions are computed again
(`pipeline.positioner`: an `sfm` job, or the GPS track at once), the map features around the
sequence are placed again from the evidence, and the `sfm_cluster` of a sequence merged away
is deleted. Authorization is the caller's (`wayview.auth.permissions.may_manage_images`).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from datetime import UTC, datetime

import orjson

from wayview.auth.audit import audit
from wayview.blobs.base import cluster_blob_key, sfm_report_key
from wayview.errors import InvalidInput, InvalidParameter
from wayview.ids import new_sequence_key
from wayview.model.entities import (
    ComputedFields,
    EditedImages,
    Image,
    ImageCorrection,
    ImageSearch,
)
from wayview.pipeline.jobs import JobContext, job_handler
from wayview.pipeline.perception import update_map_features
from wayview.pipeline.process import reconstruct_sequence
from wayview.pipeline.sfm_job import enqueue_sfm, positioner_in_use
from wayview.settings import PipelineSettings
from wayview.store.base import Store

__all__ = [
    "REPOSITION_JOB",
    "correct_image",
    "merge_sequences",
    "parse_captured_at",
    "parse_correction",
    "reorder_sequence",
    "reposition",
    "sequence_images",
    "split_sequence",
]

log = logging.getLogger("wayview.pipeline")

REPOSITION_JOB = "reposition"
#: Capture times accepted: from 1970 to the year 2200.
_MAX_CAPTURED_MS = 7_258_118_400_000


def _number(name: str, text: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidParameter(name, "expected a number") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidParameter(name, f"expected a number from {low:g} to {high:g}")
    return value


def parse_captured_at(text: str) -> int:
    """Milliseconds since the epoch from ISO-8601 (no zone: UTC) or integer milliseconds.

    >>> parse_captured_at("2021-05-01T10:00:00Z"), parse_captured_at("1619863200000")
    (1619863200000, 1619863200000)
    >>> parse_captured_at("2021-05-01T12:00:00+02:00")
    1619863200000
    """
    text = text.strip()
    if text.isdigit():
        value = int(text)
    else:
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise InvalidParameter("captured_at", "expected ISO-8601 or milliseconds") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        value = round(when.timestamp() * 1000)
    if not 0 <= value <= _MAX_CAPTURED_MS:
        raise InvalidParameter("captured_at", "out of range")
    return value


def parse_correction(image_id: int, params: dict[str, object]) -> ImageCorrection:
    """An `ImageCorrection` from request parameters: `compass_angle`, `lon` + `lat` or
    `geometry` (a GeoJSON point, as an object or its JSON text), `captured_at`.

    Raises:
        InvalidParameter: nothing to correct, or a value is malformed (E9).

    >>> parse_correction(1, {"lon": "13.4", "lat": "52.5", "compass_angle": "370"})
    ImageCorrection(image_id=1, lon=13.4, lat=52.5, compass_angle_deg=10.0, captured_at_ms=None)
    """
    lon = lat = compass = None
    captured = None
    geometry = params.get("geometry")
    if isinstance(geometry, str):
        try:
            geometry = orjson.loads(geometry)
        except orjson.JSONDecodeError:
            raise InvalidParameter("geometry", "expected a GeoJSON point") from None
    if geometry is not None:
        coords = geometry.get("coordinates") if isinstance(geometry, dict) else None
        if (not isinstance(geometry, dict) or geometry.get("type") != "Point"
                or not isinstance(coords, list) or len(coords) < 2):
            raise InvalidParameter("geometry", "expected a GeoJSON point")
        lon = _number("geometry", str(coords[0]), -180.0, 180.0)
        lat = _number("geometry", str(coords[1]), -85.0511, 85.0511)
    elif "lon" in params or "lat" in params:
        if "lon" not in params or "lat" not in params:
            raise InvalidParameter("lon", "lon and lat go together")
        lon = _number("lon", str(params["lon"]), -180.0, 180.0)
        lat = _number("lat", str(params["lat"]), -85.0511, 85.0511)
    if params.get("compass_angle") not in (None, ""):
        compass = _number("compass_angle", str(params["compass_angle"]), -360.0, 720.0) % 360.0
    if params.get("captured_at") not in (None, ""):
        captured = parse_captured_at(str(params["captured_at"]))
    if lon is None and compass is None and captured is None:
        raise InvalidParameter("compass_angle", "give compass_angle, lon and lat, geometry "
                                                "or captured_at")
    return ImageCorrection(image_id, lon=lon, lat=lat, compass_angle_deg=compass,
                           captured_at_ms=captured)


async def sequence_images(store: Store, sequence_id: str) -> list[Image]:
    """A sequence's images in capture order (empty when it does not exist)."""
    page = await store.search_images(ImageSearch(sequence_ids=(sequence_id,)))
    return list(page.items)


def _values(c: ImageCorrection) -> dict[str, object]:
    out: dict[str, object] = {}
    if c.lon is not None and c.lat is not None:
        out["lon"], out["lat"] = c.lon, c.lat
    if c.compass_angle_deg is not None:
        out["compass_angle"] = c.compass_angle_deg
    if c.captured_at_ms is not None:
        out["captured_at"] = c.captured_at_ms
    return out


async def _corrected(settings: PipelineSettings, store: Store, images: dict[int, Image],
                     corrections: Sequence[ImageCorrection], actor_id: int | None
                     ) -> EditedImages:
    """Write corrections, log each changed image, queue the recomputation."""
    edited = await store.correct_images(corrections)
    wanted = {c.image_id: c for c in corrections}
    for old in edited.previous:
        new = wanted[old.image_id]
        before, after = _values(old), _values(new)
        image = images.get(old.image_id)
        await audit(store, "image.correct", actor_id=actor_id, target_kind="image",
                    target_id=old.image_id,
                    organization_id=image.organization_id if image else None,
                    old={k: before[k] for k in after}, new=after)
    await requeue(settings, store, edited)
    return edited


async def correct_image(settings: PipelineSettings, store: Store, image: Image,
                        correction: ImageCorrection, *, actor_id: int | None) -> EditedImages:
    """Correct one image (already authorised)."""
    return await _corrected(settings, store, {image.id: image}, [correction], actor_id)


async def reorder_sequence(settings: PipelineSettings, store: Store, sequence_id: str,
                           image_ids: Sequence[int], *, actor_id: int | None) -> EditedImages:
    """Put a sequence's images in the order given (every image once), by correcting their
    capture times.

    Raises:
        InvalidInput: `image_ids` is not a permutation of the sequence's images.
    """
    images = await sequence_images(store, sequence_id)
    if sorted(image_ids) != sorted(im.id for im in images):
        raise InvalidInput("image_ids must list every image of the sequence once")
    times = sorted(im.captured_at_ms for im in images)
    for k in range(1, len(times)):
        times[k] = max(times[k], times[k - 1] + 1)
    corrections = [ImageCorrection(i, captured_at_ms=t)
                   for i, t in zip(image_ids, times, strict=True)]
    return await _corrected(settings, store, {im.id: im for im in images}, corrections,
                            actor_id)


async def split_sequence(settings: PipelineSettings, store: Store, sequence_id: str,
                         at_image_id: int, *, actor_id: int | None) -> str:
    """Split a sequence at an image (already authorised); the new sequence's key."""
    images = await sequence_images(store, sequence_id)
    new_id = new_sequence_key()
    edited = await store.split_sequence(sequence_id, at_image_id, new_id)
    await audit(store, "sequence.split", actor_id=actor_id, target_kind="sequence",
                target_id=sequence_id,
                organization_id=images[0].organization_id if images else None,
                at_image_id=at_image_id, new_sequence_id=new_id,
                image_ids=list(edited.image_ids))
    await requeue(settings, store, edited)
    return new_id


async def merge_sequences(settings: PipelineSettings, store: Store, sequence_id: str,
                          other_id: str, *, actor_id: int | None) -> EditedImages:
    """Merge `other_id` into `sequence_id` (already authorised)."""
    images = await sequence_images(store, sequence_id)
    edited = await store.merge_sequences(sequence_id, other_id)
    await audit(store, "sequence.merge", actor_id=actor_id, target_kind="sequence",
                target_id=sequence_id,
                organization_id=images[0].organization_id if images else None,
                merged_sequence_id=other_id, image_ids=list(edited.image_ids))
    await requeue(settings, store, edited)
    return edited


async def requeue(settings: PipelineSettings, store: Store, edited: EditedImages) -> None:
    """Queue the `reposition` job of every sequence an edit touched."""
    for sequence_id in edited.sequence_ids:
        await store.enqueue_job(REPOSITION_JOB, {"sequence_id": sequence_id},
                                dedupe_key=f"{REPOSITION_JOB}:{sequence_id}")
    for sequence_id in edited.emptied_sequence_ids:
        await store.enqueue_job(REPOSITION_JOB, {"sequence_id": sequence_id},
                                dedupe_key=f"{REPOSITION_JOB}:{sequence_id}")


async def reposition(ctx: JobContext, sequence_id: str) -> None:
    """Compute a sequence's positions again and re-place the map features around it; a
    sequence that no longer exists loses its cluster and SfM report."""
    settings = ctx.settings.pipeline
    images = await sequence_images(ctx.store, sequence_id)
    if not images:
        await asyncio.to_thread(ctx.blobs.delete, cluster_blob_key(sequence_id))
        await asyncio.to_thread(ctx.blobs.delete, sfm_report_key(sequence_id))
        return
    if positioner_in_use(settings) == "sfm":
        await enqueue_sfm(settings, ctx.store, sequence_id)
    else:
        solved, _ = await reconstruct_sequence(settings, ctx.store, ctx.blobs, images)
        await ctx.store.set_computed_fields([_computed(im) for im in solved])
        images = await sequence_images(ctx.store, sequence_id)
    await update_map_features(settings, ctx.store, images)
    log.info("sequence %s repositioned after an edit (%d images)", sequence_id, len(images))


def _computed(im: Image) -> ComputedFields:
    """The computed fields `reconstruct_sequence` gave an image."""
    assert im.computed_lon is not None and im.computed_lat is not None
    assert im.computed_compass_angle_deg is not None and im.computed_rotation is not None
    return ComputedFields(
        image_id=im.id, computed_lon=im.computed_lon, computed_lat=im.computed_lat,
        computed_altitude_m=im.computed_altitude_m,
        computed_compass_angle_deg=im.computed_compass_angle_deg,
        computed_rotation=im.computed_rotation,
        atomic_scale=1.0 if im.atomic_scale is None else im.atomic_scale,
        camera_parameters=im.camera_parameters, assets=im.assets, merge_cc=im.merge_cc)


@job_handler(REPOSITION_JOB)
async def run_reposition_job(ctx: JobContext, payload: dict[str, object]) -> None:
    """The `reposition` job: `reposition` for `payload["sequence_id"]`."""
    sequence_id = payload.get("sequence_id")
    if not isinstance(sequence_id, str):
        raise InvalidInput("a reposition job needs a sequence_id")
    await reposition(ctx, sequence_id)
