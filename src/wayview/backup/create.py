"""wayview.backup.create: an online backup of a running deployment (`wayview backup`).

The database and the blobs are copied while the server and workers keep writing, and the
backup is consistent: **every blob the database snapshot needs for its images (each image's
thumbnails and original of its current media version) is in the backup.** It relies on the
order every writer keeps: blobs are written before the rows that name them are committed, and
rows are deleted (or switched to a new media version) before the blobs they named are.

1. Copy every blob listed (the long part; the store keeps changing meanwhile).
2. Take the database snapshot (one commit: SQLite online backup API, or `pg_dump` in an
   exported snapshot).
3. List the blobs again; copy the new and replaced ones, drop from the backup the ones deleted
   since (a deleted image's blobs do not outlive it in the backup).
4. Check that every image of the snapshot has its media in the backup. One can miss only if
   it was written after step 1 listed it and deleted after step 2, i.e. the image was deleted
   or re-blurred after the snapshot: then the snapshot is taken again (step 2) — the new one
   no longer holds the image, or holds its new version — until nothing is missing (a few
   rounds at most; steps 2–4 copy only what changed). Media missing from the source itself
   (an image whose live row still names blobs that do not exist) is counted in the manifest,
   not retried.

Blobs written after the last snapshot are copied too but named by no row (an import still
running); the restored deployment's job queue redoes such jobs and discards their blobs
(`blob_journal`). A blob rewritten in place (a sequence's sfm_cluster, an SfM report) is copied
as it was when last listed, which may be newer than the snapshot. Staged upload sessions are
copied after the snapshot (a staged file only grows, and its size is the session's offset, so
any prefix is a valid state for the resuming client).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from wayview import __version__
from wayview.backup.manifest import (
    FILES,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    FileEntry,
    copy_hashed,
    files_text,
    hash_file,
    write_private,
)
from wayview.blobs import IMAGE_VARIANTS, open_blobs
from wayview.blobs.base import BlobInfo, BlobStore, check_key, image_blob_key
from wayview.errors import InvalidInput, StoreUnavailable
from wayview.ingest.shared_dir import MARKER_KEY as DATA_DIR_MARKER_KEY
from wayview.settings import Settings
from wayview.store.maintenance import SNAPSHOT_FILES, Snapshot, backend_of, current_media, snapshot

__all__ = ["BackupReport", "create_backup"]

log = logging.getLogger("wayview.backup")

#: Database snapshots taken at most before giving up on a store that changes too fast.
MAX_SNAPSHOTS = 5
#: Blobs copied at once (S3 requests overlap; local files are small).
COPY_THREADS = 8
#: The folder of staged upload sessions in `data_dir` (without `work/`, the scratch space of
#: running jobs): see wayview.ingest.upload_sessions.
_UPLOADS = "uploads"
_SECRET = "secret_key"


@dataclass
class BackupReport:
    """What `create_backup` wrote."""

    path: Path
    manifest: dict[str, Any]
    seconds: float = 0.0
    passes: list[dict[str, int]] = field(default_factory=list)


@dataclass
class _Mirror:
    """The backup's copy of the blob store: what was copied, by key."""

    blobs: BlobStore
    root: Path
    have: dict[str, tuple[str, FileEntry]] = field(default_factory=dict)

    def sync(self, keep: set[str] | frozenset[str] = frozenset()) -> dict[str, int]:
        """List the store; copy what is new or replaced, drop what is gone (but the keys in
        `keep`); the counts."""
        listing: dict[str, BlobInfo] = {}
        skipped = 0
        for info in self.blobs.list_keys():
            try:
                check_key(info.key)
            except ValueError:
                skipped += 1
                continue
            if info.key == DATA_DIR_MARKER_KEY:
                continue  # the live deployment's identity: a restore starts its own
            listing[info.key] = info
        gone = [key for key in self.have if key not in listing and key not in keep]
        for key in gone:
            (self.root / key).unlink(missing_ok=True)
            del self.have[key]
        todo = [info for key, info in listing.items()
                if key not in self.have or self.have[key][0] != info.tag]
        vanished = 0
        with ThreadPoolExecutor(COPY_THREADS, thread_name_prefix="wayview-backup") as pool:
            for info, entry in zip(todo, pool.map(self._copy, todo), strict=True):
                if entry is None:
                    vanished += 1
                    self.have.pop(info.key, None)
                else:
                    self.have[info.key] = (info.tag, entry)
        return {"listed": len(listing), "copied": len(todo) - vanished, "dropped": len(gone),
                "vanished": vanished, "skipped": skipped}

    def fetch(self, keys: list[str]) -> None:
        """Copy these keys without listing (absent ones are skipped); a later `sync` copies
        them once more, as their tags are not known here."""
        infos = [BlobInfo(key, 0, "") for key in keys]
        with ThreadPoolExecutor(COPY_THREADS, thread_name_prefix="wayview-backup") as pool:
            for info, entry in zip(infos, pool.map(self._copy, infos), strict=True):
                if entry is not None:
                    self.have[info.key] = (info.tag, entry)

    def _copy(self, info: BlobInfo) -> FileEntry | None:
        """Copy one blob (None: it was deleted since it was listed)."""
        target = self.root / info.key
        path = self.blobs.local_path(info.key)
        try:
            source: BinaryIO = (open(path, "rb") if path is not None  # noqa: SIM115
                                else io.BytesIO(self.blobs.get_bytes(info.key)))
        except FileNotFoundError:  # deleted since it was listed
            target.unlink(missing_ok=True)
            return None
        with source:
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            size, sha = copy_hashed(source, target)
        return FileEntry(f"blobs/{info.key}", size, sha)


def _media_keys(image_id: int, version: int) -> list[str]:
    return [image_blob_key(image_id, variant, version) for variant in IMAGE_VARIANTS]


def _prepare(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InvalidInput(f"{dest} exists and is not an empty folder: back up into a new one")
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    dest.chmod(0o700)
    for sub in ("database", "blobs"):
        (dest / sub).mkdir(mode=0o700)


def _copy_tree(source: Path, dest: Path, rel: str, skip: set[str]) -> list[FileEntry]:
    """Copy the regular files under `source` (not following links; top-level names in
    `skip` left out) into `dest`, named `rel/...` in the backup."""
    entries: list[FileEntry] = []
    if not source.is_dir():
        return entries
    for folder, dirs, files in os.walk(source):
        here = Path(folder)
        if here == source:
            dirs[:] = [d for d in dirs if d not in skip]
        for name in files:
            path = here / name
            if path.is_symlink() or name.startswith("."):
                continue
            sub = path.relative_to(source).as_posix()
            target = dest / sub
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                with open(path, "rb") as src:
                    size, sha = copy_hashed(src, target)
            except FileNotFoundError:  # expired and removed meanwhile
                continue
            entries.append(FileEntry(f"{rel}/{sub}", size, sha))
    return entries


def create_backup(settings: Settings, dest: Path,
                  progress: Callable[[str], None] | None = None) -> BackupReport:
    """Back up the deployment configured by `settings` into the new folder `dest`, online.

    Raises:
        InvalidInput: `dest` is not a new or empty folder, or there is no store.
        StoreUnavailable: the database cannot be read or dumped, or the store kept changing
            the media of its images faster than the backup could follow.
    """
    say = progress or (lambda message: None)
    started = time.monotonic()
    backend = backend_of(settings)
    if backend == "sqlite" and not settings.database_path.exists():
        raise InvalidInput(f"no wayview store in {settings.data_dir}")
    existed = dest.exists()
    _prepare(dest)
    try:
        return _create(settings, dest, backend, say, started)
    except BaseException:  # leave no unfinished backup behind, and nothing that was not ours
        if existed:
            for child in dest.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        else:
            shutil.rmtree(dest, ignore_errors=True)
        raise


def _create(settings: Settings, dest: Path, backend: str, say: Callable[[str], None],
            started: float) -> BackupReport:
    blobs = open_blobs(settings)
    mirror = _Mirror(blobs, dest / "blobs")
    report = BackupReport(dest, {})
    say("copying blobs")
    report.passes.append(mirror.sync())
    taken: Snapshot | None = None
    missing_in_source = 0
    for attempt in range(1, MAX_SNAPSHOTS + 1):
        target = dest / "database" / SNAPSHOT_FILES[backend]
        target.unlink(missing_ok=True)
        say(f"database snapshot {attempt}")
        # The media the snapshot names but the first pass did not see was written moments
        # ago: it is fetched at once, inside the snapshot's transaction, before a deletion can
        # follow.
        taken = snapshot(settings, target, lambda media: mirror.fetch(
            [key for image_id, version in media for key in _media_keys(image_id, version)
             if key not in mirror.have]))
        missing = [(image_id, version) for image_id, version in taken.media
                   if any(key not in mirror.have for key in _media_keys(image_id, version))]
        if not missing:
            break
        live = current_media(settings, [image_id for image_id, _ in missing])
        raced = [(i, v) for i, v in missing if live.get(i) != v]
        log.info("backup: %d images of snapshot %d miss media, %d changed since",
                 len(missing), attempt, len(raced))
        if not raced:
            missing_in_source = len(missing)
            break
    else:
        raise StoreUnavailable(
            f"the store changed the media of its images faster than the backup could follow "
            f"({MAX_SNAPSHOTS} snapshots); try again at a quieter time")
    assert taken is not None
    # Blobs written or deleted since the first pass; the snapshot's media stays even when
    # deleted since (media keys are written once: the copy is what the snapshot names).
    say("copying blobs changed since")
    report.passes.append(mirror.sync(keep={key for image_id, version in taken.media
                                           for key in _media_keys(image_id, version)}))
    say("copying staged uploads and the server secret")
    entries = [entry for _, entry in mirror.have.values()]
    entries += _copy_tree(settings.data_dir / _UPLOADS, dest / _UPLOADS, _UPLOADS, {"work"})
    secret = settings.data_dir / _SECRET
    secret_in = "setting" if settings.secret_key else "none"
    if not settings.secret_key and secret.is_file():
        with open(secret, "rb") as src:
            size, sha = copy_hashed(src, dest / _SECRET)
        entries.append(FileEntry(_SECRET, size, sha))
        secret_in = "backup"
    size, sha = hash_file(taken.path)
    entries.append(FileEntry(f"database/{taken.path.name}", size, sha))
    os.sync()  # the copies are written without fsync each; the manifest comes after them
    listing = files_text(entries)
    write_private(dest / FILES, listing)
    blob_entries = [entry for _, entry in mirror.have.values()]
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "wayview_version": __version__,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "backend": backend,
        "schema_version": taken.schema_version,
        "database": f"database/{taken.path.name}",
        "blobs_from": settings.blobs_url or "data_dir/blobs",
        "counts": taken.counts,
        "blobs": {"count": len(blob_entries), "bytes": sum(e.size for e in blob_entries)},
        "uploads": {"count": sum(1 for e in entries if e.path.startswith(f"{_UPLOADS}/"))},
        "secret_key": secret_in,
        "snapshots_taken": attempt,
        "images_missing_media_in_source": missing_in_source,
        "files": FILES,
        "files_sha256": hashlib.sha256(listing).hexdigest(),
    }
    report.seconds = round(time.monotonic() - started, 3)
    manifest["seconds"] = report.seconds
    write_private(dest / MANIFEST, json.dumps(manifest, indent=2).encode("utf-8") + b"\n")
    report.manifest = manifest
    return report
