"""`Store.set_hidden`: a hidden image keeps its rows but leaves both tile indexes (z14 image
layer, sequence lines, overview cells) at once, and comes back when shown again; the writers
that rebuild tile rows later (deletion, splits, structure from motion) keep it out. Every
backend (the `store` fixture)."""

from __future__ import annotations

from wayview.ids import new_sequence_key
from wayview.model.entities import ComputedFields, ImageSearch
from wayview.store import Store
from wayview.testing import add_sequence
from wayview.tiles.tilemath import tile_bounds

X, Y = 8802, 5373
WEST, SOUTH, EAST, NORTH = tile_bounds(14, X, Y)
LAT = (SOUTH + NORTH) / 2


async def _shown(store: Store, *, computed: bool = False) -> set[int]:
    content = await store.tile_content(14, X, Y, ("image",), computed=computed)
    assert content.images is not None
    return set(content.images.ids.tolist())


async def _line_points(store: Store, sequence_id: str, *, computed: bool = False) -> int:
    """Points of the sequence's z14 line (0: no line)."""
    content = await store.tile_content(14, X, Y, ("sequence",), computed=computed)
    assert content.lines is not None
    mine = [line for line in content.lines if line.sequence_id == sequence_id]
    return sum(len(line.coords) for line in mine) // 2 if mine else 0


async def _overview(store: Store, *, computed: bool = False) -> set[int]:
    content = await store.tile_content(5, X >> 9, Y >> 9, ("overview",), computed=computed)
    assert content.overview is not None
    return set(content.overview.ids.tolist())


async def test_hidden_images_leave_the_tiles_and_come_back(store: Store) -> None:
    user = await store.create_user("u")
    images = await add_sequence(store, user, [(WEST + 0.001 + k * 0.0005, LAT + k % 2 * 3e-4)
                                              for k in range(4)], start_ms=1_600_000_000_000)
    ids = [im.id for im in images]
    sequence_id = images[0].sequence_id
    full = await _line_points(store, sequence_id)
    epoch = await store.tile_epoch("images", 14, X, Y)
    assert await store.set_hidden([ids[1], 4_999_999_999_999_999], True, by=user.id,
                                  reason="a face") == [ids[1]]
    assert await store.set_hidden([ids[1]], True) == []  # already hidden
    assert await store.tile_epoch("images", 14, X, Y) > epoch
    for computed in (False, True):
        assert await _shown(store, computed=computed) == set(ids) - {ids[1]}
        assert 0 < await _line_points(store, sequence_id, computed=computed) < full
    assert await store.hidden_among(ids) == {ids[1]}
    [listed] = await store.list_hidden()
    assert (listed.image_id, listed.hidden_by, listed.reason, listed.owner_id) == (
        ids[1], user.id, "a face", user.id)
    assert await store.list_hidden(organization_ids=()) == []
    # The rows stay (the Graph service decides who sees them).
    assert ids[1] in await store.get_images(ids)
    # Hide the rest: no line, no overview cell; the sequence stays.
    await store.set_hidden(ids, True)
    assert await _shown(store) == set() and await _line_points(store, sequence_id) == 0
    assert not await _overview(store) & set(ids)
    page = await store.search_images(ImageSearch(sequence_ids=(sequence_id,)))
    assert [im.id for im in page.items] == ids
    # Shown again: back as before.
    assert await store.set_hidden(ids, False) == sorted(ids)
    for computed in (False, True):
        assert await _shown(store, computed=computed) == set(ids)
        assert await _line_points(store, sequence_id, computed=computed) == full
    assert await _overview(store) & set(ids)
    assert await store.hidden_among(ids) == set()


async def test_later_rebuilds_keep_hidden_images_out(store: Store) -> None:
    user = await store.create_user("u")
    images = await add_sequence(store, user, [(WEST + 0.001 + k * 0.0005, LAT + k % 2 * 3e-4)
                                              for k in range(6)], start_ms=1_600_000_000_000)
    ids = [im.id for im in images]
    await store.set_hidden([ids[2]], True)
    # Structure from motion rewrites the computed index of the whole sequence.
    await store.set_computed_fields([ComputedFields(
        im.id, im.lon + 1e-5, im.lat, None, 10.0, (0.0, 0.0, 0.0), 1.0, None, 0)
        for im in images])
    assert await _shown(store, computed=True) == set(ids) - {ids[2]}
    # A split, then deleting every visible image of the second half: the sequence holding
    # only the hidden image is not deleted, and shows nothing.
    new_id = new_sequence_key()
    await store.split_sequence(images[0].sequence_id, ids[2], new_id)
    assert await _shown(store) == set(ids) - {ids[2]}
    deleted = await store.delete_images(ids[3:])
    assert deleted.emptied_sequence_ids == ()
    assert await _line_points(store, new_id) == 0
    page = await store.search_images(ImageSearch(sequence_ids=(new_id,)))
    assert [im.id for im in page.items] == [ids[2]]
    # Deleting the hidden image itself empties its sequence.
    deleted = await store.delete_images([ids[2]])
    assert deleted.emptied_sequence_ids == (new_id,)
    assert await store.hidden_among([ids[2]]) == set() and await store.list_hidden() == []
    assert await _shown(store) == set(ids[:2])


async def test_image_reads_carry_the_hidden_flag(store: Store) -> None:
    # The Graph API's visibility check reads the flag with the image instead of asking again.
    user = await store.create_user("flagged")
    images = await add_sequence(store, user, [(13.0 + k * 1e-4, 52.0) for k in range(3)],
                                start_ms=1_600_000_000_000)
    ids = [im.id for im in images]
    await store.set_hidden([ids[1]], True)
    found = await store.get_images(ids)
    assert [found[i].hidden for i in ids] == [False, True, False]
    node = await store.get_node(ids[1])
    assert node is not None and node[1].hidden is True  # type: ignore[attr-defined]
    page = await store.search_images(ImageSearch(bbox=(12.9, 51.9, 13.1, 52.1)))
    assert {im.id: im.hidden for im in page.items} == {ids[0]: False, ids[1]: True,
                                                       ids[2]: False}
    await store.set_hidden([ids[1]], False)
    assert (await store.get_images([ids[1]]))[ids[1]].hidden is False
