"""The Store contract: every backend must pass this suite (parametrized by the `store` fixture)."""

from __future__ import annotations

import pytest

from wayview.errors import Conflict
from wayview.ids import ID_MAX, ID_MIN
from wayview.model.entities import ImageSearch, MapFeatureSearch, Sequence
from wayview.testing import add_sequence, make_image, seed
from wayview.tiles.tilemath import lnglat_to_tile


async def test_store_reserve_ids_share_one_space_and_fit_js(store):
    ids = await store.reserve_ids("image", 500) + await store.reserve_ids("map_feature", 500)
    assert len(set(ids)) == 1000
    assert all(ID_MIN <= i <= ID_MAX and 15 <= len(str(i)) <= 16 for i in ids)
    kinds = await store.node_kinds(ids)
    assert sum(k == "image" for k in kinds.values()) == 500


async def test_store_usernames_unique_case_insensitive(store):
    await store.create_user("Alice")
    with pytest.raises(Conflict):
        await store.create_user("alice")
    assert (await store.get_user_by_username("ALICE")).username == "Alice"


async def test_store_organization_membership(store):
    user = await store.create_user("u")
    org = await store.create_organization("org")
    assert not await store.is_organization_member(org.id, user.id)
    await store.add_organization_member(org.id, user.id)
    await store.add_organization_member(org.id, user.id)
    assert await store.is_organization_member(org.id, user.id)
    with pytest.raises(Conflict):
        await store.create_organization("ORG")


async def test_store_insert_sequence_is_atomic(store):
    user = await store.create_user("u")
    seq = Sequence(id="aaaaaaaaaaaaaaaaaaaaaa", creator_id=user.id)
    (i1, i2) = await store.reserve_ids("image", 2)
    good = make_image(id=i1, sequence_id=seq.id, creator_id=user.id, content_sha256="a")
    dup = make_image(id=i1, sequence_id=seq.id, creator_id=user.id, content_sha256="b")
    with pytest.raises(Conflict):
        await store.insert_sequence(seq, [good, dup])
    assert await store.count_images() == 0
    ok = make_image(id=i2, sequence_id=seq.id, creator_id=user.id, content_sha256="b")
    await store.insert_sequence(seq, [good, ok])
    assert await store.count_images() == 2
    assert await store.find_images_by_sha256(["a", "b", "c"]) == {"a": i1, "b": i2}


async def test_store_image_round_trip_keeps_every_field(store):
    user = await store.create_user("u")
    (iid,) = await store.reserve_ids("image", 1)
    seq = Sequence(id="bbbbbbbbbbbbbbbbbbbbbb", creator_id=user.id)
    image = make_image(
        id=iid,
        sequence_id=seq.id,
        creator_id=user.id,
        camera_type="fisheye",
        camera_parameters=(0.6, -0.1, 0.01),
        exif_orientation=6,
        is_pano=False,
        quality_score=0.7,
        computed_lon=13.4051,
        computed_lat=52.5201,
        computed_altitude_m=36.0,
        computed_compass_angle_deg=44.0,
        content_sha256="x",
        created_at_ms=123,
    )
    await store.insert_sequence(seq, [image])
    got = (await store.get_images([iid]))[iid]
    assert got.creator_username == "u"
    from dataclasses import replace

    assert replace(got, creator_username="") == image


async def test_store_search_orders_and_pages_with_keyset(store):
    user = await store.create_user("u")
    pts = [(13.0 + k * 1e-4, 52.0) for k in range(7)]
    images = await add_sequence(store, user, pts, start_ms=1000, step_ms=0)  # equal times
    page = await store.search_images(ImageSearch(bbox=(12.9, 51.9, 13.1, 52.1), limit=3))
    seen = [im.id for im in page.items]
    while page.next_after:
        page = await store.search_images(
            ImageSearch(bbox=(12.9, 51.9, 13.1, 52.1), limit=3, after=page.next_after)
        )
        seen += [im.id for im in page.items]
    assert seen == sorted(im.id for im in images)


async def test_store_bbox_recheck_is_exact(store):
    user = await store.create_user("u")
    (im,) = await add_sequence(store, user, [(13.123456789, 52.987654321)], start_ms=0)
    hit = await store.search_images(
        ImageSearch(bbox=(13.123456789, 52.987654321, 13.123456789, 52.987654321))
    )
    miss = await store.search_images(ImageSearch(bbox=(13.1234568, 52.0, 13.2, 53.0)))
    assert [i.id for i in hit.items] == [im.id] and miss.items == []


async def test_store_feature_search_glob_is_literal_except_star(store):
    ids = await store.reserve_ids("map_feature", 2)
    from wayview.model.entities import MapFeature

    await store.insert_map_features(
        [
            MapFeature(
                id=ids[0],
                object_value="a[b]?c--x",
                object_type="point",
                lon=1.0,
                lat=1.0,
                first_seen_at_ms=0,
                last_seen_at_ms=0,
            ),
            MapFeature(
                id=ids[1],
                object_value="abc--x",
                object_type="point",
                lon=1.0,
                lat=1.0,
                first_seen_at_ms=0,
                last_seen_at_ms=0,
            ),
        ]
    )
    page = await store.search_map_features(
        MapFeatureSearch(bbox=(0.9, 0.9, 1.1, 1.1), object_values=("a[b]?*",))
    )
    assert [f.id for f in page.items] == [ids[0]]


async def test_store_seeded_world_relations(store):
    world = await seed(store)
    f0 = world.features[0]
    by_feature = await store.detections_for_features([f0.id])
    assert [d.id for d in by_feature[f0.id]] == [world.detections[1].id, world.detections[0].id]
    images = await store.image_ids_for_features([f0.id])
    assert images[f0.id] == [world.detections[0].image_id, world.detections[1].image_id]


async def test_store_tokens_hash_lookup_and_revoke(store):
    from wayview.auth.tokens import create_app, hash_token, issue_user_token

    user = await store.create_user("u")
    app = await create_app(store, "a", owner=user)
    issued = await issue_user_token(store, user, app=app.app, scopes=("read",))
    token = await store.get_token(hash_token(issued.access_token))
    assert token.user_id == user.id and token.scopes == ("read",) and not token.revoked
    assert (await store.get_token(hash_token(app.client_token))).kind == "client"
    assert await store.revoke_token(hash_token(issued.access_token))
    assert (await store.get_token(hash_token(issued.access_token))).revoked
    assert await store.get_token(issued.access_token) is None  # only hashes are keys


async def test_store_app_with_fixed_client_token(store):
    from wayview.auth.tokens import create_app, hash_token

    user = await store.create_user("u")
    fixed = "MLY|4100327730013843|5bb78b81720791946a9a7b956c57b7cf"
    new = await create_app(store, "iD", owner=user, client_token=fixed)
    assert new.app.id == 4100327730013843
    assert (await store.get_token(hash_token(fixed))).app_id == new.app.id
    with pytest.raises(Conflict):
        await create_app(store, "again", owner=user, client_token=fixed)


async def test_store_tile_content_is_every_layer_of_one_tile(store):
    await seed(store)
    x, y = lnglat_to_tile(13.4053, 52.52, 14)
    both = await store.tile_content(14, x, y, ("sequence", "image"))
    assert both.overview is None
    images = await store.tile_images(14, x, y)
    assert both.images is not None and len(both.images) == len(images) >= 10
    assert both.images.ids.tolist() == images.ids.tolist()
    assert both.images.sequence_keys == images.sequence_keys
    assert [images.sequence_keys[i] for i in images.sequence_index] == [
        (await store.get_images([int(i)]))[int(i)].sequence_id for i in images.ids]
    assert both.lines == await store.tile_sequence_lines(14, x, y)
    assert both.lines and {line.sequence_id for line in both.lines} == set(images.sequence_keys)
    ox, oy = lnglat_to_tile(13.4053, 52.52, 3)
    overview = await store.tile_content(3, ox, oy, ("overview",))
    assert overview.images is None and overview.lines is None
    assert overview.overview is not None and len(overview.overview) >= 1
    assert overview.overview.ids.tolist() == (await store.tile_overview(3, ox, oy)).ids.tolist()
    nothing = await store.tile_content(14, x + 5, y, ("sequence", "image"))
    assert nothing.lines == [] and nothing.images is not None and len(nothing.images) == 0


async def test_store_feature_changes_move_relink_delete_and_bump_tiles(store):
    """The perception stage's one write: features upserted and deleted, detections relinked,
    the tiles of old and new positions invalidated."""
    from dataclasses import replace

    from wayview.model.entities import FeatureChanges, MapFeature

    world = await seed(store)
    f0, f1 = world.features
    d0, d1, d2, d3 = world.detections
    old_tile = lnglat_to_tile(f0.lon, f0.lat, 14)
    moved_to = (f0.lon + 0.05, f0.lat)  # another z14 tile
    new_tile = lnglat_to_tile(*moved_to, 14)
    assert old_tile != new_tile
    before_old = await store.tile_epoch("features", 14, *old_tile)
    before_new = await store.tile_epoch("features", 14, *new_tile)
    (new_id,) = await store.reserve_ids("map_feature", 1)
    fresh = MapFeature(id=new_id, object_value="object--bench", object_type="point",
                       lon=f1.lon, lat=f1.lat, first_seen_at_ms=5, last_seen_at_ms=6)
    moved = replace(f0, lon=moved_to[0], lat=moved_to[1], last_seen_at_ms=99,
                    aligned_direction_deg=180.0)
    await store.apply_feature_changes(FeatureChanges(
        upserts=(moved, fresh), deletes=(f1.id,),
        assignments=((d3.id, new_id), (d1.id, None))))
    got = await store.get_map_features([f0.id, f1.id, new_id])
    assert set(got) == {f0.id, new_id}
    assert (got[f0.id].lon, got[f0.id].last_seen_at_ms, got[f0.id].aligned_direction_deg) == \
        (moved_to[0], 99, 180.0)
    assert got[new_id] == fresh
    detections = await store.get_detections([d0.id, d1.id, d2.id, d3.id])
    assert detections[d0.id].map_feature_id == f0.id
    assert detections[d1.id].map_feature_id is None
    assert detections[d2.id].map_feature_id is None  # its feature was deleted
    assert detections[d3.id].map_feature_id == new_id
    assert await store.tile_epoch("features", 14, *old_tile) > before_old
    assert await store.tile_epoch("features", 14, *new_tile) > before_new
    # The spatial search follows the move.
    near_new = await store.search_map_features(MapFeatureSearch(
        bbox=(moved_to[0] - 1e-4, moved_to[1] - 1e-4, moved_to[0] + 1e-4, moved_to[1] + 1e-4)))
    assert [f.id for f in near_new.items] == [f0.id]
    near_old = await store.search_map_features(MapFeatureSearch(
        bbox=(f0.lon - 1e-4, f0.lat - 1e-4, f0.lon + 1e-4, f0.lat + 1e-4)))
    assert f0.id not in [f.id for f in near_old.items]


async def test_store_replace_detections_reports_the_features_that_lost_evidence(store):
    from wayview.model.entities import Detection

    world = await seed(store)
    d0, d1, d2, d3 = world.detections
    (new_id,) = await store.reserve_ids("detection", 1)
    fresh = Detection(id=new_id, image_id=d2.image_id, value="object--bench",
                      geometry=(((0.1, 0.1), (0.2, 0.1), (0.2, 0.2)),), created_at_ms=7)
    lost = await store.replace_detections([d2.image_id], [fresh])
    assert lost == [world.features[1].id]  # d2 was its evidence; d3 (same image) had none
    by_image = await store.detections_for_images([d2.image_id, d0.image_id])
    assert [d.id for d in by_image[d2.image_id]] == [new_id]
    assert [d.id for d in by_image[d0.image_id]] == [d0.id]
    assert await store.replace_detections([], []) == []
    await store.set_quality_scores([(d0.image_id, 0.42), (123, 0.5)])
    assert (await store.get_images([d0.image_id]))[d0.image_id].quality_score == 0.42


async def test_store_z14_tile_read_whole_equals_its_layers_read_alone(store):
    """A z14 tile's two layers read together (one statement on PostgreSQL, the pack and the
    lines inline on SQLite) are what each layer read alone gives, organisation-less lines and
    an empty neighbour tile included."""
    world = await seed(store)
    user = await store.create_user("solo")
    await add_sequence(store, user, [(world.images[0].lon + 0.0001 * i, world.images[0].lat)
                                     for i in range(3)], start_ms=1_700_000_000_000)
    im = world.images[0]
    x, y = lnglat_to_tile(im.lon, im.lat, 14)
    for tx, ty in ((x, y), (x + 3, y + 3)):
        whole = await store.tile_content(14, tx, ty, ("image", "sequence"))
        images = await store.tile_images(14, tx, ty)
        lines = await store.tile_sequence_lines(14, tx, ty)
        assert whole.images is not None and whole.lines is not None
        assert whole.images.ids.tolist() == images.ids.tolist()
        assert whole.images.sequence_keys == images.sequence_keys
        assert whole.images.creator_ids.tolist() == images.creator_ids.tolist()
        assert whole.lines == lines
        if (tx, ty) == (x, y):
            assert len(images) >= 4 and len(lines) >= 2
            assert any(line.organization_id is None for line in lines)
        else:
            assert len(images) == 0 and lines == []
