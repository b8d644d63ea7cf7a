"""wayview.pipeline.process: the processing stages every imported or uploaded image goes through.

Per image (`ImageProcessor.derive`, in a worker thread):

1. **privacy blurring**: the `pipeline.blurrer` finds faces and licence plates; they are
   blurred before anything public is made. The unblurred upload is kept as a private blob
   (never served) when `pipeline.keep_unblurred`, else dropped.
2. **derivatives** of the blurred image: `thumb_256/1024/2048` and the public `original`;
   the detectors (`pipeline.detectors`) and `quality_score` look at the photo as uploaded,
   before blurring, decoded at most 2048 px wide (`pipeline.perception.Perceiver`).
3. **image pyramid** (`pipeline.pyramid`): the 1024-px tiles of the levels MapillaryJS asks for
   (§3.12); other valid levels are rendered on first request (`ensure_pyramid_level`).

Per sequence (`reconstruct_sequence`), before its rows are written:

4. **computed positions** (`pipeline.positions.TrackPositioner`): smoothed positions without
   outliers, headings from the track where the compass is missing or wrong, the angle-axis
   `computed_rotation`, `camera_parameters`, `atomic_scale`.
5. **3D assets** (`pipeline.meshes`): `merge_cc` (shared with stored sequences that come within
   `pipeline.merge_radius_m`), a mesh per perspective/fisheye image and one `sfm_cluster` per
   sequence, so MapillaryJS gets its 3D transitions.

After the rows are in, the importer stores the detections and re-places the map features
around the sequence (`pipeline.perception.update_map_features`, stage 6).

The importer inserts the sequence only after every stage, in one transaction, so a sequence is
never half visible; the blobs of a sequence that fails are deleted again. Before it writes a
sequence's blobs it journals their folders in the store (`sequence_blob_journal`), so the next
attempt of a job whose process was killed mid-way deletes what the dead attempt wrote
(`discard_journaled_blobs`) instead of leaving unreachable blobs behind. A write the blob
store accepted without answering may land after such a delete: deleted folders stay journaled
as retired, and the job runners delete them once more later (`sweep_retired_blobs`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from wayview import metrics
from wayview.blobs.base import (
    BlobStore,
    cluster_blob_key,
    image_blob_folders,
    image_blob_key,
    private_source_key,
    pyramid_failure_key,
)
from wayview.errors import InvalidInput
from wayview.model.entities import ASSET_CLUSTER, ASSET_MESH, ASSET_PYRAMID, Image, ImageSearch
from wayview.pipeline.blur import Blurrer, blur_jpeg, open_blurrer
from wayview.pipeline.detectors import Found
from wayview.pipeline.limits import (
    allow_pillow_pixels,
    check_frame,
    check_scans,
    pixel_budget,
    release_memory,
)
from wayview.pipeline.perception import Perceiver
from wayview.pipeline.positions import ShotInput, TrackPositioner, merge_components
from wayview.pipeline.pyramid import render_pyramid, stored_levels
from wayview.pipeline.sfm_assets import encode_cluster, encode_mesh, image_plane_mesh
from wayview.pipeline.thumbnails import jpeg_frame_size, make_derivatives
from wayview.settings import PipelineSettings
from wayview.store.base import Store

__all__ = [
    "Derived",
    "ImageProcessor",
    "absorb_merge_components",
    "discard_journaled_blobs",
    "sweep_retired_blobs",
    "padded_bbox",
    "ensure_pyramid_level",
    "reconstruct_sequence",
    "sequence_blob_journal",
    "shot_input",
    "store_derivatives",
]

log = logging.getLogger("wayview.pipeline")

#: Depth (reconstruction units = metres) of the flat mesh in front of each camera.
_MESH_DEPTH_M = 10.0
#: Stored images read around a new sequence to find its merge component.
_NEIGHBOURS_LIMIT = 5000


@dataclass(frozen=True, slots=True)
class Derived:
    """What `ImageProcessor.derive` wrote for one image."""

    keys: tuple[str, ...]
    blurred_regions: int
    assets: int
    #: What the detectors found in the blurred image (stage 1b).
    found: tuple[Found, ...] = ()
    quality_score: float | None = None


class ImageProcessor:
    """Stages 1–3 for one image at a time; safe to call from several threads at once."""

    def __init__(self, settings: PipelineSettings, blobs: BlobStore,
                 blurrer: Blurrer | None = None) -> None:
        self.settings = settings
        self.blobs = blobs
        self.blurrer = blurrer if blurrer is not None else open_blurrer(settings.blurrer, settings)
        self.perceiver = Perceiver(settings)
        allow_pillow_pixels(settings.max_image_pixels)
        self._budget = pixel_budget(settings.max_image_pixels)

    def derive(self, image_id: int, data: bytes, width: int, height: int) -> Derived:
        """Blur, derive and store one image's public blobs (and its private source).

        Raises:
            InvalidInput: the bytes are not a decodable JPEG, or its frame is refused by
                `check` (too large, implausibly small for its size) before any decoding.
            OSError: the blob store failed (whatever was written is deleted again).
        """
        self.check(data, width, height)
        written: list[str] = []
        assets = 0
        # Decoding takes memory in proportion to the pixels: bounded per process.
        with self._budget.hold(width * height):
            with metrics.stage("perceive"):
                seen = self.perceiver.look(data)
            # A sign the detectors found is no face, whatever the face finder thinks (grown by
            # a fifth on every side: signs carry plates and poles).
            signs = [((u0 - (u1 - u0) / 5) * width, (v0 - (v1 - v0) / 5) * height,
                      (u1 + (u1 - u0) / 5) * width, (v1 + (v1 - v0) / 5) * height)
                     for u0, v0, u1, v1 in (f.box for f in seen.found)]
            with metrics.stage("blur"):
                public, regions = blur_jpeg(data, self.blurrer, not_faces=signs)
            try:
                if regions and self.settings.keep_unblurred:
                    self._put(private_source_key(image_id), data, written)
                with metrics.stage("derivatives"):
                    written += store_derivatives(self.blobs, self.settings, image_id, public,
                                                 width, height)
                if self.settings.pyramid:
                    assets |= ASSET_PYRAMID
            except BaseException:
                delete_blobs(self.blobs, written)
                raise
            finally:
                del public
                release_memory()
        return Derived(tuple(written), len(regions), assets, seen.found, seen.quality_score)

    def check(self, data: bytes, width: int, height: int) -> None:
        """Refuse a JPEG before decoding it: its frame header (as the decoder reads it) must
        agree with the stored `width` × `height` and pass `pipeline.limits.check_frame`, and
        it may have at most `pipeline.max_jpeg_scans` scans.

        Raises:
            InvalidInput: with the reason.
        """
        size = jpeg_frame_size(data)
        if size != (width, height):
            raise InvalidInput(
                f"corrupt JPEG: frame headers disagree ({size[0]}×{size[1]} and "
                f"{width}×{height})")
        check_frame(width, height, len(data), max_pixels=self.settings.max_image_pixels,
                    min_bytes_per_megapixel=self.settings.min_bytes_per_megapixel)
        check_scans(data, self.settings.max_jpeg_scans)

    def _put(self, key: str, data: bytes, written: list[str]) -> None:
        self.blobs.put_bytes(key, data)
        written.append(key)


def store_derivatives(blobs: BlobStore, settings: PipelineSettings, image_id: int,
                      public: bytes, width: int, height: int, version: int = 0) -> list[str]:
    """Stages 2–3 from the public (blurred) JPEG: store the thumbnails, the public original
    and the pyramid's stored levels of media version `version` (`image_blob_key`); the keys
    written. Used by ingest (version 0) and by re-blurring (`wayview.pipeline.reblur`), which
    renders a new version beside the served one.

    Raises:
        InvalidInput: `public` is not a decodable JPEG.
        OSError: the blob store failed (whatever was written is deleted again).
    """
    written: list[str] = []
    try:
        for variant, payload in make_derivatives(public).items():
            key = image_blob_key(image_id, variant, version)
            blobs.put_bytes(key, payload)
            written.append(key)
        if settings.pyramid:
            for z, x, y, tile in render_pyramid(public, stored_levels(width, height)):
                key = image_blob_key(image_id, f"tile_{z}_{x}_{y}", version)
                blobs.put_bytes(key, tile)
                written.append(key)
    except BaseException:
        delete_blobs(blobs, written)
        raise
    return written


def delete_blobs(blobs: BlobStore, keys: Iterable[str]) -> None:
    """Delete blobs (`BlobStore.delete` ignores the ones already gone)."""
    for key in keys:
        blobs.delete(key)


def sequence_blob_journal(image_ids: Iterable[int], sequence_id: str) -> list[str]:
    """The journal entries of one sequence about to be processed: each image's blob folders
    and the sequence's cluster key.

    >>> sequence_blob_journal([1001], "k3h9q2m1x0v8b7n6c5z4a3")
    ['images/001/1001/', 'private/001/1001/', 'clusters/a3/k3h9q2m1x0v8b7n6c5z4a3.json.z']
    """
    keys = [folder for image_id in image_ids for folder in image_blob_folders(image_id)]
    keys.append(cluster_blob_key(sequence_id))
    return keys


_JOURNAL_IMAGE = re.compile(r"(?:images|private)/\d{3}/(\d{1,19})/")
_JOURNAL_CLUSTER = re.compile(r"clusters/[A-Za-z0-9_-]{2}/([A-Za-z0-9_-]{1,64})\.json\.z")


async def discard_journaled_blobs(store: Store, blobs: BlobStore, owner: str) -> int:
    """Delete the blobs `owner` journaled that no stored row references (what an attempt
    killed before its insert left behind), then forget the journal; how many journal entries
    were discarded. Blobs of images or sequences that were stored are kept. The discarded
    entries are retired (`JobsStore.retire_blobs`) rather than forgotten: a write of the dead
    attempt may still land, and `sweep_retired_blobs` deletes it later."""
    keys = await store.journaled_blobs(owner)
    if not keys:
        return 0
    discarded = [key for key, _ in await _delete_unreferenced(store, blobs, owner, keys)]
    await store.retire_blobs(owner, discarded)
    await store.forget_blobs(owner, keys)
    if discarded:
        log.info("discarded %d blob folder(s) left by an interrupted attempt of %s",
                 len(discarded), owner)
    return len(discarded)


async def sweep_retired_blobs(store: Store, blobs: BlobStore, older_than_s: float, *,
                              now_ms: int | None = None) -> int:
    """Delete once more the blobs of journal entries retired more than `older_than_s` ago
    that no stored row references, and forget them; how many blobs were found again (writes
    the blob store accepted without answering, landed after the first delete). Called by the
    job runners (`jobs.retired_blob_sweep_s`)."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    found = 0
    for owner in await store.retired_blob_owners(now - int(older_than_s * 1000)):
        keys = await store.journaled_blobs(owner)
        found += sum(n for _, n in await _delete_unreferenced(store, blobs, owner, keys))
        await store.forget_blobs(owner, keys)
    if found:
        log.warning("deleted %d blob(s) that were written after the attempt that wrote them "
                    "had failed", found)
    return found


async def _delete_unreferenced(store: Store, blobs: BlobStore, owner: str, keys: list[str]
                               ) -> list[tuple[str, int]]:
    """Delete the journaled blobs (folders or keys) that no stored row references; each entry
    deleted with the number of blobs it removed (unknown entries are logged and kept)."""
    ids = {int(m.group(1)) for k in keys if (m := _JOURNAL_IMAGE.fullmatch(k))}
    stored = await store.get_images(sorted(ids)) if ids else {}
    stored_sequences = {im.sequence_id for im in stored.values()}
    deleted: list[tuple[str, int]] = []
    for key in keys:
        image = _JOURNAL_IMAGE.fullmatch(key)
        cluster = _JOURNAL_CLUSTER.fullmatch(key)
        if image is not None:
            if int(image.group(1)) in stored:
                continue
            deleted.append((key, await asyncio.to_thread(blobs.delete_folder, key)))
        elif cluster is not None:
            if cluster.group(1) in stored_sequences or await _sequence_exists(
                    store, cluster.group(1)):
                continue
            deleted.append((key, await asyncio.to_thread(_delete_one, blobs, key)))
        else:
            log.warning("ignoring unknown blob journal entry %r of %s", key, owner)
    return deleted


def _delete_one(blobs: BlobStore, key: str) -> int:
    """Delete one blob; 1 if it was there, else 0."""
    if not blobs.exists(key):
        return 0
    blobs.delete(key)
    return 1


async def _sequence_exists(store: Store, sequence_id: str) -> bool:
    page = await store.search_images(ImageSearch(sequence_ids=(sequence_id,), limit=1))
    return bool(page.items)


def ensure_pyramid_level(blobs: BlobStore, image: Image, z: int, *,
                         settings: PipelineSettings | None = None) -> bool:
    """Render and store every tile of level `z` from the public original if they are missing
    (levels outside `stored_levels`, or images imported before the pyramid stage); whether
    the level is now stored.

    Bounded: an image larger than `settings.max_image_pixels` (stored before that limit
    existed) is not rendered, the decode holds the process's pixel budget, and a level that
    fails to render leaves a private marker (`pyramid_failure_key`) so that it is never tried
    again: later calls answer False at once. Tile (0, 0), whose presence means "level
    stored", is written last, so a reader never sees half a level as complete. The level is
    rendered for the image's `media_version`, from that version's original.
    """
    version = image.media_version
    if blobs.exists(image_blob_key(image.id, f"tile_{z}_0_0", version)):
        return True
    failure = pyramid_failure_key(image.id, z)
    if blobs.exists(failure):
        return False
    limits = settings if settings is not None else PipelineSettings()
    if image.width * image.height > limits.max_image_pixels:
        return False
    allow_pillow_pixels(limits.max_image_pixels)
    try:
        original = blobs.get_bytes(image_blob_key(image.id, "original", version))
    except FileNotFoundError:
        return False
    written: list[str] = []
    try:
        if jpeg_frame_size(original) != (image.width, image.height):
            raise InvalidInput("the original's frame header disagrees with the stored size")
        check_frame(image.width, image.height, len(original),
                    max_pixels=limits.max_image_pixels,
                    min_bytes_per_megapixel=limits.min_bytes_per_megapixel)
        check_scans(original, limits.max_jpeg_scans)
        first: bytes | None = None
        with pixel_budget(limits.max_image_pixels).hold(image.width * image.height):
            try:
                for level, x, y, tile in render_pyramid(original, [z]):
                    if (x, y) == (0, 0):
                        first = tile
                        continue
                    key = image_blob_key(image.id, f"tile_{level}_{x}_{y}", version)
                    blobs.put_bytes(key, tile)
                    written.append(key)
            finally:
                release_memory()
        if first is not None:
            blobs.put_bytes(image_blob_key(image.id, f"tile_{z}_0_0", version), first)
    except (InvalidInput, ValueError, MemoryError) as exc:
        reason = exc.message if isinstance(exc, InvalidInput) else repr(exc)
        log.warning("image %d: pyramid level %d cannot be rendered: %s", image.id, z, reason)
        delete_blobs(blobs, written)
        blobs.put_bytes(failure, reason.encode("utf-8", "replace")[:1000])
        return False
    return True


def shot_input(im: Image) -> ShotInput:
    """What a positioner knows of a stored image: its upload's position, compass and camera."""
    return ShotInput(
        image_id=im.id, captured_at_ms=im.captured_at_ms, lon=im.lon, lat=im.lat,
        altitude_m=im.altitude_m, compass_angle_deg=im.compass_angle_deg,
        camera_type=im.camera_type, width=im.width, height=im.height,
        exif_orientation=im.exif_orientation,
        focal_35mm=im.camera_parameters[0] * 36.0 if im.camera_parameters else None,
        make=im.make, model=im.model,
    )


@metrics.timed_stage("positions")
async def reconstruct_sequence(settings: PipelineSettings, store: Store, blobs: BlobStore,
                               images: Sequence[Image]) -> tuple[list[Image], list[str]]:
    """Stages 4–5 for one sequence (all images share `sequence_id`, at least one).

    Returns:
        (images with their computed fields, the keys of the blobs written).
    """
    ordered = sorted(images, key=lambda im: (im.captured_at_ms, im.id))
    solved = TrackPositioner().solve([shot_input(im) for im in ordered])
    by_id = {shot.image_id: shot for shot in solved.shots}
    merge_cc = await _merge_component(settings, store, ordered) if settings.meshes else None
    out: list[Image] = []
    puts: list[tuple[str, bytes]] = []
    for im in ordered:
        shot = by_id[im.id]
        assets = im.assets
        if settings.meshes and im.camera_type != "spherical":
            params = im.camera_parameters or shot.camera_parameters or (0.85, 0.0, 0.0)
            vertices, faces = image_plane_mesh(im.width, im.height, params,
                                               depth=_MESH_DEPTH_M)
            puts.append((image_blob_key(im.id, "mesh"), encode_mesh(vertices, faces)))
            assets |= ASSET_MESH
        if settings.meshes:
            assets |= ASSET_CLUSTER
        out.append(replace(
            im, computed_lon=shot.lon, computed_lat=shot.lat,
            computed_altitude_m=shot.altitude_m,
            computed_compass_angle_deg=shot.compass_angle_deg % 360.0,
            computed_rotation=shot.rotation, atomic_scale=shot.atomic_scale,
            camera_parameters=im.camera_parameters or shot.camera_parameters,
            merge_cc=merge_cc, assets=assets,
        ))
    if settings.meshes:
        puts.append((cluster_blob_key(ordered[0].sequence_id),
                     encode_cluster([solved.to_opensfm()])))
    # In a thread: a stalled S3 blocks each put up to s3.timeout_s, and on the event loop
    # that stopped the job's lease renewals (issue #22: the job ran twice at once).
    written = await asyncio.to_thread(_put_all, blobs, puts)
    return out, written


def _put_all(blobs: BlobStore, puts: Sequence[tuple[str, bytes]]) -> list[str]:
    """Store blobs in order; the keys written (all, or none: a failure deletes them again)."""
    written: list[str] = []
    try:
        for key, data in puts:
            blobs.put_bytes(key, data)
            written.append(key)
    except BaseException:
        delete_blobs(blobs, written)
        raise
    return written


async def _merge_component(settings: PipelineSettings, store: Store,
                           images: Sequence[Image]) -> int:
    """The sequence's `merge_cc`: the smallest of the stored components within
    `merge_radius_m`, or a new one."""
    joined, own = await _joined_components(settings, store, images)
    return joined[0] if joined else own


async def absorb_merge_components(settings: PipelineSettings, store: Store,
                                  images: Sequence[Image]) -> int:
    """After a sequence is stored: when it bridged several stored components, they become one
    (relabelled to the sequence's `merge_cc`); how many images changed."""
    if not settings.meshes or not images or images[0].merge_cc is None:
        return 0
    joined, _ = await _joined_components(settings, store, images)
    others = [cc for cc in joined if cc != images[0].merge_cc]
    if not others:
        return 0
    changed = await store.relabel_merge_cc(others, images[0].merge_cc)
    log.info("sequence %s joined merge components %s into %d (%d images relabelled)",
             images[0].sequence_id, others, images[0].merge_cc, changed)
    return changed


def padded_bbox(images: Sequence[Image], radius_m: float
                ) -> tuple[float, float, float, float]:
    """The bbox of the images' original positions grown by `radius_m` on every side (in
    longitude at the highest latitude, so it never falls short).

    >>> [round(v, 5) for v in padded_bbox([Image(1, "s", 1, 0, 13.4, 52.5, 1, 1)], 111.32)]
    [13.39836, 52.499, 13.40164, 52.501]
    """
    lons = [im.lon for im in images]
    lats = [im.lat for im in images]
    pad_lat = radius_m / 111_320.0
    pad_lon = pad_lat / max(0.01, math.cos(math.radians(max(abs(min(lats)), abs(max(lats))))))
    return (min(lons) - pad_lon, min(lats) - pad_lat, max(lons) + pad_lon, max(lats) + pad_lat)


async def _joined_components(settings: PipelineSettings, store: Store,
                             images: Sequence[Image]) -> tuple[list[int], int]:
    """The `merge_cc`s of stored sequences (other than this one) that the sequence's images
    connect to, ascending, and the component id the sequence would have alone."""
    sequence_id = images[0].sequence_id
    bbox = padded_bbox(images, settings.merge_radius_m)
    page = await store.search_images(ImageSearch(bbox=bbox, limit=_NEIGHBOURS_LIMIT))
    groups: dict[str, list[tuple[float, float]]] = {
        sequence_id: [(im.lon, im.lat) for im in images]}
    for im in page.items:
        if im.merge_cc is not None and im.sequence_id != sequence_id:
            groups.setdefault(f"cc:{im.merge_cc}", []).append((im.lon, im.lat))
    components = merge_components(groups, radius_m=settings.merge_radius_m)
    mine = components[sequence_id]
    joined = sorted(int(name[3:]) for name, cc in components.items()
                    if name != sequence_id and cc == mine)
    return joined, mine
