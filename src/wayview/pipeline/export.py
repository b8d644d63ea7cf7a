"""wayview.pipeline.export: a user downloads all of their data as one zip (issue #17).

`request_export` records an export (`Store.create_export`, at most
`export.max_concurrent_per_user` queued or running per user) and queues its durable `export`
job. The job (`produce_export`) writes the zip to a work file under
`<data_dir>/work/exports/<export id>/`, streaming every original from the blob store into it
one at a time (memory stays bounded by the largest photo; ZIP64 past 4 GiB or 65,535 files),
reports progress (images written / images to write) as it goes, then stores the zip under the
private key `export_blob_key(user, export)` and marks the export done until
`now + export.ttl_hours`.

Zip layout (`write_export`; docs/export.md):

    README.txt                  what is where
    manifest.json               who, when, counts, the format version
    metadata/images.json        every image as the Graph API serves it (`IMAGE_FIELDS`)
    metadata/images.geojson     the same as GeoJSON points, plus the file of each original
    metadata/sequences.json     every sequence: its image ids in capture order and time span
    metadata/sequences.geojson  every sequence as a line (a point for one image)
    metadata/detections.json    every detection in the user's images (Graph fields + image)
    originals/<sequence>/<image id>.jpg   the file uploaded (the private unblurred copy when
                                the pipeline blurred something and kept it, else the
                                full-size original)

A killed or failed attempt starts over when the job runs again: the work folder of the
export is emptied and progress goes back to 0; nothing of a dead attempt is ever served.
Expiry: when an export is done its `export_expire` job is queued to run at its expiry; it
(and any listing of exports, `sweep_exports`) deletes the zip of every overdue export and
marks it `expired`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

from wayview.blobs.base import (
    BlobStore,
    export_blob_folder,
    export_blob_key,
    image_blob_key,
    private_source_key,
)
from wayview.errors import InvalidInput, InvalidParameter
from wayview.graph.render import Json, Renderer, iso_utc
from wayview.model.entities import Export, Image, ImageSearch, User
from wayview.model.fields import IMAGE_SCALARS, parse_fields
from wayview.pipeline.jobs import JobContext, job_handler
from wayview.settings import Settings
from wayview.store.base import Store

__all__ = [
    "DETECTION_FIELDS", "EXPIRE_JOB", "EXPORT_JOB", "FORMAT_VERSION", "IMAGE_FIELDS",
    "BlobReader", "ExportReport", "download_name", "expire_due_exports", "export_to_file",
    "open_blob",
    "produce_export",
    "request_export", "sweep_exports", "write_export",
]

log = logging.getLogger("wayview.pipeline")

EXPORT_JOB = "export"
EXPIRE_JOB = "export_expire"
#: Version of the zip layout (manifest.json `format`); raised when the layout changes.
FORMAT_VERSION = 1
#: The Graph fields of every image in metadata/images.json: all of them.
IMAGE_FIELDS = ",".join(sorted(IMAGE_SCALARS)) + (
    ",creator{id,username},organization{id},mesh{id,url},sfm_cluster{id,url}")
#: The Graph fields of every detection in metadata/detections.json (plus `image{id}`).
DETECTION_FIELDS = "id,value,geometry,created_at"
#: Images read from the store at once.
_PAGE = 500
#: Seconds between two progress writes to the store (and always at the end).
_PROGRESS_EVERY_S = 0.5
#: Work folders of exports untouched this long are leftovers of dead attempts (deleted).
_STALE_WORK_S = 24 * 3600.0
_CHUNK = 1024 * 1024
#: Entries this large need ZIP64 headers of their own.
_ZIP64_ENTRY = 2**31 - 1
#: Zip entry times cannot be before 1980.
_ZIP_EPOCH = datetime(1980, 1, 1, tzinfo=UTC)
_README = """\
Your data from wayview ({base_url}), exported {exported_at} for {username}.

originals/<sequence id>/<image id>.jpg
    Every photo you uploaded, as you uploaded it: the private unblurred copy where the server
    blurred faces or plates (and kept the copy), else the full-size original it serves.
    metadata/images.geojson says which ("original": "unblurred_upload" or "served_original").
metadata/images.json
    Every image with every field the Graph API serves (GET /{{image_id}}?fields=...).
metadata/images.geojson
    The same images as GeoJSON points (properties: the Graph fields, plus "file").
metadata/sequences.json, metadata/sequences.geojson
    Every sequence: its images in capture order, first and last capture time, as a line.
metadata/detections.json
    Every detection in your images (GET /{{image_id}}/detections), with the image's id.
manifest.json
    Counts, the export time and the format version.

Times are milliseconds since 1970 (captured_at) or ISO 8601 (created_at), positions WGS84.
"""

Progress = Callable[[int, int], Awaitable[None]]


@dataclass
class ExportReport:
    """What went into one zip."""

    images: int = 0
    sequences: int = 0
    detections: int = 0
    unblurred_uploads: int = 0
    served_originals: int = 0
    missing_originals: list[int] = field(default_factory=list)
    size_bytes: int = 0

    def counts(self) -> dict[str, object]:
        """The manifest's `counts`."""
        return {"images": self.images, "sequences": self.sequences,
                "detections": self.detections, "unblurred_uploads": self.unblurred_uploads,
                "served_originals": self.served_originals,
                "missing_originals": len(self.missing_originals)}


# -- requesting -------------------------------------------------------------------------------
async def request_export(store: Store, blobs: BlobStore, settings: Settings, user: User, *,
                         actor_id: int | None) -> Export:
    """Record an export of `user`'s data and queue its job; `actor_id` is who asked (None:
    an operator at the command line), for the audit log.

    Raises:
        InvalidParameter: the user already has `export.max_concurrent_per_user` exports
            queued or running.
    """
    await sweep_exports(store, blobs, settings, user.id)
    limit = settings.export.max_concurrent_per_user
    export = await store.create_export(user.id, max_active=limit)
    if export is None:
        raise InvalidParameter("export", f"you already have {limit} export(s) queued or "
                               "running; wait until they are done")
    await _queue(store, export.id)
    await _audit(store, actor_id, user.id, export.id)
    log.info("export %d of user %d queued", export.id, user.id)
    return export


async def _queue(store: Store, export_id: int) -> None:
    await store.enqueue_job(EXPORT_JOB, {"export_id": export_id},
                            dedupe_key=f"{EXPORT_JOB}:{export_id}")


async def _audit(store: Store, actor_id: int | None, user_id: int, export_id: int | None
                 ) -> None:
    """Record the request in the audit log (an export holds unblurred originals)."""
    from wayview.auth.audit import audit

    try:
        await audit(store, "account.export", actor_id=actor_id, target_kind="user",
                    target_id=user_id, export_id=export_id)
    except Exception:  # the audit log is not there yet (older store): log it instead
        log.exception("export %s of user %d: not recorded in the audit log", export_id,
                      user_id)


async def sweep_exports(store: Store, blobs: BlobStore | None, settings: Settings,
                        user_id: int) -> None:
    """Housekeeping before a user's exports are listed or a new one is made: overdue zips
    are deleted (when `blobs` is given), a queued export whose job was lost (the process died
    between the row and the job) is queued again, and one whose job was parked (it failed too
    often, or killed its worker every time) is marked failed."""
    if blobs is not None:
        await expire_due_exports(store, blobs)
    active = [e for e in await store.list_exports(user_id, limit=settings.export.max_listed)
              if e.state in ("queued", "running")]
    if not active:
        return
    ids = {e.id for e in active}
    for job in await store.list_jobs(states=("parked",), limit=1000):
        export_id = job.payload.get("export_id")
        if job.kind == EXPORT_JOB and export_id in ids:
            await store.fail_export(int(str(export_id)), "The export failed; an operator can "
                                    "retry it (`wayview jobs retry`) or you can ask again.")
            ids.discard(int(str(export_id)))
    now = int(time.time() * 1000)
    for export in active:
        if export.state == "queued" and export.id in ids and now - export.created_at_ms > 60_000:
            await _queue(store, export.id)  # the dedupe key makes this a no-op when queued


async def expire_due_exports(store: Store, blobs: BlobStore, now_ms: int | None = None
                             ) -> int:
    """Delete the zip of every done export past its expiry and mark it expired; how many."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    count = 0
    while due := await store.exports_to_expire(now, limit=100):
        for export in due:
            key = export.blob_key or export_blob_key(export.user_id, export.id)
            await asyncio.to_thread(blobs.delete, key)
            if await store.expire_export(export.id):
                count += 1
                log.info("export %d of user %d expired: zip deleted", export.id,
                         export.user_id)
    return count


async def discard_exports(store: Store, blobs: BlobStore, user_id: int) -> int:
    """Delete every export zip of a user and mark the done ones expired (their images were
    deleted: issue #17, `DELETE /me/images`); how many were marked."""
    count = 0
    for export in await store.list_exports(user_id, limit=10_000):
        if export.state == "done" and await store.expire_export(export.id):
            count += 1
    await asyncio.to_thread(blobs.delete_folder, export_blob_folder(user_id))
    return count


# -- the job ----------------------------------------------------------------------------------
@job_handler(EXPORT_JOB)
async def run_export_job(ctx: JobContext, payload: dict[str, object]) -> None:
    """The `export` job: `produce_export` for `payload["export_id"]`; an export that fails
    on the job's last attempt is marked failed (with a reason that names no path)."""
    export_id = payload.get("export_id")
    if not isinstance(export_id, int) or isinstance(export_id, bool):
        raise InvalidInput("an export job needs export_id (an integer)")
    try:
        await produce_export(ctx.settings, ctx.store, ctx.blobs, export_id)
    except Exception as exc:
        if isinstance(exc, InvalidInput) or ctx.job.attempts >= ctx.settings.jobs.max_attempts:
            await ctx.store.fail_export(export_id, f"The export could not be made (job "
                                        f"{ctx.job.id}: {type(exc).__name__}); ask again or "
                                        "tell the operator.")
        raise


@job_handler(EXPIRE_JOB)
async def run_expire_job(ctx: JobContext, payload: dict[str, object]) -> None:
    """The `export_expire` job, queued to run when an export expires: deletes every overdue
    zip (not only its own, so one late job catches up with the others)."""
    await expire_due_exports(ctx.store, ctx.blobs)


def _work_folder(settings: Settings, export_id: int) -> Path:
    return settings.data_dir / "work" / "exports" / str(int(export_id))


def _drop_stale_work(root: Path, keep: Path) -> None:
    """Delete work folders of other exports untouched for a day (their attempts died)."""
    if not root.is_dir():
        return
    cutoff = time.time() - _STALE_WORK_S
    for folder in root.iterdir():
        with contextlib.suppress(OSError):
            if folder != keep and folder.is_dir() and not folder.is_symlink() \
                    and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)


async def produce_export(settings: Settings, store: Store, blobs: BlobStore, export_id: int
                         ) -> ExportReport | None:
    """Make the zip of one export from the start, store it and mark the export done; None
    when there is nothing to do (unknown, done, failed or expired). Idempotent: an attempt
    that dies leaves a work folder the next attempt empties, and at most a stored zip the
    next attempt replaces."""
    export = await store.get_export(export_id)
    if export is None or export.state not in ("queued", "running"):
        return None
    user = (await store.get_users([export.user_id])).get(export.user_id)
    if user is None:
        await store.fail_export(export_id, "The account no longer exists.")
        return None
    work = _work_folder(settings, export_id)
    await asyncio.to_thread(_drop_stale_work, work.parent, work)
    await asyncio.to_thread(shutil.rmtree, work, True)
    if not await store.start_export(export_id, 0):
        return None
    started = time.monotonic()
    last = 0.0

    async def progress(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if done == total or now - last >= _PROGRESS_EVERY_S:
            last = now
            await store.set_export_progress(export_id, done, total)

    try:
        work.mkdir(parents=True, exist_ok=True)
        part = work / "export.zip"
        report = await write_export(settings, store, blobs, user, part, progress=progress)
        key = export_blob_key(user.id, export_id)
        await asyncio.to_thread(blobs.put_file, key, part)
        expires = int(time.time() * 1000 + settings.export.ttl_hours * 3_600_000)
        if not await store.finish_export(export_id, blob_key=key,
                                         size_bytes=report.size_bytes, expires_at_ms=expires):
            await asyncio.to_thread(blobs.delete, key)  # failed or expired meanwhile
            return None
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
    delay = max(0.0, expires / 1000 - time.time())
    await store.enqueue_job(EXPIRE_JOB, {"export_id": export_id}, delay_s=delay,
                            dedupe_key=f"{EXPIRE_JOB}:{export_id}")
    log.info("export %d of user %d done: %d images, %d bytes in %.1f s", export_id, user.id,
             report.images, report.size_bytes, time.monotonic() - started)
    return report


# -- writing the zip --------------------------------------------------------------------------
class _JsonArray:
    """A JSON array (or an object around one) written to a file one item at a time."""

    def __init__(self, path: Path, head: bytes = b"[\n", tail: bytes = b"\n]\n") -> None:
        self.path = path
        self.fh: IO[bytes] = open(path, "wb")  # noqa: SIM115 (closed in close())
        self.fh.write(head)
        self.tail = tail
        self.first = True

    def add(self, obj: Any) -> None:
        if not self.first:
            self.fh.write(b",\n")
        self.first = False
        self.fh.write(orjson.dumps(obj))

    def close(self) -> None:
        self.fh.write(self.tail)
        self.fh.close()


_GEOJSON_HEAD = b'{"type": "FeatureCollection", "features": [\n'
_GEOJSON_TAIL = b"\n]}\n"


async def _pages(store: Store, username: str) -> AsyncIterator[list[Image]]:
    """Every image of a user, a page at a time, by (captured_at, id)."""
    after: tuple[int, int] | None = None
    while True:
        page = await store.search_images(ImageSearch(creator_username=username, limit=_PAGE,
                                                     after=after))
        if page.items:
            yield page.items
        if page.next_after is None:
            return
        after = (page.next_after[0], page.next_after[1])


def _zip_time(ms: int) -> tuple[int, int, int, int, int, int]:
    when = max(datetime.fromtimestamp(ms / 1000, UTC), _ZIP_EPOCH)
    return (when.year, when.month, when.day, when.hour, when.minute, when.second)


@dataclass
class BlobReader:
    """One blob opened for reading: its size and its bytes in chunks."""

    size: int
    chunks: Iterator[bytes]


def open_blob(blobs: BlobStore, key: str, chunk: int = _CHUNK) -> BlobReader | None:
    """A blob read in chunks, never the whole object at once when the store can stream (a
    local file, or S3 through obstore's streaming GET); None when it does not exist."""
    path = blobs.local_path(key)
    if path is not None:
        try:
            fh = open(path, "rb")  # noqa: SIM115 (closed by the generator)
        except (FileNotFoundError, IsADirectoryError):
            return None

        def read() -> Iterator[bytes]:
            with fh:
                while data := fh.read(chunk):
                    yield data

        return BlobReader(os.fstat(fh.fileno()).st_size, read())
    remote = getattr(blobs, "_store", None)  # S3Blobs' obstore client (docs/export.md)
    if remote is not None:
        import obstore

        try:
            result = obstore.get(remote, key)
        except FileNotFoundError:
            return None
        stream = result.stream(min_chunk_size=chunk)
        return BlobReader(int(result.meta["size"]), (bytes(part) for part in stream))
    try:
        data = blobs.get_bytes(key)
    except FileNotFoundError:
        return None
    return BlobReader(len(data), iter((data,)))


def _copy_original(blobs: BlobStore, zf: zipfile.ZipFile, image: Image, name: str) -> str:
    """Write one image's original into the zip: "unblurred_upload", "served_original", or
    "missing" when neither blob exists (the image is written without a file)."""
    served = image_blob_key(image.id, "original", image.media_version)
    for key, kind in ((private_source_key(image.id), "unblurred_upload"),
                      (served, "served_original")):
        blob = open_blob(blobs, key)
        if blob is None:
            continue
        info = zipfile.ZipInfo(name, _zip_time(image.captured_at_ms))
        info.compress_type = zipfile.ZIP_STORED  # JPEGs do not shrink
        info.file_size = blob.size
        # ZIP64 headers only for an entry that needs them; the archive switches to ZIP64 by
        # itself past 4 GiB or 65,535 entries (allowZip64).
        with zf.open(info, "w", force_zip64=blob.size >= _ZIP64_ENTRY) as out:
            for data in blob.chunks:
                out.write(data)
        return kind
    return "missing"


@dataclass
class _Spooled:
    """The metadata files of an export being written, spooled beside the zip."""

    images: _JsonArray
    images_geo: _JsonArray
    detections: _JsonArray

    @classmethod
    def open(cls, spool: Path) -> _Spooled:
        return cls(_JsonArray(spool / "images.json"),
                   _JsonArray(spool / "images.geojson", _GEOJSON_HEAD, _GEOJSON_TAIL),
                   _JsonArray(spool / "detections.json"))

    def close(self) -> None:
        _close_all(self.images, self.images_geo, self.detections)


def _write_image(blobs: BlobStore, zf: zipfile.ZipFile, spooled: _Spooled, image: Image,
                 obj: Json, detections: list[Json]) -> str:
    """Write one image into the export: its original (`_copy_original`, whose outcome it
    returns) and its metadata. One thread hop per image: the blob reads and the disk writes
    stay off the event loop (issue #22: a stalled store or disk froze the worker's lease
    renewals) without a hop per small write."""
    name = f"originals/{image.sequence_id}/{image.id}.jpg"
    kind = _copy_original(blobs, zf, image, name)
    spooled.images.add(obj)
    props = {k: v for k, v in obj.items() if k != "geometry"}
    props["file"] = name if kind != "missing" else None
    props["original"] = kind
    spooled.images_geo.add({"type": "Feature", "id": obj["id"],
                            "geometry": obj.get("geometry"), "properties": props})
    for detection in detections:
        spooled.detections.add(detection)
    return kind


async def write_export(settings: Settings, store: Store, blobs: BlobStore, user: User,
                       out: Path, *, progress: Progress | None = None) -> ExportReport:
    """Write the zip of every image, sequence and detection of `user` to `out` (layout in
    the module docstring); `progress(done, total)` after every image. Metadata is spooled to
    files beside `out` and copied in at the end, so memory does not grow with the account."""
    spool = out.parent / (out.name + ".spool")
    spool.mkdir(parents=True, exist_ok=True)
    try:
        return await _write(settings, store, blobs, user, out, spool, progress)
    finally:
        await asyncio.to_thread(shutil.rmtree, spool, True)


async def _write(settings: Settings, store: Store, blobs: BlobStore, user: User, out: Path,
                 spool: Path, progress: Progress | None) -> ExportReport:
    report = ExportReport()
    total = 0
    sequence_ids: set[str] = set()
    async for items in _pages(store, user.username):
        total += len(items)
        sequence_ids.update(im.sequence_id for im in items)
    if progress is not None:
        await progress(0, total)
    renderer = Renderer(store, settings.base_url, max_objects=2**62)
    image_tree = parse_fields(IMAGE_FIELDS)
    detection_tree = parse_fields(DETECTION_FIELDS)
    spooled = await asyncio.to_thread(_Spooled.open, spool)
    zf = zipfile.ZipFile(out, "w", allowZip64=True)
    try:
        async for items in _pages(store, user.username):
            rendered = await renderer.render("Image", items, image_tree)
            by_image = await store.detections_for_images([im.id for im in items])
            for image, obj in zip(items, rendered, strict=True):
                detections = by_image.get(image.id, [])
                detection_objs = [
                    {**det_obj, "image": {"id": str(det.image_id)}}
                    for det, det_obj in zip(detections, await renderer.render(
                        "Detection", detections, detection_tree), strict=True)]
                kind = await asyncio.to_thread(_write_image, blobs, zf, spooled, image, obj,
                                               detection_objs)
                if kind == "unblurred_upload":
                    report.unblurred_uploads += 1
                elif kind == "served_original":
                    report.served_originals += 1
                else:
                    report.missing_originals.append(image.id)
                report.detections += len(detections)
                report.images += 1
                if progress is not None:
                    await progress(report.images, max(total, report.images))
        await asyncio.to_thread(spooled.close)
        report.sequences = await _write_sequences(store, user, sorted(sequence_ids), spool)
        exported_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        manifest = {"format": FORMAT_VERSION, "generator": "wayview",
                    "server": settings.base_url, "exported_at": exported_at,
                    "user": {"id": str(user.id), "username": user.username},
                    "counts": report.counts(),
                    "missing_originals": [str(i) for i in report.missing_originals]}
        readme = _README.format(base_url=settings.base_url, exported_at=exported_at,
                                username=user.username)
        await asyncio.to_thread(_finish_zip, zf, spool, readme, manifest)
    finally:
        zf.close()  # a no-op once `_finish_zip` closed it
        for array in (spooled.images, spooled.images_geo, spooled.detections):
            array.fh.close()
    report.size_bytes = out.stat().st_size
    return report


def _finish_zip(zf: zipfile.ZipFile, spool: Path, readme: str, manifest: Json) -> None:
    zf.writestr("README.txt", readme, compress_type=zipfile.ZIP_DEFLATED)
    zf.writestr("manifest.json", orjson.dumps(manifest, option=orjson.OPT_INDENT_2),
                compress_type=zipfile.ZIP_DEFLATED)
    for name in ("images.json", "images.geojson", "sequences.json", "sequences.geojson",
                 "detections.json"):
        zf.write(spool / name, f"metadata/{name}", compress_type=zipfile.ZIP_DEFLATED)
    zf.close()  # here, in the thread: it writes the central directory (~100 B an entry)


async def _write_sequences(store: Store, user: User, sequence_ids: list[str], spool: Path
                           ) -> int:
    """metadata/sequences.json and .geojson, one sequence read at a time; how many."""
    plain, geo = await asyncio.to_thread(lambda: (
        _JsonArray(spool / "sequences.json"),
        _JsonArray(spool / "sequences.geojson", _GEOJSON_HEAD, _GEOJSON_TAIL)))
    count = 0
    try:
        for sequence_id in sequence_ids:
            page = await store.search_images(ImageSearch(sequence_ids=(sequence_id,)))
            images = [im for im in page.items if im.creator_id == user.id]
            if not images:
                continue  # deleted while the export ran
            first = images[0]
            obj: Json = {
                "id": sequence_id, "image_ids": [str(im.id) for im in images],
                "image_count": len(images),
                "first_captured_at": first.captured_at_ms,
                "last_captured_at": images[-1].captured_at_ms,
                "first_captured_at_iso": iso_utc(first.captured_at_ms),
                "last_captured_at_iso": iso_utc(images[-1].captured_at_ms),
                "creator": {"id": str(user.id), "username": user.username},
            }
            if first.organization_id is not None:
                obj["organization"] = {"id": str(first.organization_id)}
            coords = [[im.lon, im.lat] for im in images]
            geometry = ({"type": "LineString", "coordinates": coords} if len(coords) > 1
                        else {"type": "Point", "coordinates": coords[0]})
            feature = {"type": "Feature", "id": sequence_id, "geometry": geometry,
                       "properties": {k: v for k, v in obj.items() if k != "image_ids"}}
            await asyncio.to_thread(_add_all, ((plain, obj), (geo, feature)))
            count += 1
    finally:
        await asyncio.to_thread(_close_all, plain, geo)
    return count


def _add_all(items: Iterable[tuple[_JsonArray, Json]]) -> None:
    for array, obj in items:
        array.add(obj)


def _close_all(*arrays: _JsonArray) -> None:
    for array in arrays:
        array.close()


async def export_to_file(settings: Settings, store: Store, blobs: BlobStore, user: User,
                         out: Path, *, progress: Progress | None = None) -> ExportReport:
    """`wayview export`: write a user's zip straight to `out` (an operator's copy: no export
    row, no expiry), through `<out>.part` so a killed run leaves no half zip under the name;
    recorded in the audit log as done by an operator."""
    part = out.with_name(out.name + ".part")
    try:
        report = await write_export(settings, store, blobs, user, part, progress=progress)
        part.replace(out)
    finally:
        part.unlink(missing_ok=True)
    await _audit(store, None, user.id, None)
    return report


def download_name(username: str, export_id: int) -> str:
    """The file name a download is saved under (only safe characters).

    >>> download_name("frida o'hara", 7)
    'wayview-export-frida_o_hara-7.zip'
    """
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in username)
    return f"wayview-export-{safe.strip('.') or 'user'}-{int(export_id)}.zip"
