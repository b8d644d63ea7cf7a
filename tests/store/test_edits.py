"""Owners correct their data (issue #17): `Store.correct_images`, `split_sequence` and
`merge_sequences` on every backend. What a client sees follows at once: entities, searches by
bbox and time, `image_ids` order, both image tilesets at every zoom; the values as uploaded
are kept; the epochs of every old and new tile go up."""

from __future__ import annotations

import numpy as np
import pytest

from wayview.errors import InvalidInput, NodeNotFound
from wayview.ids import new_sequence_key
from wayview.model.entities import ComputedFields, ImageCorrection, ImageSearch
from wayview.store import Store
from wayview.testing import add_sequence
from wayview.tiles.index import IMAGE_ZOOM, sequence_rows, unmorton_array
from wayview.tiles.tilemath import lnglat_to_tile, tile_bounds

X, Y = 8802, 5373
WEST, SOUTH, EAST, NORTH = tile_bounds(14, X, Y)
LAT = (SOUTH + NORTH) / 2
#: A z14 tile far away (another z12 tile too).
FAR_X = X + 9
T0 = 1_600_000_000_000


async def ordered(store: Store, sequence_id: str) -> list[int]:
    page = await store.search_images(ImageSearch(sequence_ids=(sequence_id,)))
    return [im.id for im in page.items]


async def z14_ids(store: Store, lon: float, lat: float, computed: bool) -> set[int]:
    x, y = lnglat_to_tile(lon, lat, IMAGE_ZOOM)
    content = await store.tile_content(IMAGE_ZOOM, x, y, ("image",), computed=computed)
    assert content.images is not None
    return set(content.images.ids.tolist())


async def assert_consistent(store: Store, sequence_ids: list[str]) -> None:
    """Each sequence's stored tile rows are those built from its images as served: every
    image in its z14 tile at its code, and every line tile holding exactly the line drawn."""
    for sequence_id in sequence_ids:
        page = await store.search_images(ImageSearch(sequence_ids=(sequence_id,)))
        images = page.items
        assert images, sequence_id
        for computed in (False, True):
            rows = sequence_rows(images, computed=computed)
            for im, qk in zip(images, rows.qk, strict=True):
                x, y = (int(v[0]) for v in unmorton_array(np.array([qk >> 24])))
                content = await store.tile_content(14, x, y, ("image",), computed=computed)
                assert content.images is not None
                codes = dict(zip(content.images.ids.tolist(), content.images.codes.tolist(),
                                 strict=True))
                assert codes.get(im.id) == qk, (sequence_id, im.id, computed)
            for z, tile, blob in rows.lines:
                if z not in (6, 10, 14):
                    continue
                tx, ty = (int(v[0]) for v in unmorton_array(np.array([tile])))
                content = await store.tile_content(z, tx, ty, ("sequence",), computed=computed)
                assert content.lines is not None
                mine = [line for line in content.lines if line.sequence_id == sequence_id]
                assert [line.coords for line in mine] == [blob], (sequence_id, z, computed)
                assert mine[0].image_id == images[0].id


async def test_store_correct_image_position_angle_and_time(store: Store) -> None:
    user = await store.create_user("u")
    lon0 = WEST + 0.0008
    a = await add_sequence(store, user, [(lon0 + k * 0.0002, LAT) for k in range(4)],
                           start_ms=T0, compass_angle_deg=90.0)
    moved = a[1]
    far_lon = tile_bounds(14, FAR_X, Y)[0] + 0.0005
    await store.set_computed_fields([ComputedFields(
        image_id=moved.id, computed_lon=moved.lon, computed_lat=moved.lat,
        computed_altitude_m=None, computed_compass_angle_deg=95.0, computed_rotation=(0, 0, 0),
        atomic_scale=1.0, camera_parameters=moved.camera_parameters, assets=0)])
    before = {g: [await store.tile_epoch(g, z, X >> (14 - z), Y >> (14 - z))
                  for z in (14, 12, 8)] for g in ("images", "computed")}
    far_before = await store.tile_epoch("images", 14, FAR_X, Y)

    result = await store.correct_images([ImageCorrection(
        moved.id, lon=far_lon, lat=LAT, compass_angle_deg=200.0,
        captured_at_ms=T0 + 10_000)])

    assert result.image_ids == (moved.id,) and result.sequence_ids == (moved.sequence_id,)
    assert result.previous == (ImageCorrection(moved.id, lon=moved.lon, lat=moved.lat,
                                               compass_angle_deg=90.0,
                                               captured_at_ms=moved.captured_at_ms),)
    got = (await store.get_images([moved.id]))[moved.id]
    assert (got.lon, got.lat, got.compass_angle_deg, got.captured_at_ms) == (
        far_lon, LAT, 200.0, T0 + 10_000)
    # The computed values it had no longer apply: both fall back to the correction.
    assert got.computed_lon is None and got.computed_compass_angle_deg is None
    originals = await store.image_originals([moved.id, a[0].id])
    assert set(originals) == {moved.id}
    o = originals[moved.id]
    assert (o.lon, o.lat, o.compass_angle_deg, o.captured_at_ms) == (
        moved.lon, moved.lat, 90.0, moved.captured_at_ms)
    # Searches: bbox and time, and the capture order (now last).
    near = await store.search_images(ImageSearch(bbox=(WEST, SOUTH, EAST, NORTH)))
    assert moved.id not in {im.id for im in near.items}
    far = tile_bounds(14, FAR_X, Y)
    assert [im.id for im in (await store.search_images(ImageSearch(bbox=far))).items] == [
        moved.id]
    late = await store.search_images(ImageSearch(start_captured_at_ms=T0 + 5_000))
    assert [im.id for im in late.items] == [moved.id]
    assert await ordered(store, moved.sequence_id) == [a[0].id, a[2].id, a[3].id, moved.id]
    # Both tilesets: gone from the old tile, in the new one, angle as corrected.
    for computed in (False, True):
        assert moved.id not in await z14_ids(store, moved.lon, moved.lat, computed)
        x, y = lnglat_to_tile(far_lon, LAT, 14)
        content = await store.tile_content(14, x, y, ("image",), computed=computed)
        assert content.images is not None
        assert content.images.ids.tolist() == [moved.id]
        assert content.images.compass_deg.tolist() == [200]
        assert content.images.captured_at_ms.tolist() == [T0 + 10_000]
    await assert_consistent(store, [moved.sequence_id])
    after = {g: [await store.tile_epoch(g, z, X >> (14 - z), Y >> (14 - z))
                 for z in (14, 12, 8)] for g in ("images", "computed")}
    for g in after:
        assert all(n > o for n, o in zip(after[g], before[g], strict=True)), g
    assert await store.tile_epoch("images", 14, FAR_X, Y) > far_before

    # A second correction keeps the values as uploaded; one that changes nothing is a no-op.
    await store.correct_images([ImageCorrection(moved.id, compass_angle_deg=10.0)])
    assert (await store.image_originals([moved.id]))[moved.id].compass_angle_deg == 90.0
    epoch = await store.tile_epoch("images", 14, FAR_X, Y)
    assert (await store.correct_images([ImageCorrection(moved.id, compass_angle_deg=10.0),
                                        ImageCorrection(4999999999999999, lon=1.0, lat=1.0)])
            ).image_ids == ()
    assert await store.tile_epoch("images", 14, FAR_X, Y) == epoch
    # Deleting a corrected image still works.
    await store.delete_images([moved.id])
    assert await store.image_originals([moved.id]) == {}


async def test_store_split_and_merge_sequences(store: Store) -> None:
    user = await store.create_user("u")
    other_user = await store.create_user("v")
    lon0 = WEST + 0.0008
    a = await add_sequence(store, user, [(lon0 + k * 0.0002, LAT) for k in range(5)],
                           start_ms=T0, compass_angle_deg=None)
    b = await add_sequence(store, user, [(lon0 + k * 0.0002, LAT + 0.0003) for k in range(3)],
                           start_ms=T0 + 100_000)
    c = await add_sequence(store, other_user, [(lon0, LAT - 0.0003)], start_ms=T0)
    seq = a[0].sequence_id
    before = await store.tile_epoch("images", 14, X, Y)

    new_id = new_sequence_key()
    result = await store.split_sequence(seq, a[2].id, new_id)

    assert result.image_ids == tuple(sorted(im.id for im in a[2:]))
    assert set(result.sequence_ids) == {seq, new_id}
    assert await ordered(store, seq) == [im.id for im in a[:2]]
    assert await ordered(store, new_id) == [im.id for im in a[2:]]
    moved = (await store.get_images([a[3].id]))[a[3].id]
    assert moved.sequence_id == new_id and moved.creator_id == user.id
    assert await store.tile_epoch("images", 14, X, Y) > before
    content = await store.tile_content(14, X, Y, ("image", "sequence"))
    assert content.images is not None and content.lines is not None
    keys = content.images.sequence_keys
    by_id = {int(i): keys[int(k)] for i, k in zip(content.images.ids.tolist(),
                                                    content.images.sequence_index.tolist(),
                                                    strict=True)}
    assert by_id[a[1].id] == seq and by_id[a[2].id] == new_id
    lines = {line.sequence_id: line.image_id for line in content.lines}
    assert lines[seq] == a[0].id and lines[new_id] == a[2].id
    await assert_consistent(store, [seq, new_id, b[0].sequence_id])

    for bad, why in [((seq, a[0].id), "first"), ((seq, b[0].id), "not in")]:
        with pytest.raises(InvalidInput, match=why):
            await store.split_sequence(*bad, new_sequence_key())
    with pytest.raises(NodeNotFound):
        await store.split_sequence("nosuchsequence", a[0].id, new_sequence_key())

    # Merge the tail back, and b too: one sequence in capture order; the others are gone.
    merged = await store.merge_sequences(seq, new_id)
    assert merged.emptied_sequence_ids == (new_id,)
    await store.merge_sequences(seq, b[0].sequence_id)
    assert await ordered(store, seq) == [im.id for im in a + b]
    assert await ordered(store, new_id) == []
    for computed in (False, True):
        for z, x, y in [(14, X, Y), (10, X >> 4, Y >> 4)]:
            content = await store.tile_content(z, x, y, ("sequence",), computed=computed)
            assert content.lines is not None
            assert {line.sequence_id for line in content.lines} == {seq}
    await assert_consistent(store, [seq])
    with pytest.raises(InvalidInput, match="same creator"):
        await store.merge_sequences(seq, c[0].sequence_id)
    with pytest.raises(InvalidInput, match="itself"):
        await store.merge_sequences(seq, seq)
    with pytest.raises(InvalidInput, match="exist"):
        await store.merge_sequences(seq, new_id)
    listed = await store.sequences_of(user.id)
    assert [(s.id, s.image_count) for s in listed] == [(seq, 8)]


async def test_store_reorder_by_capture_times(store: Store) -> None:
    user = await store.create_user("u")
    a = await add_sequence(store, user, [(WEST + 0.001 + k * 0.0002, LAT) for k in range(3)],
                           start_ms=T0)
    times = [im.captured_at_ms for im in a]
    # Reverse the order: the last image gets the first time and so on.
    await store.correct_images([ImageCorrection(im.id, captured_at_ms=t)
                                for im, t in zip(reversed(a), times, strict=True)])
    assert await ordered(store, a[0].sequence_id) == [im.id for im in reversed(a)]
    content = await store.tile_content(14, X, Y, ("sequence",))
    assert content.lines is not None
    assert [line.image_id for line in content.lines] == [a[2].id]
    await assert_consistent(store, [a[0].sequence_id])
