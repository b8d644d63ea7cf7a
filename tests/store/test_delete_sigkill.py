"""A SIGKILL in the middle of a deletion leaves the state before or after, never a mix
(issue #17): a subprocess deletes random chunks of images (`request_deletion`: the durable job
first, then the rows in one transaction) and is killed at random moments. Each time, every
queued deletion has removed all of its images or none, the tile rows of every sequence are
those of the images it has, and draining the jobs then finishes every deletion that was
asked for."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from tests.store.sigkill import kill_mid_way
from tests.store.test_edits import assert_consistent

from wayview.blobs import LocalBlobs
from wayview.model.entities import ImageSearch
from wayview.pipeline.delete import DELETE_JOB
from wayview.pipeline.worker import JobRunner
from wayview.store import Store, open_store
from wayview.testing import add_sequence, make_settings

SCRIPT = r"""
import asyncio, random, sys
from pathlib import Path
from wayview.model.entities import ImageSearch
from wayview.pipeline.delete import request_deletion
from wayview.settings import Settings
from wayview.store import open_store

async def main(data_dir, seed):
    rng = random.Random(seed)
    store = open_store(Settings(data_dir=Path(data_dir)))
    await store.open()
    n = 0
    while True:
        images = (await store.search_images(ImageSearch(creator_username="k"))).items
        if len(images) < 4:
            await asyncio.sleep(1)
            continue
        chunk = rng.sample([im.id for im in images], rng.randrange(1, 4))
        await request_deletion(store, chunk)
        n += 1
        print(n, flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def _open(data_dir: Path) -> Store:
    store = open_store(make_settings(data_dir.parent, data_dir=data_dir))
    await store.open()
    return store


async def _seed(data_dir: Path) -> None:
    store = await _open(data_dir)
    try:
        user = await store.create_user("k")
        for s in range(6):
            await add_sequence(store, user, [(13.40 + k * 2e-4, 52.5 + s * 3e-4)
                                             for k in range(12)],
                               start_ms=1_600_000_000_000 + s * 100_000)
    finally:
        await store.close()


async def _check(data_dir: Path) -> int:
    """Atomicity of what the killed process left; then drain and check again. The number of
    images left."""
    store = await _open(data_dir)
    try:
        jobs = [j for j in await store.list_jobs(limit=10_000) if j.kind == DELETE_JOB]
        left = {im.id for im in (await store.search_images(
            ImageSearch(creator_username="k"))).items}
        for job in jobs:
            ids = set(job.payload["image_ids"])  # type: ignore[arg-type]
            assert not ids & left or ids <= left, (job.id, ids & left, ids - left)
        sequences = sorted({im.sequence_id for im in (await store.search_images(
            ImageSearch(creator_username="k"))).items})
        await assert_consistent(store, sequences)
        settings = make_settings(data_dir.parent, data_dir=data_dir)
        await JobRunner(settings, store, LocalBlobs(settings.blobs_path)).drain()
        left = {im.id for im in (await store.search_images(
            ImageSearch(creator_username="k"))).items}
        for job in jobs:
            assert not set(job.payload["image_ids"]) & left  # type: ignore[arg-type]
        found = await store.get_images(sorted(left))
        sequences = sorted({im.sequence_id for im in found.values()})
        await assert_consistent(store, sequences)
        return len(left)
    finally:
        await store.close()


def test_sigkill_mid_deletion_leaves_before_or_after(tmp_path: Path) -> None:
    data = tmp_path / "data"
    asyncio.run(_seed(data))
    rng = random.Random(23)
    remaining = 72
    for round_ in range(3):
        kill_mid_way(SCRIPT, [str(data), str(round_)], rng, min_lines=2, max_lines=6,
                     max_sleep_s=0.02)
        now = asyncio.run(_check(data))
        assert now < remaining
        remaining = now
