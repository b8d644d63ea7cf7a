"""A SIGKILL in the middle of a split or a merge leaves the state before or after, never a
mix (issue #17): a subprocess splits and merges a sequence back in a loop and is killed at
random moments; each time the store must hold every image once, in sequences that exist, with
tile rows (both tilesets) built from exactly the images each sequence has."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from tests.store.sigkill import kill_mid_way
from tests.store.test_edits import assert_consistent

from wayview.model.entities import ImageSearch
from wayview.settings import Settings
from wayview.store import Store, open_store
from wayview.testing import add_sequence

SCRIPT = r"""
import asyncio, random, sys
from pathlib import Path
from wayview.ids import new_sequence_key
from wayview.model.entities import ImageSearch
from wayview.settings import Settings
from wayview.store import open_store

async def main(data_dir, seed):
    rng = random.Random(seed)
    store = open_store(Settings(data_dir=Path(data_dir)))
    await store.open()
    n = 0
    while True:
        seqs = sorted({im.sequence_id for im in (await store.search_images(
            ImageSearch(creator_username="k"))).items})
        if len(seqs) > 1 and rng.random() < 0.5:
            await store.merge_sequences(seqs[0], seqs[1])
        else:
            page = await store.search_images(ImageSearch(sequence_ids=(seqs[0],)))
            ids = [im.id for im in page.items]
            if len(ids) > 1:
                await store.split_sequence(seqs[0], ids[rng.randrange(1, len(ids))],
                                           new_sequence_key())
        n += 1
        print(n, flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def _open(data_dir: Path) -> Store:
    store = open_store(Settings(data_dir=data_dir))
    await store.open()
    return store


async def _seed(data_dir: Path) -> int:
    store = await _open(data_dir)
    try:
        user = await store.create_user("k")
        images = await add_sequence(store, user, [(13.40 + k * 2e-4, 52.5 + (k % 3) * 1e-4)
                                                  for k in range(40)], start_ms=1_600_000_000_000)
        return len(images)
    finally:
        await store.close()


async def _check(data_dir: Path, count: int) -> int:
    store = await _open(data_dir)
    try:
        page = await store.search_images(ImageSearch(creator_username="k"))
        assert len(page.items) == count == len({im.id for im in page.items})
        sequences = sorted({im.sequence_id for im in page.items})
        listed = await store.sequences_of(page.items[0].creator_id)
        # No sequence without images, none missing; every line's sequence exists.
        assert sorted(s.id for s in listed) == sequences
        assert all(s.image_count > 0 for s in listed)
        await assert_consistent(store, sequences)
        return len(sequences)
    finally:
        await store.close()


def test_sigkill_mid_split_or_merge_leaves_before_or_after(tmp_path: Path) -> None:
    count = asyncio.run(_seed(tmp_path))
    rng = random.Random(17)
    done = 0
    for round_ in range(3):
        done = max(done, kill_mid_way(SCRIPT, [str(tmp_path), str(round_)], rng, min_lines=3,
                                      max_lines=12, max_sleep_s=0.05))
        asyncio.run(_check(tmp_path, count))
    assert done >= 3
