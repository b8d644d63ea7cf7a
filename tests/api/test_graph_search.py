"""GET /images, /image_ids, /map_features, /detections, /{id}/detections (spec §3.3–3.11)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import s2cell

from wayview.testing import Seeded, add_sequence

BBOX = "13.40,52.51,13.41,52.53"


def q(token: str) -> dict[str, str]:
    return {"Authorization": f"OAuth {token}"}


async def test_images_bbox_ordered_by_capture_time(client, seeded: Seeded):
    r = await client.get(
        f"/images?bbox={BBOX}&fields=id,captured_at", headers=q(seeded.client_token)
    )
    data = r.json()["data"]
    assert len(data) == len(seeded.images)
    keys = [(d["captured_at"], int(d["id"])) for d in data]
    assert keys == sorted(keys)
    assert "paging" not in r.json()


async def test_images_bbox_borders_inclusive(client, seeded):
    im = seeded.images[0]
    bbox = f"{im.lon},{im.lat},{im.lon},{im.lat}"
    r = await client.get(f"/images?bbox={bbox}", headers=q(seeded.client_token))
    assert [d["id"] for d in r.json()["data"]] == [str(im.id)]


async def test_images_time_window_is_half_open(client, seeded):
    first = seeded.images[0]
    r = await client.get(
        f"/images?bbox={BBOX}&start_captured_at=2021-05-01T10:00:00.500Z"
        "&end_captured_at=2021-05-01T10:00:02.500%2B00:00&fields=captured_at",
        headers=q(seeded.client_token),
    )
    assert [d["captured_at"] for d in r.json()["data"]] == [
        first.captured_at_ms,
        first.captured_at_ms + 1000,
    ]


async def test_images_filters_combine(client, seeded):
    r = await client.get(
        f"/images?bbox={BBOX}&is_pano=true&fields=is_pano", headers=q(seeded.client_token)
    )
    assert len(r.json()["data"]) == 5 and all(d["is_pano"] for d in r.json()["data"])
    r = await client.get(
        f"/images?bbox={BBOX}&make=bobcam&model=b1", headers=q(seeded.client_token)
    )
    assert len(r.json()["data"]) == 4
    r = await client.get(
        f"/images?bbox={BBOX}&camera_type=equirectangular", headers=q(seeded.client_token)
    )
    assert len(r.json()["data"]) == 5
    r = await client.get(f"/images?organization_id={seeded.org.id}", headers=q(seeded.client_token))
    assert len(r.json()["data"]) == 5


async def test_images_sequence_ids_both_names(client, seeded):
    seqs = list(seeded.sequences)
    for name in ("sequence_ids", "sequence_id"):
        r = await client.get(f"/images?{name}={seqs[0]},{seqs[2]}", headers=q(seeded.client_token))
        assert len(r.json()["data"]) == 14


async def test_images_limit_and_paging_follow_next(client, seeded):
    r = await client.get(
        f"/images?creator_username=ALICE&limit=4&fields=id&access_token={seeded.client_token}"
    )
    body = r.json()
    assert len(body["data"]) == 4
    seen = [d["id"] for d in body["data"]]
    while "paging" in body:
        nxt = body["paging"]["next"]
        assert nxt.startswith("http://wayview.test/images?")
        assert parse_qs(urlsplit(nxt).query)["access_token"] == [seeded.client_token]
        body = (await client.get(nxt)).json()
        seen += [d["id"] for d in body["data"]]
    assert len(seen) == len(set(seen)) == 15


async def test_paging_next_omits_header_token(client, seeded):
    r = await client.get("/images?creator_username=alice&limit=2", headers=q(seeded.client_token))
    assert "access_token" not in r.json()["paging"]["next"]


async def test_images_limit_clamped_to_max(client, seeded):
    r = await client.get(f"/images?bbox={BBOX}&limit=999999", headers=q(seeded.client_token))
    assert r.status_code == 200


async def test_image_ids_request_order_unknown_dropped_no_limit(client, seeded):
    ims = seeded.images
    ids = [ims[3].id, 1933525276802129, ims[0].id, seeded.features[0].id, ims[3].id]
    r = await client.get(
        f"/images?image_ids={','.join(map(str, ids))}&limit=1", headers=q(seeded.client_token)
    )
    assert [d["id"] for d in r.json()["data"]] == [str(ims[3].id), str(ims[0].id)]


async def test_s2_returns_every_image_of_the_cell_from_original_geometry(client, store, seeded):
    im = seeded.images[0]
    cell = s2cell.lat_lon_to_cell_id(im.lat, im.lon, 17)
    r = await client.get(
        f"/images?s2={cell}&fields=id,computed_geometry,geometry,sequence",
        headers=q(seeded.client_token),
    )
    ids = {d["id"] for d in r.json()["data"]}
    expected = {
        str(i.id) for i in seeded.images if s2cell.lat_lon_to_cell_id(i.lat, i.lon, 17) == cell
    }
    assert ids == expected and str(im.id) in ids


async def test_s2_any_level_on_all_six_faces(client, store, seeded):
    # One point per cube face; faces 4 and 5 have cell ids >= 2^63 (stored signed).
    points = [(0.0, 0.0), (90.0, 0.0), (10.0, 80.0), (180.0, 1.0), (-90.0, -10.0), (20.0, -80.0)]
    faces = set()
    for k, (lon, lat) in enumerate(points):
        (im,) = await add_sequence(store, seeded.bob, [(lon, lat)], start_ms=1_500_000_000_000 + k)
        for level in (5, 17, 30):
            cell = s2cell.lat_lon_to_cell_id(lat, lon, level)
            r = await client.get(f"/images?s2={cell}", headers=q(seeded.client_token))
            assert [d["id"] for d in r.json()["data"]] == [str(im.id)], (lon, lat, level)
        faces.add(s2cell.lat_lon_to_cell_id(lat, lon, 17) >> 61)
    assert faces == {0, 1, 2, 3, 4, 5}


async def test_image_ids_of_sequence_in_capture_order(client, seeded):
    seq, images = next(iter(seeded.sequences.items()))
    r = await client.get(f"/image_ids?sequence_id={seq}", headers=q(seeded.client_token))
    assert r.json() == {"data": [{"id": str(im.id)} for im in images]}


async def test_image_ids_unknown_sequence_is_empty(client, seeded):
    r = await client.get(
        "/image_ids?sequence_id=zzzzzzzzzzzzzzzzzzzzzz", headers=q(seeded.client_token)
    )
    assert r.status_code == 200 and r.json() == {"data": []}


async def test_map_features_search_values_and_types(client, seeded):
    h = q(seeded.client_token)
    r = await client.get(f"/map_features?bbox={BBOX}&fields=object_value", headers=h)
    assert sorted(d["object_value"] for d in r.json()["data"]) == [
        "object--street-light",
        "regulatory--stop--g1",
    ]
    r = await client.get(f"/map_features?bbox={BBOX}&object_values=regulatory--*", headers=h)
    assert [d["id"] for d in r.json()["data"]] == [str(seeded.features[0].id)]
    r = await client.get(
        f"/map_features?bbox={BBOX}&object_values=*--g1,object--street-light", headers=h
    )
    assert len(r.json()["data"]) == 2
    r = await client.get(f"/map_features?bbox={BBOX}&object_type=traffic_sign", headers=h)
    assert [d["id"] for d in r.json()["data"]] == [str(seeded.features[0].id)]
    r = await client.get(f"/map_features?bbox={BBOX}&object_values=Regulatory--*", headers=h)
    assert r.json()["data"] == []


async def test_detections_search_by_image_bbox(client, seeded):
    r = await client.get(
        f"/detections?bbox={BBOX}&values=object--*&fields=value", headers=q(seeded.client_token)
    )
    assert sorted(d["value"] for d in r.json()["data"]) == ["object--bench", "object--street-light"]


async def test_detections_of_image_and_feature(client, seeded):
    h = q(seeded.client_token)
    det = seeded.detections
    r = await client.get(
        f"http://wayview.test//{det[2].image_id}/detections?fields=id,image,geometry,value",
        headers=h,
    )
    assert [d["id"] for d in r.json()["data"]] == sorted([str(det[2].id), str(det[3].id)], key=int)
    r = await client.get(f"/{seeded.features[0].id}/detections/?fields=id,value,image", headers=h)
    data = r.json()["data"]
    # Newest image first (iD opens data[0]).
    assert [d["image"]["id"] for d in data] == [str(det[1].image_id), str(det[0].image_id)]


async def test_detections_of_other_node_is_e7(client, seeded):
    r = await client.get(f"/{seeded.org.id}/detections", headers=q(seeded.client_token))
    assert r.status_code == 400 and r.json()["error"]["error_subcode"] == 33
