"""Error catalogue E1–E13/E16, token transport, CORS, path tolerance, assets (spec §1, §2, §6)."""

from __future__ import annotations

import re

import httpx
import pytest

from wayview.api.app import create_app
from wayview.auth.tokens import hash_token
from wayview.testing import BASE_URL

BBOX = "13.40,52.51,13.41,52.53"
E7 = (
    "Unsupported get request. Object with ID '{}' does not exist, cannot be loaded due to "
    "missing permissions, or does not support this operation"
)


def assert_envelope(
    r: httpx.Response, status: int, type_: str, code: int, message: str, subcode: int | None = None
) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json; charset=UTF-8"
    error = r.json()["error"]
    assert error["message"] == message
    assert error["type"] == type_ and error["code"] == code
    assert re.fullmatch(r"[A-Za-z0-9_-]{23}", error["fbtrace_id"])
    assert r.headers["x-fb-trace-id"] == error["fbtrace_id"]
    assert r.headers["access-control-allow-origin"] == "*"
    if subcode is None:
        assert "error_subcode" not in error
    else:
        assert error["error_subcode"] == subcode


@pytest.mark.parametrize(
    "headers,query",
    [
        ({}, ""),  # E1 no token
        ({"Authorization": "OAuth MLY|1|nope"}, ""),  # E2 unknown
        ({}, "&access_token=garbage"),
        ({"Authorization": "OAuth "}, ""),
    ],
)
async def test_bad_token_is_e1_e2_before_anything_else(client, seeded, headers, query):
    for path in (
        f"/{seeded.images[0].id}?fields=id",
        "/1933525276802129?fields=id",
        "/images?bbox=1,2",
        "/nonsense/path",
        "/maps/whatever",
    ):
        r = await client.get(path + query, headers=headers)
        assert_envelope(r, 401, "OAuthException", 190, "Invalid OAuth 2.0 Access Token")
        assert r.headers["www-authenticate"] == 'OAuth error="invalid_token"'


async def test_expired_token_is_e3(client, store, seeded):
    from wayview.model.entities import Token

    await store.create_token(
        hash_token("MLYexpired"),
        Token(
            app_id=int(seeded.client_token.split("|")[1]),
            kind="user",
            scopes=("read",),
            user_id=seeded.alice.id,
            expires_at_ms=1000,
        ),
    )
    r = await client.get("/me", headers={"Authorization": "OAuth MLYexpired"})
    assert_envelope(
        r, 401, "OAuthException", 190, "Error validating access token: Session has expired."
    )


async def test_revoked_token_is_e4(settings, store, seeded):
    settings = settings.model_copy(
        update={"auth": settings.auth.model_copy(update={"token_cache_s": 0})}
    )
    app = create_app(settings, store=store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as c:
        assert (
            await c.get("/me", headers={"Authorization": f"OAuth {seeded.user_token}"})
        ).status_code == 200
        await store.revoke_token(hash_token(seeded.user_token))
        r = await c.get("/me", headers={"Authorization": f"OAuth {seeded.user_token}"})
    app_id = seeded.client_token.split("|")[1]
    assert_envelope(
        r,
        401,
        "OAuthException",
        190,
        f"Error validating access token: The user has not authorized application {app_id}.",
    )


async def test_token_transports_raw_pipe_encoded_header_and_bearer(client, seeded):
    im = seeded.images[0]
    token = seeded.client_token
    for url, headers in [
        (f"/{im.id}?access_token={token}", {}),
        (f"/{im.id}?access_token={token.replace('|', '%7C')}", {}),
        (f"/{im.id}", {"Authorization": f"OAuth {token}"}),
        (f"/{im.id}", {"Authorization": f"oauth {token}"}),
        (f"/{im.id}", {"Authorization": f"Bearer {token}"}),
        # Header wins over a stale query token (the SDK leaks one).
        (f"/{im.id}?access_token=stale", {"Authorization": f"OAuth {token}"}),
    ]:
        r = await client.get(url, headers=headers)
        assert r.status_code == 200, (url, headers, r.text)


async def test_e7_unknown_id_path_and_method(client, seeded):
    h = {"Authorization": f"OAuth {seeded.client_token}"}
    assert_envelope(
        await client.get("/1933525276802129?fields=id", headers=h),
        400,
        "MLYApiException",
        100,
        E7.format("1933525276802129"),
        33,
    )
    assert_envelope(
        await client.get("/nonsense", headers=h),
        400,
        "MLYApiException",
        100,
        E7.format("nonsense"),
        33,
    )
    r = await client.post(f"/{seeded.images[0].id}", headers=h)
    assert_envelope(
        r,
        400,
        "MLYApiException",
        100,
        E7.format(seeded.images[0].id).replace("get request", "post request"),
        33,
    )


async def test_e8_unknown_field_names_first_unknown_and_type(client, seeded):
    h = {"Authorization": f"OAuth {seeded.client_token}"}
    r = await client.get(f"/{seeded.images[0].id}?fields=id,bogus,worse", headers=h)
    assert_envelope(
        r,
        400,
        "MLYApiException",
        100,
        "Tried accessing nonexisting field (bogus) on node type (Image)",
    )
    # The SDK relies on a map feature failing with image fields (spec §10.1).
    r = await client.get(f"/{seeded.features[0].id}?fields=captured_at,make", headers=h)
    assert_envelope(
        r,
        400,
        "MLYApiException",
        100,
        "Tried accessing nonexisting field (captured_at) on node type (MapFeature)",
    )
    r = await client.get(f"/{seeded.images[0].id}?fields=creator{{email}}", headers=h)
    assert_envelope(
        r,
        400,
        "MLYApiException",
        100,
        "Tried accessing nonexisting field (email) on node type (User)",
    )
    r = await client.get(f"/images?bbox={BBOX}&fields=object_value", headers=h)
    assert r.status_code == 400


@pytest.mark.parametrize(
    "query,message",
    [
        ("bbox=1,2", "Invalid parameter bbox: expected minLon,minLat,maxLon,maxLat"),
        ("bbox=a,b,c,d", "Invalid parameter bbox: coordinates must be numbers"),
        ("bbox=13.41,52.51,13.40,52.53", "Invalid parameter bbox: minimum greater than maximum"),
        ("bbox=179.99,0,-179.99,0.01", "Invalid parameter bbox: minimum greater than maximum"),
        ("bbox=13,95,13.01,96", "Invalid parameter bbox: coordinates out of range"),
        ("bbox=nan,1,2,3", "Invalid parameter bbox: coordinates must be finite"),
        (
            "bbox=13,52,14,53",
            "Invalid parameter bbox: area 1 exceeds the maximum of 0.01 square degrees",
        ),
        (f"bbox={BBOX}&limit=0", "Invalid parameter limit: must be a positive integer"),
        (f"bbox={BBOX}&limit=ten", "Invalid parameter limit: must be a positive integer"),
        (
            f"bbox={BBOX}&start_captured_at=yesterday",
            "Invalid parameter start_captured_at: cannot parse time 'yesterday'",
        ),
        ("s2=12346", "Invalid parameter s2: not a valid S2 cell id"),
        ("s2=0", "Invalid parameter s2: not a valid S2 cell id"),
        ("s2=18446744073709551615", "Invalid parameter s2: not a valid S2 cell id"),
        ("s2=abc", "Invalid parameter s2: must be a decimal S2 cell id"),
        (f"bbox={BBOX}&is_pano=maybe", "Invalid parameter is_pano: must be true or false"),
        (
            f"bbox={BBOX}&camera_type=cube",
            "Invalid parameter camera_type: must be perspective, fisheye or spherical",
        ),
        (
            "image_ids=" + ",".join(["1000000000000001"] * 2001),
            "Invalid parameter image_ids: at most 2000 ids per request",
        ),
        ("image_ids=12,abc", "Invalid parameter image_ids: must be a numeric id"),
        ("organization_id=acme", "Invalid parameter organization_id: must be a numeric id"),
        (f"bbox={BBOX}&after=!!!", "Invalid parameter after: invalid cursor"),
        ("", "Missing required parameter bbox"),
        ("make=TestMake", "Missing required parameter bbox"),
        ("fields=creator{username", "Invalid parameter fields: unbalanced braces"),
    ],
)
async def test_e9_to_e12_image_search(client, seeded, query, message):
    r = await client.get(
        f"/images?{query}", headers={"Authorization": f"OAuth {seeded.client_token}"}
    )
    assert_envelope(r, 400, "MLYApiException", 100, message)


@pytest.mark.parametrize(
    "path,message",
    [
        ("/map_features", "Missing required parameter bbox"),
        ("/detections?values=x", "Missing required parameter bbox"),
        (
            f"/map_features?bbox={BBOX}&object_type=tree",
            "Invalid parameter object_type: must be trafficsign or point",
        ),
        ("/image_ids", "Missing required parameter sequence_id"),
        (
            "/?ids=" + ",".join(["1000000000000001"] * 101),
            "Invalid parameter ids: at most 100 ids per request",
        ),
        ("/", "Missing required parameter ids"),
    ],
)
async def test_e9_e10_e12_other_endpoints(client, seeded, path, message):
    r = await client.get(path, headers={"Authorization": f"OAuth {seeded.client_token}"})
    assert_envelope(r, 400, "MLYApiException", 100, message)


async def test_e16_internal_error_hides_details(settings, store, seeded, caplog):
    class Broken:
        def __getattr__(self, name):
            return getattr(store, name)

        async def get_node(self, node_id):
            raise RuntimeError("secret internal detail")

    app = create_app(settings, store=Broken())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as c:
        r = await c.get(
            f"/{seeded.images[0].id}", headers={"Authorization": f"OAuth {seeded.client_token}"}
        )
    assert_envelope(r, 500, "MLYApiException", 1, "An unknown error has occurred.")
    assert r.json()["error"]["is_transient"] is True
    assert "secret internal detail" not in r.text


async def test_preflight_any_path_no_token(client):
    for path in ("/images", "/123/detections", "/media/images/1/thumb_256.jpg", "/whatever"):
        r = await client.options(
            path,
            headers={
                "Origin": "https://example.org",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert r.status_code == 204
        assert r.headers["access-control-allow-origin"] == "*"
        assert "GET" in r.headers["access-control-allow-methods"]
        assert "authorization" in r.headers["access-control-allow-headers"].lower()
        assert r.headers["access-control-max-age"] == "86400"


async def test_cors_and_expose_headers_on_success(client, seeded):
    r = await client.get(
        f"/{seeded.images[0].id}", headers={"Authorization": f"OAuth {seeded.client_token}"}
    )
    assert r.headers["access-control-allow-origin"] == "*"
    assert "x-fb-trace-id" in r.headers["access-control-expose-headers"]


async def test_path_tolerance_trailing_and_double_slash_no_redirect(client, seeded):
    h = {"Authorization": f"OAuth {seeded.client_token}"}
    im = seeded.images[0]
    for path in (
        f"/{im.id}/?fields=id",
        f"{BASE_URL}//{im.id}?fields=id",
        f"{BASE_URL}//{im.id}//detections/",
        f"/images/?bbox={BBOX}",
    ):
        r = await client.get(path, headers=h)
        assert r.status_code == 200, path


async def test_unknown_query_parameters_are_ignored(client, seeded):
    r = await client.get(
        f"/images?bbox={BBOX}&layers=x&object_type=y",
        headers={"Authorization": f"OAuth {seeded.client_token}"},
    )
    assert r.status_code == 200


async def test_thumbnail_served_without_token_with_cache_and_cors(settings, store, seeded):
    from wayview.blobs import LocalBlobs, image_blob_key

    blobs = LocalBlobs(settings.blobs_path)
    im = seeded.images[0]
    blobs.put_bytes(image_blob_key(im.id, "thumb_1024"), b"\xff\xd8fakejpeg\xff\xd9")
    app = create_app(settings, store=store, blobs=blobs)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as c:
        r = await c.get(f"/media/images/{im.id}/thumb_1024.jpg")
        assert r.status_code == 200 and r.content.startswith(b"\xff\xd8")
        assert r.headers["content-type"] == "image/jpeg"
        assert "max-age=31536000" in r.headers["cache-control"]
        assert r.headers["access-control-allow-origin"] == "*"
        missing = await c.get(f"/media/images/{im.id}/thumb_256.jpg")
        assert missing.status_code == 404 and "error" in missing.json()
        bad = await c.get("/media/images/1/..%2F..%2Fwayview.db")
        assert bad.status_code in (400, 401, 404)


async def test_cors_allowed_origins_setting_restricts(settings, store, seeded):
    s = settings.model_copy(
        update={"cors": settings.cors.model_copy(update={"allowed_origins": "https://a.example"})}
    )
    app = create_app(s, store=store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as c:
        ok = await c.get("/healthz", headers={"Origin": "https://a.example"})
        other = await c.get("/healthz", headers={"Origin": "https://b.example"})
    assert ok.headers["access-control-allow-origin"] == "https://a.example"
    assert "access-control-allow-origin" not in other.headers
