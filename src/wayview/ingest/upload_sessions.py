"""wayview.ingest.upload_sessions: resumable upload sessions (spec §8.1–8.3).

A session is (user, session key). Its bytes are staged in one file,
`<data_dir>/uploads/<user id>/<SHA-256 of the session key>`: the path never contains client
text, and the file's size is the session's offset. The store keeps the metadata (handle,
expiry) from the first POST on.

A POST takes an exclusive `flock` on the file (so concurrent POSTs to one session, in this
process or another, run one after the other; one that waits longer than
`upload.session_lock_wait_s` gets 412 and re-reads the offset), checks `Offset` against the
size, appends the body as it arrives (writes of `WRITE_BYTES`, never the whole body in memory,
each in a thread: a stalled disk or NFS mount would freeze every request of the process on the
event loop, issue #22), then `fsync`s before acknowledging. When the body breaks off, what
arrived stays in the file: the next `GET` reports it and the client resumes from there.

Disk limits, checked before a byte of the POST is written (and again while a body of unknown
length streams in):

- `upload.max_session_bytes`: one session's size (413, `UploadTooLarge`).
- `upload.user_quota_bytes`: the bytes of all of the user's sessions (staged files are kept
  until their handles expire, finished or not), this POST included (413, `QuotaExceeded`).
- `upload.min_free_disk_bytes`: the free space left on the filesystem of `data_dir` after the
  POST (507, `StorageFull`, retriable: the client tries again later).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from wayview import metrics
from wayview.errors import OffsetInvalid, StoreUnavailable, UploadTooLarge
from wayview.model.entities import UploadSession
from wayview.settings import Settings
from wayview.store.base import Store

__all__ = [
    "UPLOADS_DIR",
    "WORK_DIR",
    "QuotaExceeded",
    "StorageFull",
    "UploadSessions",
    "free_disk_bytes",
    "remove_work_folders",
    "staged_path",
    "work_prefix",
]

log = logging.getLogger("wayview.upload")

#: Folder of staged uploads inside `data_dir`.
UPLOADS_DIR = "uploads"
#: Folder (inside UPLOADS_DIR) of the ingest job's staging folders, `cluster-<id>-<random>`.
WORK_DIR = "work"
_WORK_NAME = re.compile(r"cluster-([0-9]{1,19})-[A-Za-z0-9_]+")
#: Bytes gathered from the body before each write.
WRITE_BYTES = 256 * 1024
#: Longest session key accepted (mapillary_tools' keys are under 100 characters).
MAX_SESSION_KEY = 1024
#: Expired sessions removed per cleanup run.
CLEANUP_BATCH = 10_000
_LOCK_POLL_S = 0.02


#: A staging folder of a finished upload is removed by the cleanup once it is this old (a
#: job run again by an operator may be using a fresh one).
STALE_WORK_S = 3600.0
#: How often (bytes written) a body of unknown length re-checks the quota and free space.
RECHECK_BYTES = 16 * 1024 * 1024


class QuotaExceeded(UploadTooLarge):
    """The upload would take the user's staged bytes past `upload.user_quota_bytes`."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.message = (f"Upload exceeds your storage quota of {limit} bytes (uploads are "
                        "kept until their handles expire)")
        self.args = (self.message,)


class StorageFull(StoreUnavailable):
    """The server's disk is too full to take the upload now (`upload.min_free_disk_bytes`)."""

    message = "The server is short of disk space; try again later"


def free_disk_bytes(folder: Path) -> int:
    """Bytes an unprivileged process may still write on the filesystem holding `folder`."""
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


def work_prefix(cluster_id: int) -> str:
    """The name prefix of the staging folders of one upload's processing."""
    return f"cluster-{int(cluster_id)}-"


def remove_work_folders(work: Path, cluster_id: int | None = None, *,
                        older_than_s: float = 0.0) -> int:
    """Delete the staging folders under `work` of one upload (`cluster_id`) or, with None,
    every one, last changed at least `older_than_s` ago; how many. Called by the next attempt
    of a job whose process was killed, and by the cleanup for uploads that are done."""
    removed = 0
    now = time.time()
    try:
        entries = list(os.scandir(work))
    except FileNotFoundError:
        return 0
    for entry in entries:
        match = _WORK_NAME.fullmatch(entry.name)
        if match is None or not entry.is_dir(follow_symlinks=False):
            continue
        if cluster_id is not None and int(match[1]) != cluster_id:
            continue
        if older_than_s > 0:
            try:
                if now - entry.stat(follow_symlinks=False).st_mtime < older_than_s:
                    continue
            except FileNotFoundError:
                continue
        shutil.rmtree(entry.path, ignore_errors=True)
        log.info("removed the staging folder %s left by an interrupted attempt", entry.name)
        removed += 1
    return removed


def staged_path(settings: Settings, user_id: int, session_key: str) -> Path:
    """The staged file of a session (the key is hashed, never used as a path).

    >>> from wayview.settings import Settings
    >>> staged_path(Settings(data_dir="d"), 7, "a/../b").as_posix()[:20]
    'd/uploads/7/900ea8b7'
    """
    digest = hashlib.sha256(session_key.encode("utf-8", "surrogatepass")).hexdigest()
    return settings.data_dir / UPLOADS_DIR / str(int(user_id)) / digest


def _now_ms() -> int:
    return int(time.time() * 1000)


def _drain(fd: int, data: bytearray) -> None:
    """Write every byte of `data`, removing from it what was written: what it holds after an
    error (or once a cancelled caller goes on) never reached the file, so nothing is written
    twice. A disk that fills up while the body arrives (the floor check runs only every
    `RECHECK_BYTES`) is the retriable `StorageFull` (507), not an internal error: what was
    written before stays, and the client resumes later."""
    try:
        while data:
            with memoryview(data) as view:
                written = os.write(fd, view)
            metrics.upload_bytes(written)
            del data[:written]
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            log.warning("upload refused: the disk is full (%s)", exc.strerror)
            raise StorageFull() from None
        raise


async def _on_fd(fn: Callable[..., Any], *args: Any) -> None:
    """`fn(*args)`, a write, truncate or fsync on an open fd, in a thread (off the event
    loop). A cancelled caller still waits for the call to end before it goes on: it closes
    the fd next, and a write into a closed fd whose number was reused would land in another
    file."""
    call = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        await asyncio.shield(call)
    except asyncio.CancelledError:
        while not call.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({call})
        if not call.cancelled():
            call.exception()  # retrieved: the cancellation is what the caller sees
        raise


class UploadSessions:
    """Offsets, appends and cleanup of staged uploads."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store

    @property
    def _ttl_ms(self) -> int:
        return self.settings.upload.handle_ttl * 1000

    def path(self, user_id: int, session_key: str) -> Path:
        """The staged file of a session."""
        return staged_path(self.settings, user_id, session_key)

    async def offset(self, user_id: int, session_key: str) -> int:
        """Bytes held by a session (0 for an unknown one)."""
        try:
            return os.stat(self.path(user_id, session_key)).st_size
        except FileNotFoundError:
            return 0

    async def append(
        self, user_id: int, session_key: str, offset: int, body: AsyncIterator[bytes], *,
        length: int | None = None,
    ) -> str:
        """Append a POST body at `offset`; the session's file handle once the bytes are on disk.

        Raises:
            OffsetInvalid: `offset` is not the number of bytes held (or the session stayed
                busy with another POST).
            UploadTooLarge: the session would exceed `upload.max_session_bytes` (nothing of
                this POST is kept).
            Whatever the body raises when it breaks off; what arrived before is kept.
        """
        limit = self.settings.upload.max_session_bytes
        if limit and length is not None and offset + length > limit:
            raise UploadTooLarge(limit)
        quota_room = await self._quota_room(user_id, length or 0)
        if length != 0:  # an empty POST (the end of a 0.12 upload) writes nothing
            await self._check_disk(length or 0)
        path = self.path(user_id, session_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = await self._open_locked(path)
        try:
            held = os.fstat(fd).st_size
            if offset != held:
                raise OffsetInvalid()
            session = await self.store.save_upload_session(
                user_id, session_key, handle=secrets.token_urlsafe(24), size=held,
                expires_at_ms=_now_ms() + self._ttl_ms)
            os.lseek(fd, 0, os.SEEK_END)
            size = held + await self._receive(fd, held, body, limit, quota_room=quota_room)
            # One thread hop: the data, and for a new file its directory entry.
            await _on_fd(_make_durable, fd, path.parent if held == 0 else None)
            await self.store.save_upload_session(
                user_id, session_key, handle=session.handle, size=size,
                expires_at_ms=_now_ms() + self._ttl_ms)
            return session.handle
        finally:
            os.close(fd)

    async def _quota_room(self, user_id: int, incoming: int) -> int | None:
        """Bytes the user may still upload (None: no quota).

        Raises:
            QuotaExceeded: the user's sessions plus `incoming` exceed `upload.user_quota_bytes`.
        """
        quota = self.settings.upload.user_quota_bytes
        if not quota:
            return None
        room = quota - await self.store.user_upload_bytes(user_id)
        if incoming > max(room, 0):
            raise QuotaExceeded(quota)
        return room

    async def _check_disk(self, incoming: int) -> None:
        """Refuse to write `incoming` more bytes below the free-disk floor.

        Raises:
            StorageFull: writing them would leave less than `upload.min_free_disk_bytes` free
                on the filesystem of `data_dir`.
        """
        floor = self.settings.upload.min_free_disk_bytes
        if not floor:
            return
        folder = self.settings.data_dir
        folder.mkdir(parents=True, exist_ok=True)
        free = await asyncio.to_thread(free_disk_bytes, folder)
        if free - incoming < floor:
            log.warning("upload refused: %d bytes free on %s (floor %d)", free, folder, floor)
            raise StorageFull()

    async def _open_locked(self, path: Path) -> int:
        """Open (creating) and exclusively lock a staged file; the lock goes with the fd."""
        deadline = time.monotonic() + self.settings.upload.session_lock_wait_s
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            raise OffsetInvalid() from None
                        await asyncio.sleep(_LOCK_POLL_S)
                # Cleanup may have removed the file while we waited: lock the current one.
                with contextlib.suppress(FileNotFoundError):
                    if os.stat(path).st_ino == os.fstat(fd).st_ino:
                        return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    async def _receive(self, fd: int, held: int, body: AsyncIterator[bytes], limit: int, *,
                       quota_room: int | None) -> int:
        """Write the body after `held` bytes; the number of bytes written.

        A body beyond `limit` (the session size) is dropped entirely; one beyond `quota_room`
        or one that brings the disk below its floor (re-read every `RECHECK_BYTES`) stops
        there: what was written before is kept (the client may resume later).
        """
        pending = bytearray()
        written = 0
        checked = 0
        try:
            async for chunk in body:
                if limit and held + written + len(pending) + len(chunk) > limit:
                    pending.clear()
                    await _on_fd(os.ftruncate, fd, held)
                    raise UploadTooLarge(limit)
                if quota_room is not None and written + len(pending) + len(chunk) > quota_room:
                    await _on_fd(_drain, fd, pending)  # up to the quota: kept
                    raise QuotaExceeded(self.settings.upload.user_quota_bytes)
                pending += chunk
                if len(pending) >= WRITE_BYTES:
                    if written + len(pending) - checked >= RECHECK_BYTES:
                        try:
                            await self._check_disk(len(pending))
                        except StorageFull:
                            pending.clear()  # refused: these bytes are not written
                            raise
                        checked = written + len(pending)
                    written += len(pending)
                    await _on_fd(_drain, fd, pending)
        except BaseException:
            if pending:  # the body broke off: keep what arrived (if the disk takes it)
                with contextlib.suppress(StorageFull):
                    await _on_fd(_drain, fd, pending)
            raise
        if pending:
            written += len(pending)
            await _on_fd(_drain, fd, pending)
        return written

    async def cleanup_expired(self, *, now_ms: int | None = None) -> int:
        """Delete sessions past their expiry (rows, finishes and staged files); how many.
        Also removes staging folders left behind by killed processing (`cleanup_work`).

        A session being written to is left for the next run.
        """
        now = _now_ms() if now_ms is None else now_ms
        removed = 0
        for session in await self.store.expired_upload_sessions(now, CLEANUP_BATCH):
            if await self._remove(session, now):
                removed += 1
        await self.cleanup_work()
        return removed

    async def cleanup_work(self) -> int:
        """Delete staging folders no job will come back for: their upload is gone or its
        processing has finished (an attempt killed after staging left them) at least
        `STALE_WORK_S` ago; how many. Folders of uploads still queued or running are left to
        their job's next attempt."""
        work = self.settings.data_dir / UPLOADS_DIR / WORK_DIR
        try:
            names = [e.name for e in os.scandir(work) if e.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            return 0
        removed = 0
        for cluster_id in sorted({int(m[1]) for n in names
                                  if (m := _WORK_NAME.fullmatch(n)) is not None}):
            finish = await self.store.get_upload_finish(cluster_id)
            if finish is None or finish.result is not None:
                removed += await asyncio.to_thread(remove_work_folders, work, cluster_id,
                                                   older_than_s=STALE_WORK_S)
        return removed

    async def _remove(self, session: UploadSession, now_ms: int) -> bool:
        path = self.path(session.user_id, session.session_key)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return await self.store.delete_upload_session(session.id, expired_before_ms=now_ms)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            if not await self.store.delete_upload_session(session.id,
                                                          expired_before_ms=now_ms):
                return False
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            log.info("removed expired upload session %d of user %d", session.id,
                     session.user_id)
            return True
        finally:
            os.close(fd)


def _make_durable(fd: int, new_in: Path | None) -> None:
    """fsync a staged file, and the folder it was just created in (`new_in`)."""
    os.fsync(fd)
    if new_in is not None:
        _fsync_dir(new_in)


def _fsync_dir(folder: Path) -> None:
    """Make a new file's directory entry durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
