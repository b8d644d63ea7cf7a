"""The blob journal: what an interrupted processing attempt wrote is deleted by the next attempt,
and nothing a stored row references is ever deleted (store contract + pipeline behaviour)."""

from __future__ import annotations

from pathlib import Path

from wayview.blobs import LocalBlobs
from wayview.blobs.base import cluster_blob_key, image_blob_key, private_source_key
from wayview.pipeline.process import (
    discard_journaled_blobs,
    sequence_blob_journal,
    sweep_retired_blobs,
)
from wayview.store import Store
from wayview.testing import add_sequence


async def test_journal_is_per_owner_idempotent_and_forgettable(store: Store) -> None:
    await store.journal_blobs("upload:1", ["images/001/1001/", "clusters/a3/xa3.json.z"])
    await store.journal_blobs("upload:1", ["images/001/1001/", "private/001/1001/"])
    await store.journal_blobs("upload:2", ["images/002/1002/"])
    assert sorted(await store.journaled_blobs("upload:1")) == [
        "clusters/a3/xa3.json.z", "images/001/1001/", "private/001/1001/"]
    await store.forget_blobs("upload:1", ["images/001/1001/", "not/journaled/"])
    assert sorted(await store.journaled_blobs("upload:1")) == [
        "clusters/a3/xa3.json.z", "private/001/1001/"]
    await store.forget_blobs("upload:1")
    assert await store.journaled_blobs("upload:1") == []
    assert await store.journaled_blobs("upload:2") == ["images/002/1002/"]
    assert await store.journaled_blobs("nobody") == []


def _write_image_blobs(blobs: LocalBlobs, image_id: int) -> list[str]:
    keys = [image_blob_key(image_id, "thumb_256"), image_blob_key(image_id, "tile_11_0_0"),
            private_source_key(image_id)]
    for key in keys:
        blobs.put_bytes(key, b"\xff\xd8")
    return keys


async def test_discard_deletes_only_what_no_row_references(store: Store, tmp_path: Path) -> None:
    blobs = LocalBlobs(tmp_path / "blobs")
    user = await store.create_user("journal_user")
    # An attempt that stored its sequence but died before forgetting its journal ...
    [kept] = await add_sequence(store, user, [(13.0, 55.0)], start_ms=1_600_000_000_000)
    kept_keys = _write_image_blobs(blobs, kept.id)
    blobs.put_bytes(cluster_blob_key(kept.sequence_id), b"z")
    # ... and an attempt killed before its insert.
    [lost_id] = await store.reserve_ids("image", 1)
    lost_keys = _write_image_blobs(blobs, lost_id)
    lost_sequence = "lostsequencekey00000001"
    blobs.put_bytes(cluster_blob_key(lost_sequence), b"z")
    owner = "upload:77"
    await store.journal_blobs(owner, sequence_blob_journal([kept.id], kept.sequence_id))
    await store.journal_blobs(owner, sequence_blob_journal([lost_id], lost_sequence))

    assert await discard_journaled_blobs(store, blobs, owner) == 3
    assert all(blobs.exists(k) for k in kept_keys)
    assert blobs.exists(cluster_blob_key(kept.sequence_id))
    assert not any(blobs.exists(k) for k in lost_keys)
    assert not blobs.exists(cluster_blob_key(lost_sequence))
    assert await store.journaled_blobs(owner) == []
    assert await discard_journaled_blobs(store, blobs, owner) == 0  # nothing left to do


async def test_retired_entries_move_to_their_own_owner_stamped_when_retired(store: Store) -> None:
    import time

    await store.journal_blobs("upload:1", ["images/001/1001/", "private/001/1001/",
                                           "clusters/a3/xa3.json.z"])
    await store.journal_blobs("upload:2", ["images/002/1002/"])
    before = int(time.time() * 1000) - 1
    await store.retire_blobs("upload:1", ["images/001/1001/", "private/001/1001/"])
    await store.retire_blobs("upload:1", [])
    assert await store.journaled_blobs("upload:1") == ["clusters/a3/xa3.json.z"]
    assert sorted(await store.journaled_blobs("late:upload:1")) == [
        "images/001/1001/", "private/001/1001/"]
    later = int(time.time() * 1000) + 1
    assert await store.retired_blob_owners(later) == ["late:upload:1"]  # journals are not
    assert await store.retired_blob_owners(before) == []  # retired after `before`
    # Retired again (another attempt deleted the folder again): the newer time counts.
    time.sleep(0.01)
    await store.journal_blobs("upload:1", ["images/001/1001/"])
    await store.retire_blobs("upload:1", ["images/001/1001/"])
    assert await store.retired_blob_owners(later) == []
    assert await store.retired_blob_owners(int(time.time() * 1000) + 1) == ["late:upload:1"]


async def test_a_write_landing_after_the_discard_is_deleted_by_the_sweep(
        store: Store, tmp_path: Path) -> None:
    """A PUT the blob store accepted without answering may land after the next attempt has
    discarded its folder: the sweep deletes it once the retirement is old enough."""
    import time

    blobs = LocalBlobs(tmp_path / "blobs")
    user = await store.create_user("sweep_user")
    [kept] = await add_sequence(store, user, [(13.0, 55.0)], start_ms=1_600_000_000_000)
    [lost_id] = await store.reserve_ids("image", 1)
    owner = "upload:78"
    await store.journal_blobs(owner, sequence_blob_journal([kept.id], kept.sequence_id))
    await store.journal_blobs(owner, sequence_blob_journal([lost_id], "lostsequencekey00000002"))
    lost_keys = _write_image_blobs(blobs, lost_id)
    kept_keys = _write_image_blobs(blobs, kept.id)
    assert await discard_journaled_blobs(store, blobs, owner) == 3
    assert not any(blobs.exists(k) for k in lost_keys)
    late = _write_image_blobs(blobs, lost_id)  # the late writes land

    now = int(time.time() * 1000)
    assert await sweep_retired_blobs(store, blobs, 60.0, now_ms=now) == 0  # not yet
    assert all(blobs.exists(k) for k in late)
    assert await sweep_retired_blobs(store, blobs, 60.0, now_ms=now + 61_000) == len(late)
    assert not any(blobs.exists(k) for k in late)
    assert all(blobs.exists(k) for k in kept_keys)
    assert await store.journaled_blobs("late:" + owner) == []
    assert await sweep_retired_blobs(store, blobs, 60.0, now_ms=now + 61_000) == 0
