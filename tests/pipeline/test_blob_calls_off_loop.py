"""Blob-store and disk calls of jobs and requests run off the event loop (issue #22): while the
blob store (or the disk) stalls, the other coroutines of the process keep running. A stalled
S3 blocks a call up to `s3.timeout_s` plus retries; on the loop that froze the job heartbeat
and every request of the process."""

from __future__ import annotations

import asyncio
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import TypeVar

import pytest

import wayview.ingest.upload_sessions as upload_sessions
import wayview.pipeline.export as export
from wayview.blobs import LocalBlobs
from wayview.blobs.base import cluster_blob_key, export_blob_key, image_blob_key
from wayview.ingest.upload_sessions import WRITE_BYTES, UploadSessions
from wayview.pipeline.delete import run_deletion
from wayview.pipeline.sfm_assets import decode_cluster, encode_cluster
from wayview.settings import Settings
from wayview.testing import add_sequence, make_settings, open_test_store

T = TypeVar("T")

#: How long each stalled call blocks its thread.
STALL_S = 0.8
#: The longest the event loop may stand still meanwhile (a stalled call on the loop would
#: stop it for STALL_S at least). A loaded 2-core CI machine stops a healthy loop for up to
#: ~0.2 s (GC, the other test worker): the margin to STALL_S keeps the two apart.
MAX_GAP_S = 0.3


class StallingBlobs(LocalBlobs):
    """Local blobs whose calls stall first, as S3's do during an outage (once `stalling`), and
    that have no local path when `remote`, so that readers go through `get_bytes`."""

    def __init__(self, root: Path, *, remote: bool = False) -> None:
        super().__init__(root)
        self.remote = remote
        self.stalling = False
        self.calls: list[str] = []

    def _stall(self, name: str) -> None:
        if self.stalling:
            self.calls.append(name)
            time.sleep(STALL_S)

    def put_bytes(self, key: str, data: bytes) -> None:
        self._stall("put_bytes")
        super().put_bytes(key, data)

    def put_file(self, key: str, path: Path) -> None:
        self._stall("put_file")
        super().put_file(key, path)

    def get_bytes(self, key: str) -> bytes:
        self._stall("get_bytes")
        return super().get_bytes(key)

    def exists(self, key: str) -> bool:
        self._stall("exists")
        return super().exists(key)

    def delete(self, key: str) -> None:
        self._stall("delete")
        super().delete(key)

    def delete_folder(self, prefix: str) -> int:
        self._stall("delete_folder")
        return super().delete_folder(prefix)

    def local_path(self, key: str) -> Path | None:
        return None if self.remote else super().local_path(key)


async def longest_stall(work: Awaitable[T]) -> tuple[T, float]:
    """`work`'s result, and the longest the event loop went meanwhile without running a
    coroutine that wakes up every 10 ms."""
    gap = 0.0

    async def tick() -> None:
        nonlocal gap
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gap, last = max(gap, now - last), now

    ticker = asyncio.create_task(tick())
    try:
        result = await work
        await asyncio.sleep(0.03)  # the ticker sees a stall at the very end too
    finally:
        ticker.cancel()
    return result, gap


async def test_the_probe_sees_a_blocked_loop() -> None:
    async def blocking() -> None:
        await asyncio.sleep(0.02)
        time.sleep(STALL_S)

    _, gap = await longest_stall(blocking())
    assert gap >= STALL_S


async def test_delete_job_keeps_the_loop_running(settings: Settings) -> None:
    blobs = StallingBlobs(settings.blobs_path)
    async with open_test_store(settings) as store:
        user = await store.create_user("stalled_owner")
        [gone] = await add_sequence(store, user, [(13.0, 55.0)], start_ms=1_600_000_000_000)
        kept = await add_sequence(store, user, [(13.1, 55.0), (13.1001, 55.0)],
                                  start_ms=1_600_000_100_000)
        for image in (gone, *kept):
            blobs.put_bytes(image_blob_key(image.id, "thumb_256"), b"\xff\xd8")
        blobs.put_bytes(cluster_blob_key(gone.sequence_id), encode_cluster([{"shots": {}}]))
        blobs.put_bytes(cluster_blob_key(kept[0].sequence_id),
                        encode_cluster([{"shots": {str(im.id): {} for im in kept}}]))
        blobs.stalling = True
        report, gap = await longest_stall(run_deletion(
            settings.pipeline, store, blobs, [gone.id, kept[0].id],
            [gone.sequence_id, kept[0].sequence_id]))
        blobs.stalling = False
    # Every kind of call the job makes stalled: folders, the emptied sequence's cluster and
    # report, and the cluster it rewrote without the deleted shot.
    assert {"delete_folder", "delete", "get_bytes", "put_bytes"} <= set(blobs.calls)
    assert gap < MAX_GAP_S, f"the event loop stood still for {gap:.2f} s"
    assert report.sequences_emptied == [gone.sequence_id]
    assert not blobs.exists(image_blob_key(gone.id, "thumb_256"))
    assert not blobs.exists(cluster_blob_key(gone.sequence_id))
    [cluster] = decode_cluster(blobs.get_bytes(cluster_blob_key(kept[0].sequence_id)))
    assert set(cluster["shots"]) == {str(kept[1].id)}


async def test_export_job_keeps_the_loop_running(settings: Settings,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    blobs = StallingBlobs(settings.blobs_path, remote=True)
    add = export._JsonArray.add
    spooled: list[object] = []

    def stalling_add(array: export._JsonArray, obj: object) -> None:
        spooled.append(obj)
        time.sleep(STALL_S)  # a stalled disk under the work folder
        add(array, obj)

    monkeypatch.setattr(export._JsonArray, "add", stalling_add)
    async with open_test_store(settings) as store:
        user = await store.create_user("stalled_exporter")
        [image] = await add_sequence(store, user, [(13.0, 55.0)], start_ms=1_600_000_000_000)
        blobs.put_bytes(image_blob_key(image.id, "original"), b"\xff\xd8original")
        requested = await export.request_export(store, blobs, settings, user, actor_id=None)
        blobs.stalling = True
        report, gap = await longest_stall(
            export.produce_export(settings, store, blobs, requested.id))
        blobs.stalling = False
    assert report is not None and report.served_originals == 1
    assert {"get_bytes", "put_file"} <= set(blobs.calls) and len(spooled) >= 4
    assert gap < MAX_GAP_S, f"the event loop stood still for {gap:.2f} s"
    zip_path = settings.blobs_path / export_blob_key(user.id, requested.id)
    with zipfile.ZipFile(zip_path) as zf:
        assert zf.read(f"originals/{image.sequence_id}/{image.id}.jpg") == b"\xff\xd8original"
        assert "metadata/sequences.geojson" in zf.namelist()


async def test_upload_writes_keep_the_loop_running(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    drain = upload_sessions._drain
    writes: list[int] = []

    def stalling_drain(fd: int, data: bytearray) -> None:
        writes.append(len(data))
        time.sleep(STALL_S)  # a stalled disk or NFS mount under data_dir
        drain(fd, data)

    monkeypatch.setattr(upload_sessions, "_drain", stalling_drain)
    body = [bytes([k]) * WRITE_BYTES for k in range(2)] + [b"end"]

    async def chunks() -> AsyncIterator[bytes]:
        for chunk in body:
            yield chunk

    settings = make_settings(tmp_path, upload={"min_free_disk_bytes": 0})
    async with open_test_store(settings) as store:
        user = await store.create_user("stalled_uploader")
        sessions = UploadSessions(settings, store)
        _, gap = await longest_stall(sessions.append(user.id, "session-1", 0, chunks(),
                                                     length=sum(map(len, body))))
        assert await sessions.offset(user.id, "session-1") == sum(map(len, body))
    assert writes == [WRITE_BYTES, WRITE_BYTES, 3]
    assert gap < MAX_GAP_S, f"the event loop stood still for {gap:.2f} s"
    assert sessions.path(user.id, "session-1").read_bytes() == b"".join(body)
