"""GET /{id}, /me, /?ids=: field selection, nesting, serialisation rules (spec §1.4, §3)."""

from __future__ import annotations

import ast
import base64
import json

import httpx
import mapbox_vector_tile
import pytest

from wayview.testing import Seeded

SDK_IMAGE_FIELDS = (
    "altitude,atomic_scale,camera_parameters,camera_type,captured_at,compass_angle,"
    "computed_altitude,computed_compass_angle,computed_geometry,computed_rotation,creator,"
    "exif_orientation,geometry,height,make,model,thumb_256_url,thumb_1024_url,thumb_2048_url,"
    "thumb_original_url,merge_cc,mesh,quality_score,sequence,sfm_cluster,width"
)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"OAuth {token}"}


async def test_image_fields_render_as_spec_example(client: httpx.AsyncClient, seeded: Seeded):
    im = seeded.images[0]
    r = await client.get(
        f"/{im.id}?fields=captured_at,make,creator,geometry,sequence",
        headers=auth(seeded.client_token),
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json; charset=UTF-8"
    assert r.json() == {
        "captured_at": im.captured_at_ms,
        "make": "TestMake",
        "creator": {"id": str(seeded.alice.id), "username": "alice"},
        "geometry": {"type": "Point", "coordinates": [im.lon, im.lat]},
        "sequence": im.sequence_id,
        "id": str(im.id),
    }


async def test_image_without_fields_returns_only_id(client, seeded):
    im = seeded.images[0]
    r = await client.get(f"/{im.id}", headers=auth(seeded.client_token))
    assert r.json() == {"id": str(im.id)}


async def test_image_all_sdk_fields_are_literal_eval_safe(client, seeded):
    im = seeded.images[0]
    r = await client.get(f"/{im.id}?fields={SDK_IMAGE_FIELDS}", headers=auth(seeded.client_token))
    assert r.status_code == 200
    body = r.text
    assert ast.literal_eval(body) == json.loads(body)
    assert "\\/" not in body and "null" not in body and "true" not in body
    data = r.json()
    # Without a reconstruction these are omitted, never null (spec §3.2).
    for absent in ("mesh", "sfm_cluster", "merge_cc", "atomic_scale", "computed_rotation"):
        assert absent not in data
    assert data["computed_geometry"] == data["geometry"]
    assert data["computed_compass_angle"] == data["compass_angle"] == 45.0
    assert data["computed_altitude"] == data["altitude"] == 35.0
    assert data["camera_parameters"] == [0.85, 0.0, 0.0]
    assert data["thumb_1024_url"] == f"http://wayview.test/media/images/{im.id}/thumb_1024.jpg"
    assert data["exif_orientation"] == 1 and data["width"] == 4000 and data["height"] == 3000


async def test_image_spherical_omits_camera_parameters_and_reports_pano(client, seeded):
    pano = next(im for im in seeded.images if im.is_pano)
    r = await client.get(
        f"/{pano.id}?fields=camera_type,camera_parameters,is_pano,organization",
        headers=auth(seeded.client_token),
    )
    assert r.json() == {
        "camera_type": "spherical",
        "is_pano": True,
        "organization": {"id": str(seeded.org.id)},
        "id": str(pano.id),
    }


async def test_image_unknown_values_are_omitted(client, seeded):
    bob_image = next(im for im in seeded.images if im.creator_id == seeded.bob.id)
    r = await client.get(
        f"/{bob_image.id}?fields=compass_angle,altitude,organization,camera_parameters",
        headers=auth(seeded.client_token),
    )
    assert r.json() == {"camera_parameters": [0.5, -0.01, 0.002], "id": str(bob_image.id)}


@pytest.mark.parametrize(
    "selector,expected",
    [
        ("creator{username}", {"username": "alice"}),
        ("creator.username", {"username": "alice"}),
        ("creator", {"username": "alice"}),
        ("creator{id}", {}),
    ],
)
async def test_nested_selectors_all_forms(client, seeded, selector, expected):
    im = seeded.images[0]
    r = await client.get(f"/{im.id}?fields={selector}", headers=auth(seeded.client_token))
    assert r.json()["creator"] == {"id": str(seeded.alice.id), **expected}


async def test_nested_organization_fields_load_the_organization(client, seeded):
    pano = next(im for im in seeded.images if im.is_pano)
    r = await client.get(
        f"/{pano.id}?fields=organization{{slug,name}}", headers=auth(seeded.client_token)
    )
    assert r.json()["organization"] == {
        "id": str(seeded.org.id),
        "slug": "acme",
        "name": "Acme Mapping",
    }


async def test_detections_edge_depth_two(client, seeded):
    det = seeded.detections[0]
    r = await client.get(
        f"/{det.image_id}?fields=detections{{value,image{{id}}}}", headers=auth(seeded.client_token)
    )
    assert r.json()["detections"] == {
        "data": [
            {"value": "regulatory--stop--g1", "image": {"id": str(det.image_id)}, "id": str(det.id)}
        ]
    }


async def test_map_feature_fields(client, seeded):
    f = seeded.features[0]
    r = await client.get(
        f"/{f.id}?fields=object_value,object_type,geometry,aligned_direction,"
        "first_seen_at,last_seen_at,images",
        headers=auth(seeded.client_token),
    )
    data = r.json()
    assert data["object_value"] == "regulatory--stop--g1"
    assert data["object_type"] == "trafficsign"
    assert data["first_seen_at"].endswith("+0000") and "T" in data["first_seen_at"]
    assert data["aligned_direction"] == 90.0
    assert [i["id"] for i in data["images"]["data"]] == [
        str(seeded.detections[0].image_id),
        str(seeded.detections[1].image_id),
    ]
    assert set(data["images"]["data"][0]) == {"id", "geometry"}


async def test_detection_node_and_geometry_encoding(client, seeded):
    det = seeded.detections[0]
    r = await client.get(
        f"/{det.id}?fields=value,geometry,image,created_at", headers=auth(seeded.client_token)
    )
    data = r.json()
    assert data["created_at"] == "2021-05-20T17:29:01+0000"
    assert set(data["image"]) == {"id", "geometry"}
    tile = mapbox_vector_tile.decode(
        base64.b64decode(data["geometry"]), default_options={"y_coord_down": True}
    )
    layer = tile["mpy-or"]
    assert layer["extent"] == 4096 and len(layer["features"]) == 1
    ring = layer["features"][0]["geometry"]["coordinates"][0]
    assert {tuple(p) for p in ring} == {(1638, 1638), (2458, 1638), (2458, 2458), (1638, 2458)}


async def test_organization_and_user_nodes(client, seeded):
    r = await client.get(
        f"/{seeded.org.id}?fields=slug,description,name", headers=auth(seeded.user_token)
    )
    assert r.json() == {
        "slug": "acme",
        "description": "Test org",
        "name": "Acme Mapping",
        "id": str(seeded.org.id),
    }
    r = await client.get(f"/{seeded.bob.id}?fields=username,id", headers=auth(seeded.user_token))
    assert r.json() == {"username": "bob", "id": str(seeded.bob.id)}


async def test_me_with_user_token(client, seeded):
    r = await client.get("/me?fields=id,username", headers=auth(seeded.user_token))
    assert r.json() == {"id": str(seeded.alice.id), "username": "alice"}


async def test_me_with_client_token_is_e5(client, seeded):
    r = await client.get("/me?fields=id,username", headers=auth(seeded.client_token))
    assert r.status_code == 401
    assert r.json()["error"]["message"] == (
        "Error validating access token: A user access token is required for this request."
    )


async def test_multi_ids_keyed_by_id_and_unknown_omitted(client, seeded):
    a, b = seeded.images[0], seeded.images[1]
    ids = f"{a.id},{b.id},1933525276802129"
    r = await client.get(f"/?ids={ids}&fields=captured_at", headers=auth(seeded.client_token))
    assert r.json() == {
        str(a.id): {"captured_at": a.captured_at_ms, "id": str(a.id)},
        str(b.id): {"captured_at": b.captured_at_ms, "id": str(b.id)},
    }
    # The SDK's malformed path form.
    r2 = await client.get(f"/ids={ids}?fields=captured_at", headers=auth(seeded.client_token))
    assert r2.json() == r.json()


async def test_multi_ids_mixed_types_validate_fields_per_type(client, seeded):
    ids = f"{seeded.images[0].id},{seeded.features[0].id}"
    r = await client.get(f"/?ids={ids}&fields=geometry", headers=auth(seeded.client_token))
    assert set(r.json()) == {str(seeded.images[0].id), str(seeded.features[0].id)}
    r = await client.get(f"/?ids={ids}&fields=captured_at", headers=auth(seeded.client_token))
    assert r.status_code == 400
    assert "(captured_at) on node type (MapFeature)" in r.json()["error"]["message"]


async def test_non_ascii_username_is_raw_utf8(client, store, seeded):
    from wayview.testing import add_sequence

    user = await store.create_user("Jörg🚲")
    (im,) = await add_sequence(store, user, [(13.41, 52.52)], start_ms=1_600_000_000_000)
    r = await client.get(f"/{im.id}?fields=creator", headers=auth(seeded.client_token))
    assert "Jörg🚲".encode() in r.content
    assert ast.literal_eval(r.text)["creator"]["username"] == "Jörg🚲"


async def test_sequence_key_is_not_a_node(client, seeded):
    seq = seeded.images[0].sequence_id
    r = await client.get(f"/{seq}?fields=id", headers=auth(seeded.client_token))
    assert r.status_code == 400
    assert r.json()["error"]["error_subcode"] == 33


async def test_app_ids_are_not_visible_nodes(client, seeded):
    app_id = seeded.client_token.split("|")[1]
    r = await client.get(f"/{app_id}", headers=auth(seeded.client_token))
    assert r.status_code == 400 and r.json()["error"]["code"] == 100
