"""wayview.ingest.importer: import folders of geotagged JPEGs as sequences (`wayview import`).

Two passes over the files, so memory stays bounded however large the folder is:

1. **Scan** (thread pool): read each file, hash it, read its metadata, drop the bytes. Files that
   are not usable JPEGs, are already stored (same SHA-256) or repeat an earlier file of the run
   are reported as skipped. The rest is cut into sequences (`sequencing.cut_sequences`).
2. **Process and store**, one sequence at a time: reserve image ids, then in the thread pool
   read each file again and run the per-image pipeline stages (privacy blurring, thumbnails,
   image pyramid; `wayview.pipeline.process`), then the per-sequence ones (computed positions,
   merge component, meshes, sfm_cluster); only then insert the sequence and its rows in one
   `store.insert_sequence` call, so a sequence is either fully processed and visible or not
   at all. If that insert fails, the sequence's blobs are deleted again.

Pillow decodes and resizes with the GIL released, so the pool (one thread per CPU) runs the
expensive part in parallel; at most two files per thread are in memory at once.

Files need not be on disk: with `read`, the paths are only names and `read` gives each one's
bytes (an upload's zip members are read from the zip this way, so a job needs no second copy
of the upload on disk; `wayview.ingest.upload_job`).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import hashlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from collections.abc import Sequence as Seq
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np

from wayview.blobs.base import BlobStore, image_blob_folders
from wayview.errors import InvalidInput, WayviewError, is_transient
from wayview.ids import new_sequence_key
from wayview.ingest.exif import PhotoMetadata, read_photo_metadata
from wayview.ingest.sequencing import SourcePhoto, cut_sequences
from wayview.model.entities import Image, Sequence
from wayview.pipeline.detectors import Found
from wayview.pipeline.limits import check_frame, check_scans
from wayview.pipeline.perception import detections_from, update_map_features
from wayview.pipeline.process import (
    Derived,
    ImageProcessor,
    absorb_merge_components,
    reconstruct_sequence,
    sequence_blob_journal,
)
from wayview.pipeline.sfm_job import enqueue_sfm
from wayview.settings import PipelineSettings, Settings
from wayview.store.base import Store

log = logging.getLogger("wayview.ingest")

__all__ = [
    "DEFAULT_CAMERA_PARAMETERS",
    "FileReader",
    "ImportReport",
    "ImportedSequence",
    "SkippedFile",
    "find_photo_files",
    "import_paths",
]

#: `camera_parameters` of a perspective/fisheye image whose focal length is unknown (spec §3.2:
#: what MapillaryJS assumes for unknown cameras).
DEFAULT_CAMERA_PARAMETERS = (0.85, 0.0, 0.0)
ALREADY_IMPORTED = "already imported"
#: Files in flight per worker thread (bytes of at most this many files per thread in memory).
_IN_FLIGHT_PER_WORKER = 2
#: Files per batch of pool tasks (bounds the number of asyncio tasks alive at once).
_MAP_CHUNK = 256
#: Hashes per `find_images_by_sha256` call.
_HASH_BATCH = 500
_JPEG_MAGIC = b"\xff\xd8\xff"
#: Errors of a full disk while storing blobs: the whole run fails (a job retries it once there
#: is room) rather than dropping the images one by one (issue #22).
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_T = TypeVar("_T")
_R = TypeVar("_R")

#: Reads the bytes of one file an import names (called in the import's worker threads, twice
#: per file: scan, then store); raises OSError when it cannot.
FileReader = Callable[[Path], bytes]


class ImportedSequence(NamedTuple):
    """A sequence the import created."""

    id: str
    image_count: int


class SkippedFile(NamedTuple):
    """A file that was not imported, and why."""

    path: Path
    reason: str


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import did: images imported, the new sequences, every skipped file."""

    imported: int
    sequences: tuple[ImportedSequence, ...]
    skipped: tuple[SkippedFile, ...]


class _Scanned(NamedTuple):
    path: Path
    metadata: PhotoMetadata | None
    reason: str | None


def find_photo_files(paths: Seq[Path]) -> tuple[list[Path], list[SkippedFile]]:
    """The files an import of `paths` would try, and the paths it skips outright.

    A named file is always tried (whatever its extension). Folders are walked recursively, in
    name order, without following symbolic links: a link inside a folder is reported as skipped
    rather than followed (it could lead out of the tree). Hidden files and folders (names
    starting with a dot, such as `.DS_Store` or `._IMG_0001.JPG`) are left out silently.

    Returns:
        (files, skipped): the files in a stable order, each once; the unusable paths.
    """
    files: list[Path] = []
    skipped: list[SkippedFile] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            files.append(path)

    for root in paths:
        if root.is_dir():
            for path, is_link in _walk(root):
                if is_link:
                    skipped.append(SkippedFile(path, "symbolic link (not followed)"))
                else:
                    add(path)
        elif root.is_file():
            add(root)
        elif root.is_symlink():
            skipped.append(SkippedFile(root, "broken symbolic link"))
        else:
            skipped.append(SkippedFile(root, "no such file or folder"))
    return files, skipped


def _walk(root: Path) -> Iterator[tuple[Path, bool]]:
    """(path, is_symlink) of the regular files and links under `root`, depth first, by name."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        if entry.is_symlink():
            yield path, True
        elif entry.is_dir(follow_symlinks=False):
            yield from _walk(path)
        elif entry.is_file(follow_symlinks=False):
            yield path, False


async def import_paths(
    store: Store,
    blobs: BlobStore,
    settings: Settings,
    paths: Seq[Path],
    *,
    username: str,
    organization_id: int | None = None,
    max_time_gap_s: float | None = None,
    max_distance_gap_m: float | None = None,
    progress: Callable[[int], None] | None = None,
    journal_owner: str | None = None,
    read: FileReader | None = None,
) -> ImportReport:
    """Import the JPEGs under `paths` for `username` and report what happened.

    Args:
        store: an opened store.
        blobs: where the originals and thumbnails go.
        settings: `settings.imports` gives the sequence cut rules.
        paths: files and folders (folders are walked recursively, see `find_photo_files`).
        username: the creator of every imported image.
        organization_id: an organization the user belongs to, or None.
        max_time_gap_s: overrides `settings.imports.max_time_gap_s`.
        max_distance_gap_m: overrides `settings.imports.max_distance_gap_m`.
        progress: called with the number of files just finished (imported or skipped); over a
            run the calls add up to the number of files `find_photo_files` returns.
        journal_owner: the store's blob-journal owner of this run (a job's identity); a
            retry of the same job discards what an interrupted earlier run left behind
            (`wayview.pipeline.process.discard_journaled_blobs`). None: a fresh owner.
        read: reads a file's bytes instead of the filesystem: `paths` are then the files
            themselves, in order (nothing is walked or opened), and must be distinct.

    Returns:
        The report: images imported, sequences created, files skipped with reasons (a file
        whose content is already stored is skipped as "already imported").

    Raises:
        InvalidInput: unknown user or organization, or a user who is not a member of it.
    """
    user = await store.get_user_by_username(username)
    if user is None:
        raise InvalidInput(f"unknown user {username!r}")
    if organization_id is not None:
        if organization_id not in await store.get_organizations([organization_id]):
            raise InvalidInput(f"unknown organization {organization_id}")
        if not await store.is_organization_member(organization_id, user.id):
            raise InvalidInput(
                f"user {username!r} is not a member of organization {organization_id}"
            )
    rules = settings.imports
    owner = journal_owner or f"import:{uuid.uuid4().hex}"
    files, skipped = (list(paths), []) if read is not None else find_photo_files(paths)
    report = _Report(skipped, progress)
    workers = os.cpu_count() or 1
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wayview-import") as pool:
        runner = _Runner(loop, pool, workers * _IN_FLIGHT_PER_WORKER)
        photos = await _scan(store, files, runner, report, settings.pipeline, read)
        sequences = cut_sequences(
            photos,
            max_time_gap_s=max_time_gap_s if max_time_gap_s is not None else rules.max_time_gap_s,
            max_distance_gap_m=(
                max_distance_gap_m if max_distance_gap_m is not None else rules.max_distance_gap_m
            ),
            max_sequence_length=rules.max_sequence_length,
        )
        processor = ImageProcessor(settings.pipeline, blobs)
        for run in sequences:
            await _store_sequence(store, processor, runner, report, run, user.id,
                                  organization_id, owner, read)
    return ImportReport(report.imported, tuple(report.sequences), tuple(report.skipped))


class _Report:
    """The report being built, and the progress callback it feeds."""

    def __init__(self, skipped: list[SkippedFile], progress: Callable[[int], None] | None):
        self.imported = 0
        self.sequences: list[ImportedSequence] = []
        self.skipped = list(skipped)
        self._progress = progress

    def skip(self, path: Path, reason: str, *, counted: bool = False) -> None:
        """Record a skipped file; `counted` when its progress was already reported."""
        self.skipped.append(SkippedFile(path, reason))
        if not counted:
            self.advance(1)

    def advance(self, count: int) -> None:
        if self._progress is not None and count:
            self._progress(count)


class _Runner:
    """Runs blocking work in the pool with a bounded number of calls in flight."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: Executor, in_flight: int) -> None:
        self._loop = loop
        self._pool = pool
        self._slots = asyncio.Semaphore(in_flight)

    async def call(self, fn: Callable[[_T], _R], arg: _T) -> _R:
        """`fn(arg)` in the pool, waiting for a free slot first."""
        async with self._slots:
            return await self._loop.run_in_executor(self._pool, fn, arg)

    async def map(self, fn: Callable[[_T], _R], args: Seq[_T]) -> list[_R]:
        """`fn` over `args` in the pool, results in order (tasks are created chunk by chunk)."""
        results: list[_R] = []
        for start in range(0, len(args), _MAP_CHUNK):
            chunk = args[start : start + _MAP_CHUNK]
            results.extend(await asyncio.gather(*(self.call(fn, arg) for arg in chunk)))
        return results


def _scan_file(path: Path, limits: PipelineSettings, read: FileReader | None = None
               ) -> _Scanned:
    """Read one file's metadata (the bytes are dropped afterwards); a file whose frame header
    claims too many pixels, or more than its bytes can hold, is refused here, before anything
    decodes it (`wayview.pipeline.limits`)."""
    try:
        if read is not None:
            data = read(path)
            if not data.startswith(_JPEG_MAGIC):
                return _Scanned(path, None, "not a JPEG")
        else:
            with path.open("rb") as fh:
                if fh.read(len(_JPEG_MAGIC)) != _JPEG_MAGIC:
                    return _Scanned(path, None, "not a JPEG")
                fh.seek(0)
                data = fh.read()
    except OSError as exc:
        return _Scanned(path, None, f"cannot read: {exc.strerror or exc}")
    try:
        metadata = read_photo_metadata(data)
        check_frame(metadata.width, metadata.height, len(data),
                    max_pixels=limits.max_image_pixels,
                    min_bytes_per_megapixel=limits.min_bytes_per_megapixel)
        check_scans(data, limits.max_jpeg_scans)
    except InvalidInput as exc:
        return _Scanned(path, None, exc.message)
    return _Scanned(path, metadata, None)


async def _scan(
    store: Store, files: list[Path], runner: _Runner, report: _Report,
    limits: PipelineSettings, read: FileReader | None = None,
) -> list[SourcePhoto]:
    """Pass 1: metadata of every file; skips unusable files and content seen before."""
    scanned = await runner.map(functools.partial(_scan_file, limits=limits, read=read), files)
    first_by_hash: dict[str, Path] = {}
    usable: list[tuple[Path, PhotoMetadata]] = []
    for item in scanned:
        if item.metadata is None:
            report.skip(item.path, item.reason or "unreadable")
            continue
        digest = item.metadata.content_sha256
        if digest in first_by_hash:
            report.skip(item.path, f"duplicate of {first_by_hash[digest]}")
            continue
        first_by_hash[digest] = item.path
        usable.append((item.path, item.metadata))
    stored: dict[str, int] = {}
    hashes = list(first_by_hash)
    for start in range(0, len(hashes), _HASH_BATCH):
        stored.update(await store.find_images_by_sha256(hashes[start : start + _HASH_BATCH]))
    photos: list[SourcePhoto] = []
    for path, meta in usable:
        if meta.content_sha256 in stored:
            report.skip(path, ALREADY_IMPORTED)
        else:
            photos.append(SourcePhoto(source=str(path), metadata=meta))
    return photos


class _Job(NamedTuple):
    path: Path
    sha256: str
    image_id: int
    width: int
    height: int


def _write_variants(processor: ImageProcessor, read: FileReader | None = None
                    ) -> Callable[[_Job], Derived | str]:
    """A worker: read the file again, run the per-image pipeline stages (blurring,
    derivatives, pyramid), store the blobs; what was written, or why the file was dropped."""

    def run(job: _Job) -> Derived | str:
        try:
            data = read(job.path) if read is not None else job.path.read_bytes()
        except OSError as exc:
            return f"cannot read: {exc.strerror or exc}"
        if hashlib.sha256(data).hexdigest() != job.sha256:
            return "changed during import"
        try:
            return processor.derive(job.image_id, data, job.width, job.height)
        except InvalidInput as exc:
            return exc.message
        except OSError as exc:
            if exc.errno in _DISK_FULL:
                raise  # not the file's fault: the run fails and its job is retried later
            return f"cannot store: {exc.strerror or exc}"

    return run


async def _store_sequence(
    store: Store,
    processor: ImageProcessor,
    runner: _Runner,
    report: _Report,
    photos: list[SourcePhoto],
    creator_id: int,
    organization_id: int | None,
    owner: str,
    read: FileReader | None = None,
) -> None:
    """Pass 2 for one sequence: every pipeline stage and its blobs, then the rows in one
    insert (the sequence becomes visible only then). The blob folders are journaled under
    `owner` first and forgotten once the rows are in (or the blobs deleted)."""
    ids = await store.reserve_ids("image", len(photos))
    sequence = Sequence(
        id=new_sequence_key(), creator_id=creator_id, organization_id=organization_id
    )
    journal = sequence_blob_journal(ids, sequence.id)
    await store.journal_blobs(owner, journal)
    jobs = [
        _Job(Path(p.source), p.metadata.content_sha256, image_id, p.metadata.width,
             p.metadata.height)
        for p, image_id in zip(photos, ids, strict=True)
    ]
    write = _write_variants(processor, read)
    paths = {job.image_id: job.path for job in jobs}
    outcomes: dict[int, Derived | str] = {}

    async def one(job: _Job) -> None:
        outcomes[job.image_id] = await runner.call(write, job)
        report.advance(1)

    await asyncio.gather(*(one(job) for job in jobs))
    now_ms = int(time.time() * 1000)
    images: list[Image] = []
    written: list[str] = []
    for job, photo in zip(jobs, photos, strict=True):
        outcome = outcomes[job.image_id]
        if isinstance(outcome, str):
            report.skip(job.path, outcome, counted=True)
        else:
            written.extend(outcome.keys)
            images.append(replace(_image(photo.metadata, job.image_id, sequence, now_ms),
                                  assets=outcome.assets, quality_score=outcome.quality_score))
    blobs = processor.blobs
    failed = [image_id for image_id, outcome in outcomes.items() if isinstance(outcome, str)]
    try:
        if images:
            images, extra = await reconstruct_sequence(processor.settings, store, blobs,
                                                       images)
            written.extend(extra)
            await store.insert_sequence(sequence, images)
    # Only a definite failure removes the blobs: on cancellation, or when the store or the
    # connection failed, the insert may have committed all the same (the journal lets the next
    # attempt decide from what is stored).
    except Exception as exc:
        if is_transient(exc):
            raise
        await runner.map(blobs.delete, written)
        await _discard_folders(runner, blobs, failed)
        # Deleted once more later: a write the blob store did not answer may still land.
        await store.retire_blobs(owner, journal)
        if not isinstance(exc, WayviewError):
            raise
        for image in images:
            report.skip(paths[image.id], f"not stored: {exc.message}", counted=True)
        return
    if images:  # a sequence bridging stored components makes them one
        await absorb_merge_components(processor.settings, store, images)
        await _store_perception(store, processor.settings, images, outcomes)
        await enqueue_sfm(processor.settings, store, sequence.id)
    # A file that failed half-way may have left some of its blobs (and one that timed out
    # may still land: the folders are deleted once more later).
    await _discard_folders(runner, blobs, failed)
    await store.retire_blobs(owner, [f for i in failed for f in image_blob_folders(i)])
    await store.forget_blobs(owner, journal)
    if images:
        report.imported += len(images)
        report.sequences.append(ImportedSequence(sequence.id, len(images)))


async def _store_perception(store: Store, settings: PipelineSettings, images: list[Image],
                            outcomes: dict[int, Derived | str]) -> None:
    """The detections of a stored sequence, and the map features they make (stage 6)."""
    found: list[tuple[int, Found]] = []
    for image in images:
        outcome = outcomes[image.id]
        if isinstance(outcome, Derived):
            found.extend((image.id, f) for f in outcome.found)
    if not found:
        return
    ids = await store.reserve_ids("detection", len(found))
    now_ms = int(time.time() * 1000)
    rows = [detection for (image_id, f), did in zip(found, ids, strict=True)
            for detection in detections_from(image_id, [f], [did], now_ms)]
    await store.insert_detections(rows)
    try:
        await update_map_features(settings, store, images)
    except (ArithmeticError, ValueError, np.linalg.LinAlgError):
        # The sequence and its detections are stored; `wayview reprocess` places features.
        log.exception("map features around sequence %s could not be placed",
                      images[0].sequence_id)


async def _discard_folders(runner: _Runner, blobs: BlobStore, image_ids: list[int]) -> None:
    folders = [folder for image_id in image_ids for folder in image_blob_folders(image_id)]
    if folders:
        await runner.map(blobs.delete_folder, folders)


def _image(meta: PhotoMetadata, image_id: int, sequence: Sequence, now_ms: int) -> Image:
    camera_parameters = meta.camera_parameters
    if camera_parameters is None and meta.camera_type != "spherical":
        camera_parameters = DEFAULT_CAMERA_PARAMETERS
    return Image(
        id=image_id,
        sequence_id=sequence.id,
        creator_id=sequence.creator_id,
        captured_at_ms=meta.captured_at_ms,
        lon=meta.lon,
        lat=meta.lat,
        width=meta.width,
        height=meta.height,
        altitude_m=meta.altitude_m,
        compass_angle_deg=meta.compass_angle_deg,
        camera_type=meta.camera_type,
        camera_parameters=camera_parameters,
        exif_orientation=meta.exif_orientation,
        make=meta.make,
        model=meta.model,
        is_pano=meta.is_pano,
        organization_id=sequence.organization_id,
        content_sha256=meta.content_sha256,
        created_at_ms=now_ms,
    )
