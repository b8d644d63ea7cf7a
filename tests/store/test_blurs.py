"""The blur-edits contract (issue #17, re-blur), on every store backend: automatic regions
recorded once, edits raising the revision atomically, media versions that only move forward,
errors of the current revision, rows going with their image."""

from __future__ import annotations

import asyncio

from wayview.model.blurs import AutoRegion, BlurShape
from wayview.store import Store
from wayview.testing import add_sequence

FACE = AutoRegion("a0", "face", (0.1, 0.2, 0.3, 0.4))
PLATE = AutoRegion("a1", "plate", (0.5, 0.6, 0.7, 0.8))
RECT = BlurShape("rect", ((0.2, 0.2), (0.4, 0.5)))
TRIANGLE = BlurShape("polygon", ((0.1, 0.1), (0.9, 0.1), (0.5, 0.9)))


async def _image_id(store: Store) -> int:
    alice = await store.create_user("alice")
    [image] = await add_sequence(store, alice, [(13.4, 52.5)], start_ms=1_700_000_000_000)
    return image.id


async def test_new_images_have_media_version_zero_and_no_edits(store: Store) -> None:
    image_id = await _image_id(store)
    assert (await store.get_images([image_id]))[image_id].media_version == 0
    assert await store.get_blur_edits(image_id) is None
    assert await store.get_blur_edits(image_id + 1000) is None


async def test_automatic_regions_are_recorded_once(store: Store) -> None:
    image_id = await _image_id(store)
    first = await store.record_automatic_blurs(image_id, [FACE, PLATE])
    assert first is not None and first.automatic == (FACE, PLATE)
    assert first.revision == 0 and first.added == () and first.removed == ()
    again = await store.record_automatic_blurs(image_id, [])
    assert again is not None and again.automatic == (FACE, PLATE)  # the first one wins
    assert await store.record_automatic_blurs(image_id + 1000, [FACE]) is None
    # Recording nothing found is a recording too.
    other = await _other_image(store)
    empty = await store.record_automatic_blurs(other, [])
    assert empty is not None and empty.automatic == ()


async def _other_image(store: Store) -> int:
    bob = await store.create_user("bob")
    [image] = await add_sequence(store, bob, [(13.5, 52.5)], start_ms=1_700_000_100_000)
    return image.id


async def test_saving_edits_raises_the_revision_and_keeps_automatic_regions(
        store: Store) -> None:
    image_id = await _image_id(store)
    alice = await store.get_user_by_username("alice")
    assert alice is not None
    # Edits before any automatic recording are kept when it comes.
    saved = await store.save_blur_edits(image_id, [RECT, TRIANGLE], [], user_id=alice.id)
    assert saved is not None and saved.revision == 1 and saved.automatic is None
    assert saved.added == (RECT, TRIANGLE) and saved.updated_by == alice.id
    assert saved.updated_at_ms > 0
    recorded = await store.record_automatic_blurs(image_id, [FACE, PLATE])
    assert recorded is not None and recorded.added == (RECT, TRIANGLE)
    saved = await store.save_blur_edits(image_id, [], ["a1"], user_id=None)
    assert saved is not None and saved.revision == 2 and saved.added == ()
    assert saved.removed == ("a1",) and saved.automatic == (FACE, PLATE)
    assert saved.updated_by is None
    assert await store.get_blur_edits(image_id) == saved
    assert await store.save_blur_edits(image_id + 1000, [], [], user_id=None) is None


async def test_concurrent_edits_get_distinct_revisions(store: Store) -> None:
    image_id = await _image_id(store)
    saved = await asyncio.gather(*(store.save_blur_edits(image_id, [RECT], [], user_id=None)
                                   for _ in range(6)))
    assert sorted(s.revision for s in saved if s is not None) == [1, 2, 3, 4, 5, 6]


async def test_media_version_moves_forward_only(store: Store) -> None:
    image_id = await _image_id(store)
    assert await store.switch_media_version(image_id, 2)
    assert (await store.get_images([image_id]))[image_id].media_version == 2
    assert not await store.switch_media_version(image_id, 1)
    assert not await store.switch_media_version(image_id, 2)
    assert not await store.switch_media_version(image_id + 1000, 5)
    assert (await store.get_images([image_id]))[image_id].media_version == 2
    # The next edit renders as a version above the live one.
    saved = await store.save_blur_edits(image_id, [RECT], [], user_id=None)
    assert saved is not None and saved.revision == 3


async def test_blur_error_is_kept_for_the_current_revision_only(store: Store) -> None:
    image_id = await _image_id(store)
    saved = await store.save_blur_edits(image_id, [RECT], [], user_id=None)
    assert saved is not None
    await store.set_blur_error(image_id, saved.revision, "x" * 5000)
    got = await store.get_blur_edits(image_id)
    assert got is not None and got.error is not None and 0 < len(got.error) <= 2000
    await store.set_blur_error(image_id, saved.revision - 1, "stale")  # ignored
    assert (await store.get_blur_edits(image_id)).error == got.error  # type: ignore[union-attr]
    newer = await store.save_blur_edits(image_id, [], [], user_id=None)
    assert newer is not None and newer.error is None  # a new edit clears it
    await store.set_blur_error(image_id, newer.revision, None)


async def test_blur_edits_go_with_their_image(store: Store) -> None:
    image_id = await _image_id(store)
    await store.save_blur_edits(image_id, [RECT], [], user_id=None)
    await store.delete_images([image_id])
    assert await store.get_blur_edits(image_id) is None
