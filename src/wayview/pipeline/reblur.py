"""wayview.pipeline.reblur: people fix an image's privacy blurring (issue #17, "Re-blur").

An image's managers (`wayview.auth.permissions.may_manage_images`) and its moderators
(`may_moderate`) add regions to blur (rectangles, polygons) and remove regions the blurrer found
(a traffic sign taken for a face). Everything public made of the pixels (thumbnails, the public
original, the pyramid tiles) is then rendered again from the private unblurred original with
the blurrer's regions, plus the added ones, minus the removed ones, as a new **media version**:

1. `edit_blurs` records the edit (`Store.save_blur_edits` raises the image's `revision`), writes
   an `image.reblur` audit entry and queues a durable `reblur` job for that revision;
2. the job (`run_reblur`) renders every derivative of the revision under its own keys
   (`image_blob_key(…, version)`, a folder `v<N>/`), then switches the image's `media_version`
   to it in one store write, which never goes backwards; only then it deletes the blobs of the
   older versions, and queues a delayed `reblur_sweep` that deletes them once more (a pyramid
   level rendered on demand from an old version just before the switch could land after the
   first deletion).

The Graph API's `thumb_*_url` fields and `/{id}/tiles` URLs carry the version (`/media/images/
{id}/v{N}/…`; version 0 keeps the unversioned URLs of ingest), so a URL is never reused for
other pixels and cached copies may live forever. A job killed at any point is taken over
safely: rendering writes the same keys again, the switch is idempotent, and deletion starts
over. A job whose revision was overtaken by a newer edit does nothing (the newer job renders).

The blurrer's regions are recorded once per image, the first time anyone looks at them
(`blur_state`): the configured blurrer runs again on the private original, sparing faces
inside the image's detected traffic signs as ingest does. An image without a private original
had nothing blurred at ingest (its public original is the upload); its first re-blur keeps a
private copy of it, since version 0 is deleted once replaced. Map features and detections are
not touched: blur regions are not detections.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import threading
from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

from wayview.auth.audit import audit
from wayview.blobs.base import (
    IMAGE_VARIANTS,
    BlobStore,
    image_blob_key,
    image_version_folder,
    private_source_key,
)
from wayview.errors import InvalidInput, NodeNotFound
from wayview.model.blurs import (
    AutoRegion,
    BlurEdits,
    BlurShape,
    parse_removed,
    parse_shapes,
    shapes_json,
)
from wayview.model.entities import Image
from wayview.pipeline.blur import (
    BLUR_JPEG_QUALITY,
    Blurrer,
    Region,
    blur_jpeg,
    blur_regions,
    open_blurrer,
)
from wayview.pipeline.jobs import JobContext, job_handler
from wayview.pipeline.limits import allow_pillow_pixels, pixel_budget, release_memory
from wayview.pipeline.process import delete_blobs, store_derivatives
from wayview.pipeline.pyramid import grid, levels
from wayview.pipeline.thumbnails import encode_jpeg, pillow_errors, strip_metadata_segments
from wayview.settings import PipelineSettings
from wayview.store.base import Store

__all__ = [
    "REBLUR_JOB",
    "SWEEP_JOB",
    "blur_state",
    "blur_status",
    "delete_version",
    "edit_blurs",
    "render_public",
    "run_reblur",
]

log = logging.getLogger("wayview.pipeline")

REBLUR_JOB = "reblur"
SWEEP_JOB = "reblur_sweep"
#: The second deletion of replaced versions runs this long after the switch: longer than any
#: on-demand render of a pyramid level takes.
SWEEP_DELAY_S = 120.0
_JPEG_FORMATS = ("JPEG",)
_NOT_KEPT = ("this server does not keep unblurred originals (pipeline.keep_unblurred is "
             "false), so this image's blurring cannot be changed")

_blurrers: dict[tuple[str, str, str, float], Blurrer] = {}
_blurrers_lock = threading.Lock()


def _blurrer(settings: PipelineSettings) -> Blurrer:
    """The configured blurrer, built once per process (models load slowly)."""
    key = (settings.blurrer, settings.blur_model, settings.blur_labels, settings.blur_min_score)
    with _blurrers_lock:
        found = _blurrers.get(key)
        if found is None:
            found = _blurrers[key] = open_blurrer(settings.blurrer, settings)
        return found


# -- the regions --------------------------------------------------------------------------------
def _sign_boxes(image: Image, detections: Sequence[Sequence[Sequence[tuple[float, float]]]]
                ) -> list[tuple[float, float, float, float]]:
    """Pixel boxes of the image's detections grown by a fifth on every side: where ingest
    spares "faces" (`ImageProcessor.derive`)."""
    boxes = []
    for rings in detections:
        points = [p for ring in rings for p in ring]
        if not points:
            continue
        u0, u1 = min(p[0] for p in points), max(p[0] for p in points)
        v0, v1 = min(p[1] for p in points), max(p[1] for p in points)
        boxes.append(((u0 - (u1 - u0) / 5) * image.width, (v0 - (v1 - v0) / 5) * image.height,
                      (u1 + (u1 - u0) / 5) * image.width, (v1 + (v1 - v0) / 5) * image.height))
    return boxes


def _detect(blobs: BlobStore, settings: PipelineSettings, image: Image,
            signs: list[tuple[float, float, float, float]]) -> list[AutoRegion]:
    """The blurrer's regions on the private original, normalised (none without one).

    A private original exists only where ingest blurred something. When the blurrer now
    finds nothing there (`pipeline.blurrer` changed since, or "none"), the regions are read
    from the difference between the private original and ingest's public one instead, so a
    re-blur never un-blurs what ingest blurred."""
    try:
        source = blobs.get_bytes(private_source_key(image.id))
    except FileNotFoundError:
        return []
    allow_pillow_pixels(settings.max_image_pixels)
    with pixel_budget(settings.max_image_pixels).hold(image.width * image.height):
        try:
            _, found = blur_jpeg(source, _blurrer(settings), not_faces=signs)
            if not found and image.media_version == 0:
                found = _blurred_at_ingest(source, blobs.get_bytes(
                    image_blob_key(image.id, "original", 0)))
        finally:
            release_memory()
    w, h = float(image.width), float(image.height)
    return [AutoRegion(f"a{k}", r.kind,
                       (max(0.0, r.x / w), max(0.0, r.y / h),
                        min(1.0, (r.x + r.w) / w), min(1.0, (r.y + r.h) / h)))
            for k, r in enumerate(found)]


#: Grey levels by which a blurred pixel differs from the original at least (re-encoding
#: the JPEG alone changes a few).
_DIFFERENCE_LEVEL = 24
#: Side of the reduced copies compared by `_blurred_at_ingest`.
_DIFFERENCE_SIDE = 512


def _blurred_at_ingest(source: bytes, public: bytes) -> list[Region]:
    """The boxes (full-size pixels) where ingest's public original differs from the private
    one: what ingest blurred, grown a little (more blur, never less)."""
    with pillow_errors():
        copies = []
        for data in (source, public):
            with PILImage.open(io.BytesIO(strip_metadata_segments(data)),
                               formats=_JPEG_FORMATS) as im:
                width, height = im.size
                scale = min(1.0, _DIFFERENCE_SIDE / max(width, height))
                size = (max(1, round(width * scale)), max(1, round(height * scale)))
                im.draft("L", size)
                copies.append(np.asarray(im.convert("L").resize(size), dtype=np.int16))
    mask = (np.abs(copies[0] - copies[1]) > _DIFFERENCE_LEVEL).astype(np.uint8)
    mask = cv2.dilate(mask, np.ones((5, 5), np.uint8), iterations=2)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    back_x, back_y = width / mask.shape[1], height / mask.shape[0]
    return [Region(math.floor(x * back_x), math.floor(y * back_y), math.ceil(w * back_x),
                   math.ceil(h * back_y), "blurred")
            for x, y, w, h, area in stats[1:count].tolist() if area >= 16]


async def blur_state(store: Store, blobs: BlobStore, settings: PipelineSettings,
                     image: Image) -> BlurEdits:
    """An image's blur edits with its automatic regions (found and recorded on first use)."""
    edits = await store.get_blur_edits(image.id)
    if edits is not None and edits.automatic is not None:
        return edits
    detections = (await store.detections_for_images([image.id])).get(image.id, [])
    signs = _sign_boxes(image, [d.geometry for d in detections])
    found = await asyncio.to_thread(_detect, blobs, settings, image, signs)
    recorded = await store.record_automatic_blurs(image.id, found)
    if recorded is None:
        raise NodeNotFound(str(image.id))
    return recorded


def blur_status(image: Image, edits: BlurEdits | None) -> str:
    """"live" (the newest edit is served, or there was none), "rendering" or "failed"."""
    if edits is None or image.media_version >= edits.revision:
        return "live"
    return "failed" if edits.error else "rendering"


def _source_available(blobs: BlobStore, settings: PipelineSettings, image: Image) -> bool:
    return settings.keep_unblurred or blobs.exists(private_source_key(image.id))


async def edit_blurs(store: Store, blobs: BlobStore, settings: PipelineSettings, image: Image,
                     add: object, remove: object, *, actor_id: int | None) -> BlurEdits:
    """Replace an image's blur edits (already authorised): `add` the shapes to blur (wire
    form, `wayview.model.blurs.parse_shapes`), `remove` the ids of automatic regions not to
    blur. Audited as `image.reblur`; the `reblur` job renders the new version.

    Raises:
        InvalidParameter: a malformed shape or an unknown region id (E9).
        InvalidInput: the server keeps no unblurred original to render from.
    """
    shapes = parse_shapes(add, "add")
    edits = await blur_state(store, blobs, settings, image)
    assert edits.automatic is not None
    removed = parse_removed(remove, edits.automatic, "remove")
    if not await asyncio.to_thread(_source_available, blobs, settings, image):
        raise InvalidInput(_NOT_KEPT)
    saved = await store.save_blur_edits(image.id, shapes, removed, user_id=actor_id)
    if saved is None:
        raise NodeNotFound(str(image.id))
    await audit(store, "image.reblur", actor_id=actor_id, target_kind="image",
                target_id=image.id, organization_id=image.organization_id,
                added=shapes_json(shapes), removed=list(removed), version=saved.revision)
    await store.enqueue_job(REBLUR_JOB, {"image_id": image.id, "revision": saved.revision},
                            dedupe_key=f"{REBLUR_JOB}:{image.id}:{saved.revision}")
    return saved


# -- rendering ----------------------------------------------------------------------------------
def _pixel_box(shape: BlurShape, width: int, height: int) -> tuple[int, int, int, int]:
    u0, v0, u1, v1 = shape.bbox
    left, top = math.floor(u0 * width), math.floor(v0 * height)
    right, bottom = math.ceil(u1 * width), math.ceil(v1 * height)
    return (max(0, left), max(0, top), min(width, max(right, left + 1)),
            min(height, max(bottom, top + 1)))


def _blur_shape(image: PILImage.Image, shape: BlurShape) -> None:
    """Make the inside of one added shape unrecognisable (in place, no margin: people draw
    what they mean)."""
    box = _pixel_box(shape, *image.size)
    patch = image.crop(box)
    # The whole patch as one region: its margin is clamped to the patch.
    obscured = blur_regions(patch, [Region(0, 0, patch.width, patch.height, "added")])
    if shape.kind == "rect":
        image.paste(obscured, box[:2])
        return
    mask = PILImage.new("L", patch.size, 0)
    points = [(u * image.width - box[0], v * image.height - box[1]) for u, v in shape.points]
    ImageDraw.Draw(mask).polygon(points, fill=255, outline=255)
    image.paste(obscured, box[:2], mask)


def render_public(source: bytes, automatic: Sequence[AutoRegion], added: Sequence[BlurShape]
                  ) -> bytes:
    """The public JPEG: `source` (the unblurred original) with the automatic regions blurred
    as ingest blurs them (grown by the blur's margin) and the added shapes blurred exactly;
    `source` itself when there is nothing to blur (as ingest stores an image without regions).

    Raises:
        InvalidInput: `source` is not a decodable JPEG.
    """
    if not automatic and not added:
        return source
    with pillow_errors():
        im: PILImage.Image = PILImage.open(io.BytesIO(strip_metadata_segments(source)),
                                           formats=_JPEG_FORMATS)
        im.load()
    icc_profile: bytes | None = im.info.get("icc_profile") or None
    if im.mode not in ("RGB", "L"):
        im = im.convert("RGB")
        icc_profile = None  # the profile described the source colour space
    width, height = im.size
    regions = [Region(math.floor(r.box[0] * width), math.floor(r.box[1] * height),
                      max(1, round((r.box[2] - r.box[0]) * width)),
                      max(1, round((r.box[3] - r.box[1]) * height)), r.kind)
               for r in automatic]
    result = blur_regions(im, regions)
    for shape in added:
        _blur_shape(result, shape)
    return encode_jpeg(result, icc_profile, BLUR_JPEG_QUALITY)


def _source(blobs: BlobStore, settings: PipelineSettings, image: Image) -> bytes:
    """The unblurred original. An image ingest blurred nothing in has no private copy: its
    version-0 original is the upload, kept privately now (version 0 goes once replaced)."""
    key = private_source_key(image.id)
    try:
        return blobs.get_bytes(key)
    except FileNotFoundError:
        pass
    if image.media_version != 0 or not settings.keep_unblurred:
        raise InvalidInput(_NOT_KEPT if not settings.keep_unblurred
                           else "the unblurred original of this image is missing")
    data = blobs.get_bytes(image_blob_key(image.id, "original", 0))
    blobs.put_bytes(key, data)
    return data


def _render_version(blobs: BlobStore, settings: PipelineSettings, image: Image,
                    edits: BlurEdits, version: int) -> int:
    """Write every stored derivative of `version`; how many blobs."""
    assert edits.automatic is not None
    source = _source(blobs, settings, image)
    kept = [r for r in edits.automatic if r.id not in set(edits.removed)]
    allow_pillow_pixels(settings.max_image_pixels)
    with pixel_budget(settings.max_image_pixels).hold(image.width * image.height):
        try:
            public = render_public(source, kept, edits.added)
            written = store_derivatives(blobs, settings, image.id, public, image.width,
                                        image.height, version)
        finally:
            release_memory()
    return len(written)


def delete_version(blobs: BlobStore, image: Image, version: int) -> None:
    """Delete every blob of one media version of an image (a missing one is no error). For
    version 0 (the image's own folder, which also holds the mesh and later versions) the
    variants and every tile of every valid level are deleted one by one, the original last:
    tiles rendered on demand need it."""
    if version > 0:
        blobs.delete_folder(image_version_folder(image.id, version))
        return
    keys = [image_blob_key(image.id, f"tile_{z}_{x}_{y}", 0)
            for z in levels(image.width, image.height)
            for x in range(grid(image.width, image.height, z)[0])
            for y in range(grid(image.width, image.height, z)[1])]
    keys += [image_blob_key(image.id, v, 0) for v in IMAGE_VARIANTS if v != "original"]
    keys.append(image_blob_key(image.id, "original", 0))
    delete_blobs(blobs, keys)


def _delete_older(blobs: BlobStore, image: Image, below: int) -> None:
    for version in range(below):
        delete_version(blobs, image, version)


# -- the jobs -----------------------------------------------------------------------------------
async def reblur(ctx: JobContext, image_id: int, revision: int) -> None:
    """Render `revision` of an image's blurring and make it the served media version."""
    settings = ctx.settings.pipeline
    store, blobs = ctx.store, ctx.blobs
    image = (await store.get_images([image_id])).get(image_id)
    if image is None:
        return  # deleted meanwhile: its folders went with it
    edits = await store.get_blur_edits(image_id)
    if image.media_version >= revision:
        if image.media_version == revision:  # a previous attempt switched; finish its work
            await _after_switch(ctx, image, revision)
        return
    if edits is None or edits.revision != revision or edits.automatic is None:
        return  # overtaken by a newer edit: its own job renders that one
    try:
        count = await asyncio.to_thread(_render_version, blobs, settings, image, edits,
                                        revision)
    except InvalidInput as exc:
        await store.set_blur_error(image_id, revision, exc.message)
        raise
    if not await store.switch_media_version(image_id, revision):
        # A newer version went live (or the image went): this one is never served.
        await asyncio.to_thread(delete_version, blobs, image, revision)
        return
    log.info("image %d: media version %d is live (%d blobs)", image_id, revision, count)
    await _after_switch(ctx, image, revision)


async def _after_switch(ctx: JobContext, image: Image, revision: int) -> None:
    await asyncio.to_thread(_delete_older, ctx.blobs, image, revision)
    await ctx.store.enqueue_job(SWEEP_JOB, {"image_id": image.id, "below": revision},
                                dedupe_key=f"{SWEEP_JOB}:{image.id}:{revision}",
                                delay_s=SWEEP_DELAY_S)


def _int(payload: dict[str, object], name: str) -> int:
    value = payload.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInput(f"a {REBLUR_JOB} job needs an integer {name}")
    return value


@job_handler(REBLUR_JOB)
async def run_reblur(ctx: JobContext, payload: dict[str, object]) -> None:
    """The `reblur` job: `reblur` for `payload["image_id"]` and `payload["revision"]`."""
    await reblur(ctx, _int(payload, "image_id"), _int(payload, "revision"))


@job_handler(SWEEP_JOB)
async def run_sweep(ctx: JobContext, payload: dict[str, object]) -> None:
    """The `reblur_sweep` job: delete the blobs of every media version of an image below
    `payload["below"]` again, once the served version is at least that."""
    image_id, below = _int(payload, "image_id"), _int(payload, "below")
    image = (await ctx.store.get_images([image_id])).get(image_id)
    if image is None or image.media_version < below:
        return
    await asyncio.to_thread(_delete_older, ctx.blobs, image, below)
