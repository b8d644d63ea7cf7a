"""wayview.ingest.upload_job: the `ingest.upload` job — a finished upload becomes sequences.

The job stages the upload as plain JPEG files in a private temporary folder under
`<data_dir>/uploads/work`, then hands that folder to `wayview.ingest.importer.import_paths`
with the uploader as creator and the finish's organization, so uploads and `wayview import`
share one path (metadata, dedup by SHA-256, derivatives, pipeline).

- `mly_bundle_manifest`: each handle's staged file, in manifest order (hard-linked when the
  filesystem allows, else copied); a handle listed again is staged once, the repeats dropped.
- `zip`: each JPEG member, in entry order, checked but not extracted: the importer reads the
  accepted members from the zip itself (`ZipMembers`), so a job needs no second copy of the
  upload on disk (issue #22). Member names are never used as paths (the members are numbered),
  so there is no zip-slip; the entry count is read from the end record before the central
  directory is loaded, and members that are too large, inflate more than
  `upload.max_zip_ratio` times (every member, however small: its bytes are counted as they
  are inflated), are encrypted or are not images are dropped with a reason.
- `mly_camm_video`, `mly_blackvue_video`: frames every `upload.video_sample_distance_m`
  metres (wayview.ingest.video).

What one upload stages is bounded by `upload.max_expanded_bytes`: every staged byte counts
(zip members as inflated, manifest images); the item that would pass the budget and all after
it are dropped with that reason.

mapillary_tools sends no panorama flag (spec §8.5): a staged JPEG (or zip member, as it is
read) with a 2:1 frame and no XMP gets a GPano packet, so the importer stores it as spherical.

One sequence per upload: the importer's time and distance cuts are off; it still cuts at
`upload.max_sequence_length` images and where the camera changes. Images are ordered by
capture time, ties in upload order. Idempotent: a retried job finds finished uploads done and
images already stored (same SHA-256) skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import shutil
import struct
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from wayview.blobs.base import BlobStore
from wayview.errors import InvalidInput
from wayview.ingest.exif import iter_segments, read_photo_metadata
from wayview.ingest.importer import ImportReport, import_paths
from wayview.ingest.upload_finish import INGEST_JOB, MANIFEST, read_manifest
from wayview.ingest.upload_sessions import (
    UPLOADS_DIR,
    WORK_DIR,
    remove_work_folders,
    staged_path,
    work_prefix,
)
from wayview.ingest.video import video_to_frames
from wayview.model.entities import UploadFinish
from wayview.pipeline.jobs import JobContext, job_handler
from wayview.pipeline.process import discard_journaled_blobs
from wayview.settings import Settings
from wayview.store.base import Store

__all__ = ["ZipMembers", "ingest_upload", "mark_equirectangular", "process_upload",
           "stage_zip"]

log = logging.getLogger("wayview.upload")

_JPEG_NAMES = (".jpg", ".jpeg")
_JPEG_MAGIC = b"\xff\xd8\xff"
_COPY_CHUNK = 1024 * 1024
#: Dropped items listed in a result (the count is always complete).
_MAX_REPORTED_DROPS = 500
_XMP_ID = b"http://ns.adobe.com/xap/1.0/\x00"
_GPANO_XMP = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF'
    ' xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about=""'
    ' xmlns:GPano="http://ns.google.com/photos/1.0/panorama/"'
    ' GPano:ProjectionType="equirectangular" GPano:UsePanoramaViewer="True"'
    ' GPano:FullPanoWidthPixels="{w}" GPano:FullPanoHeightPixels="{h}"'
    ' GPano:CroppedAreaImageWidthPixels="{w}" GPano:CroppedAreaImageHeightPixels="{h}"'
    ' GPano:CroppedAreaLeftPixels="0" GPano:CroppedAreaTopPixels="0"/>'
    '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
)


@dataclass(slots=True)
class _Staged:
    """Staged files and what was dropped on the way (by the client's name for it)."""

    names: dict[str, str] = field(default_factory=dict)  # staged file name → upload name
    dropped: list[dict[str, str]] = field(default_factory=list)
    staged_bytes: int = 0
    #: A zip's accepted members (staged name → member, inflated size), read from `archive`
    #: rather than copied into the staging folder.
    members: dict[str, tuple[zipfile.ZipInfo, int]] = field(default_factory=dict)
    archive: Path | None = None

    def drop(self, item: str, reason: str) -> None:
        self.dropped.append({"item": item[:200], "reason": reason})


def _budget_reason(budget: int) -> str:
    return f"the upload exceeds its budget of {budget} staged bytes (upload.max_expanded_bytes)"


@job_handler(INGEST_JOB)
async def ingest_upload(ctx: JobContext, payload: dict[str, object]) -> None:
    """Process one finished upload (payload `{"cluster_id": <int>}`)."""
    cluster_id = payload.get("cluster_id")
    if not isinstance(cluster_id, int):
        log.error("ingest.upload job %d without a cluster id", ctx.job.id)
        return
    await process_upload(ctx.settings, ctx.store, ctx.blobs, cluster_id)


async def process_upload(settings: Settings, store: Store, blobs: BlobStore,
                         cluster_id: int) -> dict[str, Any] | None:
    """Turn a finished upload into sequences; the result stored on the finish (None when the
    finish no longer exists, e.g. expired and cleaned up)."""
    finish = await store.get_upload_finish(cluster_id)
    if finish is None:
        log.warning("upload cluster %d no longer exists", cluster_id)
        return None
    if finish.result is not None and finish.result.get("state") == "done":
        return finish.result
    # An earlier attempt killed mid-way (its lease ran out) may have left derivatives.
    await discard_journaled_blobs(store, blobs, journal_owner(cluster_id))
    result = await _process(settings, store, blobs, finish)
    await store.set_upload_result(cluster_id, result)
    log.info("upload cluster %d (%s): %s", cluster_id, finish.file_type,
             {k: v for k, v in result.items() if k != "dropped"})
    return result


async def _process(settings: Settings, store: Store, blobs: BlobStore,
                   finish: UploadFinish) -> dict[str, Any]:
    users = await store.get_users([finish.user_id])
    user = users.get(finish.user_id)
    if user is None:
        return {"state": "failed", "error": "the uploader no longer exists"}
    work = settings.data_dir / UPLOADS_DIR / WORK_DIR
    work.mkdir(parents=True, exist_ok=True)
    # An earlier attempt killed mid-way left its folder: this attempt owns the job now.
    await asyncio.to_thread(remove_work_folders, work, finish.cluster_id)
    with tempfile.TemporaryDirectory(prefix=work_prefix(finish.cluster_id), dir=work) as tmp:
        folder = Path(tmp)
        try:
            staged = await _stage(settings, store, finish, folder)
            await asyncio.to_thread(_mark_panoramas, folder)
            with contextlib.ExitStack() as stack:
                paths, read = [folder], None
                if staged.archive is not None:
                    members = stack.enter_context(ZipMembers(staged.archive, staged.members))
                    paths, read = [folder / name for name in staged.members], members.read
                report = await import_paths(
                    store, blobs, _import_settings(settings), paths, username=user.username,
                    organization_id=finish.organization_id, max_time_gap_s=math.inf,
                    max_distance_gap_m=math.inf,
                    journal_owner=journal_owner(finish.cluster_id), read=read,
                )
        except InvalidInput as exc:
            return {"state": "failed", "error": exc.message}
    return _result(report, staged)


def journal_owner(cluster_id: int) -> str:
    """The blob-journal owner of one upload's processing (stable across attempts)."""
    return f"upload:{cluster_id}"


def _import_settings(settings: Settings) -> Settings:
    imports = settings.imports.model_copy(
        update={"max_sequence_length": settings.upload.max_sequence_length})
    return settings.model_copy(update={"imports": imports})


def _result(report: ImportReport, staged: _Staged) -> dict[str, Any]:
    dropped = list(staged.dropped)
    for skipped in report.skipped:
        dropped.append({"item": staged.names.get(skipped.path.name, skipped.path.name),
                        "reason": skipped.reason})
    return {
        "state": "done",
        "imported": report.imported,
        "sequences": [{"id": s.id, "images": s.image_count} for s in report.sequences],
        "staged_bytes": staged.staged_bytes,
        "dropped_count": len(dropped),
        "dropped": dropped[:_MAX_REPORTED_DROPS],
    }


async def _stage(settings: Settings, store: Store, finish: UploadFinish, folder: Path
                 ) -> _Staged:
    limits = settings.upload
    source = await _session_path(settings, store, finish.user_id, finish.handle)
    if finish.file_type == MANIFEST:
        handles = await asyncio.to_thread(read_manifest, source, max_handles=limits.max_images)
        sessions = await store.upload_sessions_by_handle(finish.user_id, handles)
        files = [(h, staged_path(settings, finish.user_id, sessions[h].session_key)
                  if h in sessions else None) for h in handles]
        return await asyncio.to_thread(_stage_files, files, folder, limits.max_image_bytes,
                                       limits.max_expanded_bytes)
    if finish.file_type == "zip":
        return await asyncio.to_thread(stage_zip, source, max_images=limits.max_images,
                                       max_image_bytes=limits.max_image_bytes,
                                       max_expanded_bytes=limits.max_expanded_bytes,
                                       max_ratio=limits.max_zip_ratio)
    frames = await asyncio.to_thread(
        video_to_frames, source, folder, distance_m=limits.video_sample_distance_m,
        max_frames=limits.max_images, fallback_epoch_s=finish.created_at_ms / 1000,
        prefer_blackvue=finish.file_type == "mly_blackvue_video",
    )
    return _Staged(names={p.name: f"frame at {p.stem}" for p in frames.paths},
                   staged_bytes=sum(p.stat().st_size for p in frames.paths))


async def _session_path(settings: Settings, store: Store, user_id: int, handle: str) -> Path:
    sessions = await store.upload_sessions_by_handle(user_id, [handle])
    if handle not in sessions:
        raise InvalidInput("the upload session no longer exists")
    return staged_path(settings, user_id, sessions[handle].session_key)


def _stage_files(files: list[tuple[str, Path | None]], folder: Path, max_bytes: int,
                 budget: int = 0) -> _Staged:
    """Stage a manifest's files in order: each handle once (its repeats are dropped), linked
    rather than copied where the filesystem allows, within `budget` bytes (0 = unlimited)."""
    staged = _Staged()
    first_index: dict[str, int] = {}
    over_budget = False
    for index, (handle, path) in enumerate(files):
        label = f"image {index} ({handle[:12]}…)"
        if handle in first_index:
            staged.drop(label, f"duplicate of image {first_index[handle]} (same file handle)")
            continue
        first_index[handle] = index
        if path is None:
            staged.drop(label, "unknown file handle")
            continue
        if over_budget:
            staged.drop(label, _budget_reason(budget))
            continue
        try:
            size = path.stat().st_size
            if size > max_bytes:
                staged.drop(label, f"larger than {max_bytes} bytes")
                continue
            if budget and staged.staged_bytes + size > budget:
                over_budget = True
                staged.drop(label, _budget_reason(budget))
                continue
            target = folder / f"{index:06d}.jpg"
            _link_or_copy(path, target)
        except FileNotFoundError:
            staged.drop(label, "no bytes uploaded")
            continue
        staged.staged_bytes += size
        staged.names[target.name] = label
    return staged


def _link_or_copy(source: Path, target: Path) -> None:
    """`target` with `source`'s bytes: a hard link (no space used; both are under `data_dir`),
    or a copy where links are not possible. Staged files are never written in place
    (`_mark_panoramas` replaces them), so the session's bytes stay as uploaded."""
    try:
        os.link(source, target)
    except FileNotFoundError:
        raise  # no bytes uploaded: the caller drops the image
    except OSError:  # another filesystem, or links not supported
        shutil.copyfile(source, target)


def stage_zip(path: Path, *, max_images: int, max_image_bytes: int,
              max_expanded_bytes: int = 0, max_ratio: int = 100) -> _Staged:
    """Check the JPEG members of a zip, in entry order, without extracting them: each one
    accepted is inflated once (its bytes counted and dropped) and named `000000.jpg`, … for
    the importer, which reads it from the zip (`ZipMembers`).

    Every member counts: one that inflates more than `max_ratio` times its compressed size is
    dropped (declared or as it is inflated), and once the inflated bytes would pass
    `max_expanded_bytes` (0 = unlimited) staging stops: that member and all after it are
    dropped with the reason.

    Raises:
        InvalidInput: not a zip, or a central directory with too many entries.
    """
    entries = zip_entry_count(path)
    if entries is None:
        raise InvalidInput("not a zip file")
    if entries > 2 * max_images + 100:
        raise InvalidInput(f"zip has {entries} entries (at most {max_images} images allowed)")
    staged = _Staged(archive=path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InvalidInput(f"not a zip file: {exc}") from None
    over_budget = False
    with archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            reason = _member_problem(info, len(staged.names), max_images, max_image_bytes,
                                     max_ratio)
            if reason is None and (over_budget or (
                    max_expanded_bytes
                    and staged.staged_bytes + info.file_size > max_expanded_bytes)):
                over_budget = True
                reason = _budget_reason(max_expanded_bytes)
            if reason is not None:
                staged.drop(info.filename, reason)
                continue
            room = (max_expanded_bytes - staged.staged_bytes if max_expanded_bytes
                    else max_image_bytes)
            size, reason = _inflate(archive, info, max_image_bytes, room, max_ratio)
            if reason is not None:
                staged.drop(info.filename, reason)
                if reason == _OVER_ROOM:
                    over_budget = True
                    staged.dropped[-1]["reason"] = _budget_reason(max_expanded_bytes)
                continue
            name = f"{len(staged.names):06d}.jpg"
            staged.staged_bytes += size
            staged.names[name] = info.filename[:200]
            staged.members[name] = (info, size)
    return staged


class ZipMembers:
    """The accepted members of an upload's zip (`stage_zip`), read from the zip one at a time
    as the importer asks for them: nothing of it is extracted to disk.

    A member is read again the same way it was checked, and refused (OSError) if it no longer
    inflates to the size counted then; a 2:1 member without XMP gets its GPano packet
    (`mark_equirectangular`) on every read, so both of the importer's reads see one content.
    Safe to call from the importer's threads: `zipfile` reads through one shared handle under
    its lock.
    """

    def __init__(self, path: Path, members: dict[str, tuple[zipfile.ZipInfo, int]]) -> None:
        self._members = members
        self._file = path.open("rb")
        try:
            # A file object of ours: zipfile never closes it, so its (unlocked) count of open
            # members does not matter when the threads close theirs.
            self._archive = zipfile.ZipFile(self._file)
        except BaseException:
            self._file.close()
            raise

    def __enter__(self) -> ZipMembers:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the zip."""
        self._archive.close()
        self._file.close()

    def read(self, path: Path) -> bytes:
        """The bytes of the member staged as `path.name`.

        Raises:
            OSError: no such member, or it cannot be read as it was checked.
        """
        try:
            info, size = self._members[path.name]
        except KeyError:
            raise FileNotFoundError(f"no zip member staged as {path.name}") from None
        try:
            with self._archive.open(info) as src:
                data = src.read(size + 1)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, ValueError,
                EOFError) as exc:
            raise OSError(f"corrupt member: {exc}") from None
        if len(data) != size:
            raise OSError(f"corrupt member: {len(data)} bytes, {size} when checked")
        return mark_equirectangular(data) or data


def _member_problem(info: zipfile.ZipInfo, count: int, max_images: int, max_bytes: int,
                    max_ratio: int) -> str | None:
    if not info.filename.lower().endswith(_JPEG_NAMES):
        return "not a JPEG image"
    if info.flag_bits & 0x1:
        return "encrypted"
    if info.file_size > max_bytes:
        return f"larger than {max_bytes} bytes"
    if info.file_size > max_ratio * max(info.compress_size, 1):
        return "compression ratio too high"
    if count >= max_images:
        return f"more than {max_images} images"
    return None


_OVER_ROOM = "over the staging budget"


def _inflate(archive: zipfile.ZipFile, info: zipfile.ZipInfo, max_bytes: int, room: int,
             max_ratio: int) -> tuple[int, str | None]:
    """Inflate one member (its bytes are dropped), counting what it really inflates to (its
    header may lie): at most `max_bytes`, `room` (what is left of the budget) and
    `max_ratio` times its compressed size; (its size, None) or (_, why it failed)."""
    total = 0
    ratio_cap = max_ratio * max(info.compress_size, 1)
    try:
        with archive.open(info) as src:
            while chunk := src.read(_COPY_CHUNK):
                total += len(chunk)
                if total > max_bytes:
                    return total, f"larger than {max_bytes} bytes"
                if total > ratio_cap:
                    return total, "compression ratio too high"
                if total > room:
                    return total, _OVER_ROOM
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, ValueError, EOFError,
            OSError) as exc:
        return total, f"corrupt member: {exc}"
    return total, None


def zip_entry_count(path: Path) -> int | None:
    """The entry count of a zip's end-of-central-directory record (zip64 too); None when the
    file is no zip. Read before `zipfile` loads the whole central directory into memory."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            start = max(0, size - (22 + 65_535))
            fh.seek(start)
            tail = fh.read()
            at = tail.rfind(b"PK\x05\x06")
            if at < 0 or len(tail) - at < 22:
                return None
            (entries,) = struct.unpack_from("<H", tail, at + 10)
            if entries != 0xFFFF:
                return int(entries)
            locator = tail.rfind(b"PK\x06\x07", 0, at)
            if locator < 0 or at - locator < 20:
                return None
            (record,) = struct.unpack_from("<Q", tail, locator + 8)
            fh.seek(record)
            head = fh.read(56)
            if len(head) < 56 or head[:4] != b"PK\x06\x06":
                return None
            (entries64,) = struct.unpack_from("<Q", head, 32)
            return int(entries64)
    except OSError:
        return None


def _mark_panoramas(folder: Path) -> None:
    for path in sorted(folder.glob("*.jpg")):
        data = path.read_bytes()
        marked = mark_equirectangular(data)
        if marked is not None:
            # A new file replaces the staged one: it may be a hard link to a session's bytes.
            fresh = path.with_suffix(".tmp")
            fresh.write_bytes(marked)
            fresh.replace(path)


def mark_equirectangular(data: bytes) -> bytes | None:
    """`data` with a GPano XMP packet when it is a 2:1 JPEG without XMP; None otherwise."""
    try:
        meta = read_photo_metadata(data)
    except InvalidInput:
        return None
    if meta.is_pano or meta.width != 2 * meta.height:
        return None
    insert_at = 2
    for marker, start, end in iter_segments(data):
        if marker == 0xE1 and data.startswith(_XMP_ID, start):
            return None  # an XMP packet without GPano: leave the file as it is
        if 0xE0 <= marker <= 0xEF and insert_at == start - 4:
            insert_at = end
    packet = _XMP_ID + _GPANO_XMP.format(w=meta.width, h=meta.height).encode("utf-8")
    segment = b"\xff\xe1" + (len(packet) + 2).to_bytes(2, "big") + packet
    return data[:insert_at] + segment + data[insert_at:]
