"""The job runner's upload housekeeping: what killed attempts and expired sessions leave on
disk comes back without a cron job (issue #14, item 8)."""

from __future__ import annotations

import asyncio
import os
import time

from wayview.blobs import LocalBlobs
from wayview.ingest.upload_sessions import staged_path
from wayview.pipeline.worker import JobRunner


async def test_run_forever_removes_stale_staging_folders_and_expired_sessions(settings, store):
    user = await store.create_user("carol")
    work = settings.data_dir / "uploads" / "work"
    stale = work / "cluster-424242-k1ll3d"  # its upload is gone: no job will come back
    stale.mkdir(parents=True)
    (stale / "000000.jpg").write_bytes(b"x" * 1000)
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    expired = staged_path(settings, user.id, "old")
    expired.parent.mkdir(parents=True, exist_ok=True)
    expired.write_bytes(b"y" * 1000)
    await store.save_upload_session(user.id, "old", handle="h-old", size=1000,
                                    expires_at_ms=int(time.time() * 1000) - 1)
    runner = JobRunner(settings, store, LocalBlobs(settings.blobs_path))
    task = asyncio.create_task(runner.run_forever())
    try:
        for _ in range(100):
            if not stale.exists() and not expired.exists():
                break
            await asyncio.sleep(0.05)
    finally:
        runner.stop()
        await task
    assert not stale.exists() and not expired.exists()
    assert await store.user_upload_bytes(user.id) == 0
