"""Acceptance: the official Python SDK (PyPI `mapillary` 1.0.16) against a live wayview (spec §10.1).

The SDK runs in its own virtualenv (`.venv-sdk`, or `$WAYVIEW_SDK_VENV`) as a subprocess, pointed
at a real `wayview serve` on loopback by the transport rewrite of spec §10.1. The data come in
the way a user brings them: users, an app and a token through the CLI, photos through
`wayview import`, map features and detections through the store API. Vector-tile functions
(`get_image_close_to`, `images_in_bbox`, …) are out of scope until the tiles land.

Plain-HTTP checks against the same server cover what only a real socket shows (spec §10.5):
the E1/E2 envelope, raw `|` and `{}` in the request target, `//{id}/detections`, preflight.
"""

from __future__ import annotations

import ast
import asyncio
import io
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image as PILImage
from tests.acceptance.live import (
    REPO,
    LiveServer,
    clean_env,
    client_venv,
    live_server,
    raw_get,
    wayview,
    wayview_json,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("sdk")]

SDK_VERSION = "1.0.16"
SDK_TIMEOUT_S = 300
START = datetime(2021, 5, 1, 10, 0, 0, 500_000, tzinfo=UTC)
START_MS = 1_619_863_200_500
LON0, LAT0 = 13.19100, 55.70470
STEP_DEG = 0.00005
PHOTOS = 6
WIDTH, HEIGHT = 1280, 960
MAKE, MODEL = "AcmeCam", "X-100"
FEATURE_VALUE = "regulatory--stop--g1"
BOX = ((0.40, 0.30), (0.60, 0.30), (0.60, 0.55), (0.40, 0.55))
DETECTION_CREATED_MS = 1_621_531_741_000
E1 = {"message": "Invalid OAuth 2.0 Access Token", "type": "OAuthException", "code": 190}
#: The 27 Image fields the SDK validates against (`Entities.get_image_fields()`, spec §3.2).
SDK_IMAGE_FIELDS = [
    "id", "altitude", "atomic_scale", "camera_parameters", "camera_type", "captured_at",
    "compass_angle", "computed_altitude", "computed_compass_angle", "computed_geometry",
    "computed_rotation", "creator", "exif_orientation", "geometry", "height", "make", "model",
    "thumb_256_url", "thumb_1024_url", "thumb_2048_url", "thumb_original_url", "merge_cc",
    "mesh", "quality_score", "sequence", "sfm_cluster", "width",
]


@dataclass
class World:
    """What the acceptance run seeded, and the live server serving it."""

    server: LiveServer
    username: str
    user_id: str
    client_token: str
    user_token: str
    sequence_id: str
    image_ids: list[str]
    feature_ids: list[str]
    detection_ids: list[str]

    @property
    def base(self) -> str:
        return self.server.base_url


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sdk_python() -> Path:
    """The python of a virtualenv with mapillary==1.0.16 (installed from PyPI on first use)."""
    venv = Path(os.environ.get("WAYVIEW_SDK_VENV") or REPO / ".venv-sdk")
    return client_venv(venv, f"mapillary=={SDK_VERSION}", "mapillary", SDK_VERSION)


def _write_photos(folder: Path) -> None:
    """A short eastward line of JPEGs: GPS, DateTimeOriginal 1 s apart, heading, make/model."""
    from wayview.fixtures import write_jpeg

    for k in range(PHOTOS):
        write_jpeg(folder / f"IMG_{k:04d}.jpg", width=WIDTH, height=HEIGHT,
                   lat=LAT0, lon=LON0 + k * STEP_DEG, captured_at=START + timedelta(seconds=k),
                   compass_deg=90.0 + k, altitude_m=30.0 + k, make=MAKE, model=MODEL,
                   seed=k, label=str(k))


async def _add_features(data_dir: Path, sequence_id: str) -> tuple[list[int], list[int]]:
    """Map features near the imported line and detections on its images (store API)."""
    from wayview.model.entities import Detection, ImageSearch, MapFeature
    from wayview.settings import Settings
    from wayview.testing import open_test_store

    settings = Settings(_env_file=None, data_dir=data_dir)  # type: ignore[call-arg]
    async with open_test_store(settings) as store:
        page = await store.search_images(ImageSearch(sequence_ids=(sequence_id,), limit=100))
        images = sorted(page.items, key=lambda im: (im.captured_at_ms, im.id))
        assert len(images) == PHOTOS, images
        feature_ids = await store.reserve_ids("map_feature", 2)
        detection_ids = await store.reserve_ids("detection", 3)
        features = [
            MapFeature(id=feature_ids[0], object_value=FEATURE_VALUE, object_type="trafficsign",
                       lon=LON0 + 2.5 * STEP_DEG, lat=LAT0 + 0.00002,
                       first_seen_at_ms=images[1].captured_at_ms,
                       last_seen_at_ms=images[3].captured_at_ms, aligned_direction_deg=270.0),
            MapFeature(id=feature_ids[1], object_value="object--street-light",
                       object_type="point", lon=LON0 + 4.5 * STEP_DEG, lat=LAT0 - 0.00002,
                       first_seen_at_ms=images[4].captured_at_ms,
                       last_seen_at_ms=images[4].captured_at_ms),
        ]
        await store.insert_map_features(features)
        pairs = [(images[1].id, feature_ids[0]), (images[3].id, feature_ids[0]),
                 (images[4].id, feature_ids[1])]
        detections = [
            Detection(id=det_id, image_id=image_id,
                      value=FEATURE_VALUE if feature_id == feature_ids[0]
                      else "object--street-light",
                      geometry=(BOX,), created_at_ms=DETECTION_CREATED_MS + k * 1000,
                      map_feature_id=feature_id)
            for k, (det_id, (image_id, feature_id)) in enumerate(
                zip(detection_ids, pairs, strict=True))
        ]
        await store.insert_detections(detections)
    return feature_ids, detection_ids


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Seed through the CLI, the importer and the store, then serve it live."""
    root = tmp_path_factory.mktemp("sdk-live")
    data = root / "data"
    user = wayview_json("users", "create", "alice", "--email", "alice@example.org",
                        data_dir=data, cwd=root)
    app = wayview_json("apps", "create", "sdk acceptance", "--owner", "alice",
                       data_dir=data, cwd=root)
    token = wayview_json("tokens", "create", "--user", "alice", data_dir=data, cwd=root)
    _write_photos(root / "photos")
    report = json.loads(wayview("import", str(root / "photos"), "--user", "alice", "--json",
                                data_dir=data, cwd=root).strip().splitlines()[-1])
    assert report["imported"] == PHOTOS and report["skipped"] == [], report
    assert len(report["sequences"]) == 1, report
    sequence_id = report["sequences"][0]["id"]
    feature_ids, detection_ids = asyncio.run(_add_features(data, sequence_id))
    with live_server(data, root / "server.log", cwd=root) as server:
        with httpx.Client(trust_env=False, timeout=10) as http:
            response = http.get(f"{server.base_url}/image_ids",
                                params={"sequence_id": sequence_id},
                                headers={"Authorization": f"OAuth {app['client_token']}"})
        assert response.status_code == 200, response.text
        image_ids = [row["id"] for row in response.json()["data"]]
        assert len(image_ids) == PHOTOS, response.text
        yield World(server=server, username=user["username"], user_id=user["id"],
                    client_token=app["client_token"], user_token=token["access_token"],
                    sequence_id=sequence_id, image_ids=image_ids,
                    feature_ids=[str(i) for i in feature_ids],
                    detection_ids=[str(i) for i in detection_ids])


# The SDK script: runs in the SDK's virtualenv, prints one JSON object on stdout. The SDK logs
# every request to sys.stdout, so stdout is swapped for stderr before `mapillary` is imported.
SDK_SCRIPT = r'''
import json, sys, traceback

real_stdout, sys.stdout = sys.stdout, sys.stderr
cfg = json.loads(sys.argv[1])
BASE = cfg["base"]

import requests.adapters

_send = requests.adapters.HTTPAdapter.send


def send(self, request, **kw):  # spec 10.1: rewrite at the transport layer
    for host in ("https://graph.mapillary.com", "https://tiles.mapillary.com"):
        if request.url.startswith(host):
            request.url = BASE + request.url[len(host):]
    return _send(self, request, **kw)


requests.adapters.HTTPAdapter.send = send

import mapillary
import mapillary.interface as mly
from mapillary.config.api.entities import Entities

results = {}


def check(name, fn):
    try:
        results[name] = {"ok": True, "value": fn()}
    except BaseException as exc:
        results[name] = {
            "ok": False, "error": type(exc).__module__ + "." + type(exc).__name__,
            "message": str(exc), "attrs": {k: str(v) for k, v in vars(exc).items()},
            "traceback": traceback.format_exc(),
        }


check("image_fields", Entities.get_image_fields)
check("set_bad_token", lambda: mly.set_access_token("MLY|1|not-a-token"))
check("set_user_token", lambda: mly.set_access_token(cfg["user_token"]))
check("set_client_token", lambda: mly.set_access_token(cfg["client_token"]))
image_id, feature_id = cfg["image_id"], cfg["feature_id"]
check("image_all_fields",
      lambda: json.loads(mly.image_from_key(image_id, fields=Entities.get_image_fields())))
check("image_some_fields", lambda: json.loads(mly.image_from_key(
    image_id, fields=["captured_at", "make", "model", "creator", "thumb_256_url"])))
check("image_default_fields", lambda: json.loads(mly.image_from_key(image_id)))
check("thumbnail_1024", lambda: mly.image_thumbnail(image_id, 1024))
check("thumbnail_256", lambda: mly.image_thumbnail(image_id, 256))
check("feature", lambda: json.loads(mly.feature_from_key(
    feature_id, fields=["object_value", "object_type", "first_seen_at", "last_seen_at",
                        "images"])))
check("feature_default_fields", lambda: json.loads(mly.feature_from_key(feature_id)))
check("image_from_feature_id", lambda: mly.image_from_key(feature_id))
check("feature_from_image_id", lambda: mly.feature_from_key(image_id))
check("detections_of_image", lambda: mly.get_detections_with_image_id(image_id).to_dict())
check("detections_of_image_fields", lambda: mly.get_detections_with_image_id(
    image_id, fields=["value", "image", "created_at"]).to_dict())
# fields=None (the default) crashes inside SDK 1.0.16 before any request; pass them.
check("detections_of_feature", lambda: mly.get_detections_with_map_feature_id(
    feature_id, fields=["id", "created_at", "geometry", "image", "value"]).to_dict())

real_stdout.write(json.dumps(results))
real_stdout.flush()
'''


@pytest.fixture(scope="session")
def sdk(sdk_python: Path, world: World, tmp_path_factory: pytest.TempPathFactory
        ) -> dict[str, Any]:
    """Run the SDK script once against the live server; its per-call results by name."""
    folder = tmp_path_factory.mktemp("sdk-run")
    script = folder / "run_sdk.py"
    script.write_text(SDK_SCRIPT)
    cfg = {"base": world.base, "client_token": world.client_token,
           "user_token": world.user_token, "image_id": world.image_ids[1],
           "feature_id": world.feature_ids[0]}
    done = subprocess.run([str(sdk_python), str(script), json.dumps(cfg)], cwd=folder,
                          env=clean_env(PYTHONDONTWRITEBYTECODE="1"), capture_output=True,
                          text=True, timeout=SDK_TIMEOUT_S, stdin=subprocess.DEVNULL,
                          check=False)
    (folder / "sdk.log").write_text(done.stderr)
    assert done.returncode == 0, f"SDK script failed:\n{done.stderr[-6000:]}"
    results: dict[str, Any] = json.loads(done.stdout)
    return results


def ok(results: dict[str, Any], name: str, world: World) -> Any:
    """The value of a successful SDK call, or a failure showing its traceback and the server log."""
    entry = results[name]
    if not entry["ok"]:
        pytest.fail(f"SDK call {name} raised {entry['error']}: {entry['message']}\n"
                    f"{entry['traceback']}\n--- server log ---\n{world.server.log_tail()}")
    return entry["value"]


def raised(results: dict[str, Any], name: str) -> dict[str, Any]:
    """The exception record of an SDK call that must fail."""
    entry = results[name]
    assert not entry["ok"], f"SDK call {name} succeeded with {entry['value']!r}"
    return entry  # type: ignore[no-any-return]


# -- the SDK --------------------------------------------------------------------------------


def test_sdk_knows_the_27_image_fields(sdk: dict[str, Any], world: World) -> None:
    assert ok(sdk, "image_fields", world) == SDK_IMAGE_FIELDS


def test_set_access_token_accepts_valid_tokens(sdk: dict[str, Any], world: World) -> None:
    ok(sdk, "set_user_token", world)
    ok(sdk, "set_client_token", world)


def test_set_access_token_rejects_a_bad_token(sdk: dict[str, Any]) -> None:
    entry = raised(sdk, "set_bad_token")
    assert entry["error"] == "mapillary.models.exceptions.InvalidTokenError", entry
    assert entry["attrs"] == {"message": E1["message"], "error_type": E1["type"],
                              "code": str(E1["code"]), "fbtrace_id": entry["attrs"]["fbtrace_id"]}
    assert len(entry["attrs"]["fbtrace_id"]) == 23


def _properties(geojson: dict[str, Any]) -> dict[str, Any]:
    assert geojson["type"] == "FeatureCollection"
    # The SDK 1.0.16 quirk: a single entity's "features" is the Feature itself, not a list.
    feature = geojson["features"]
    assert feature["type"] == "Feature"
    return feature["properties"]  # type: ignore[no-any-return]


def test_image_from_key_with_all_27_fields(sdk: dict[str, Any], world: World) -> None:
    props = _properties(ok(sdk, "image_all_fields", world))
    k = 1
    assert props["id"] == world.image_ids[k]
    assert props["captured_at"] == START_MS + k * 1000
    assert props["make"] == MAKE and props["model"] == MODEL
    assert props["creator"] == {"id": world.user_id, "username": "alice"}
    assert props["sequence"] == world.sequence_id
    assert (props["width"], props["height"]) == (WIDTH, HEIGHT)
    assert props["camera_type"] == "perspective"
    assert props["exif_orientation"] == 1
    assert props["compass_angle"] == pytest.approx(90.0 + k, abs=0.01)
    assert props["altitude"] == pytest.approx(30.0 + k, abs=0.01)
    lon, lat = props["computed_geometry"]["coordinates"]
    assert (lon, lat) == (pytest.approx(LON0 + k * STEP_DEG, abs=1e-6), pytest.approx(LAT0, abs=1e-6))
    for size in ("256", "1024", "2048", "original"):
        assert props[f"thumb_{size}_url"].startswith(world.base + "/"), props
    # The pipeline's reconstruction fields: assets as {"id", "url"} (never a null url, §3.2).
    for asset in ("mesh", "sfm_cluster"):
        assert set(props[asset]) == {"id", "url"}, props
        assert props[asset]["url"].startswith(world.base + "/media/"), props
    assert len(props["computed_rotation"]) == 3 and props["atomic_scale"] == 1.0
    assert isinstance(props["merge_cc"], int)


def test_image_from_key_returns_the_seeded_values(sdk: dict[str, Any], world: World) -> None:
    props = _properties(ok(sdk, "image_some_fields", world))
    assert props == {
        "captured_at": START_MS + 1000, "make": MAKE, "model": MODEL,
        "creator": {"id": world.user_id, "username": "alice"},
        "thumb_256_url": props["thumb_256_url"], "id": world.image_ids[1],
    }
    assert props["thumb_256_url"].startswith(world.base + "/")
    assert _properties(ok(sdk, "image_default_fields", world))["id"] == world.image_ids[1]


@pytest.mark.parametrize(("name", "longest"), [("thumbnail_1024", 1024), ("thumbnail_256", 256)])
def test_image_thumbnail_url_serves_a_jpeg(sdk: dict[str, Any], world: World, name: str,
                                           longest: int) -> None:
    url = ok(sdk, name, world)
    assert url.startswith(world.base + "/"), url
    with httpx.Client(trust_env=False, timeout=10) as http:
        response = http.get(url)  # asset URLs need no token (spec §1.2)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.content[:3] == b"\xff\xd8\xff"
    picture = PILImage.open(io.BytesIO(response.content))
    assert picture.format == "JPEG"
    assert picture.width == longest  # the 1280×960 source is landscape


def test_feature_from_key(sdk: dict[str, Any], world: World) -> None:
    props = _properties(ok(sdk, "feature", world))
    assert props["id"] == world.feature_ids[0]
    assert props["object_value"] == FEATURE_VALUE
    assert props["object_type"] == "trafficsign"
    first = datetime.fromtimestamp((START_MS + 1000) / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")
    last = datetime.fromtimestamp((START_MS + 3000) / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")
    assert (props["first_seen_at"], props["last_seen_at"]) == (first, last)
    assert sorted(im["id"] for im in props["images"]["data"]) == sorted(
        [world.image_ids[1], world.image_ids[3]])
    assert _properties(ok(sdk, "feature_default_fields", world))["id"] == world.feature_ids[0]


def test_sdk_tells_image_ids_from_feature_ids(sdk: dict[str, Any]) -> None:
    # valid_id() asks for all 27 image fields: 200 = image, so a feature id must fail (E8).
    for name in ("image_from_feature_id", "feature_from_image_id"):
        entry = raised(sdk, name)
        assert entry["error"] == "mapillary.models.exceptions.InvalidOptionError", entry


def test_get_detections_with_image_id(sdk: dict[str, Any], world: World) -> None:
    geojson = ok(sdk, "detections_of_image", world)
    [feature] = geojson["features"]
    # The SDK places each detection at its image's geometry (image.geometry.coordinates).
    lon, lat = feature["geometry"]["coordinates"]
    assert (lon, lat) == (pytest.approx(LON0 + STEP_DEG, abs=1e-6), pytest.approx(LAT0, abs=1e-6))
    props = feature["properties"]
    assert props["id"] == world.detection_ids[0]
    assert props["value"] == FEATURE_VALUE
    created = datetime.fromtimestamp(DETECTION_CREATED_MS / 1000, UTC)
    assert props["created_at"] == created.strftime("%Y-%m-%dT%H:%M:%S+0000")
    assert isinstance(props["pixel_geometry"], str) and props["pixel_geometry"]  # base64 MVT
    [feature] = ok(sdk, "detections_of_image_fields", world)["features"]
    assert feature["properties"]["value"] == FEATURE_VALUE


def test_get_detections_with_map_feature_id(sdk: dict[str, Any], world: World) -> None:
    geojson = ok(sdk, "detections_of_feature", world)
    ids = sorted(f["properties"]["id"] for f in geojson["features"])
    assert ids == sorted(world.detection_ids[:2])


# -- plain HTTP against the real socket (spec §10.5) ----------------------------------------


@pytest.fixture
def http(world: World) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=world.base, trust_env=False, timeout=10) as client:
        yield client


def _assert_e1(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/json; charset=UTF-8"
    assert response.headers["www-authenticate"] == 'OAuth error="invalid_token"'
    assert response.headers["access-control-allow-origin"] == "*"
    body = response.json()
    assert list(body) == ["error"]
    error = body["error"]
    assert set(error) == {"message", "type", "code", "fbtrace_id"}, error
    assert {k: error[k] for k in ("message", "type", "code")} == E1
    trace = error["fbtrace_id"]
    assert len(trace) == 23 and trace.replace("-", "").replace("_", "").isalnum(), trace
    assert response.headers["x-fb-trace-id"] == trace


@pytest.mark.parametrize("how", ["none", "query", "header", "bearer"])
def test_bad_token_gets_exactly_the_e1_e2_envelope(http: httpx.Client, world: World,
                                                   how: str) -> None:
    bad = "MLY|1|not-a-token"
    headers = {"header": {"Authorization": f"OAuth {bad}"},
               "bearer": {"Authorization": f"Bearer {bad}"}}.get(how, {})
    params = {"fields": "id"} | ({"access_token": bad} if how == "query" else {})
    _assert_e1(http.get(f"/{world.image_ids[0]}", params=params, headers=headers))
    # Authentication comes before the id lookup (spec §1.9): an unknown id answers the same.
    _assert_e1(http.get("/1933525276802129", params=params, headers=headers))


def test_raw_and_encoded_pipe_tokens_both_work(world: World) -> None:
    assert "|" in world.client_token
    image_id = world.image_ids[0]
    for token in (world.client_token, world.client_token.replace("|", "%7C")):
        status, headers, body = raw_get(world.base,
                                        f"/{image_id}?access_token={token}&fields=id,make")
        assert status == 200, (token, body)
        assert json.loads(body) == {"id": image_id, "make": MAKE}
    status, _, body = raw_get(world.base, f"/{image_id}?access_token=MLY|1|nope&fields=id")
    assert status == 401, body


def test_header_token_wins_over_query_token(http: httpx.Client, world: World) -> None:
    # The SDK's mutable default argument leaks ?access_token= into later header-auth calls.
    image_id = world.image_ids[0]
    response = http.get(f"/{image_id}", params={"fields": "id", "access_token": "MLY|1|stale"},
                        headers={"Authorization": f"OAuth {world.client_token}"})
    assert response.status_code == 200, response.text
    assert response.json() == {"id": image_id}
    response = http.get(f"/{image_id}", params={"fields": "id", "access_token": world.user_token},
                        headers={"Authorization": "OAuth MLY|1|stale"})
    _assert_e1(response)


def test_raw_braces_in_fields_work(world: World) -> None:
    image_id = world.image_ids[0]
    auth = {"Authorization": f"OAuth {world.client_token}"}
    for selector in ("creator{username}", "creator%7Busername%7D"):
        status, headers, body = raw_get(world.base, f"/{image_id}?fields={selector}",
                                        headers=auth)
        assert status == 200, (selector, body)
        assert json.loads(body) == {"creator": {"username": "alice", "id": world.user_id},
                                    "id": image_id}
    # Depth 2 (spec §3.1), raw braces: detections{value,image{id}} of an image with one.
    image_id = world.image_ids[1]
    status, _, body = raw_get(world.base, f"/{image_id}?fields=detections{{value,image{{id}}}}",
                              headers=auth)
    assert status == 200, body
    assert json.loads(body) == {"detections": {"data": [
        {"value": FEATURE_VALUE, "image": {"id": image_id}, "id": world.detection_ids[0]}
    ]}, "id": image_id}


def test_double_slash_detections_route(world: World) -> None:
    image_id = world.image_ids[1]
    # iD: apiUrl ends in "/", so it asks for //{id}/detections, token raw in the query.
    status, headers, body = raw_get(
        world.base,
        f"//{image_id}/detections?access_token={world.client_token}&fields=id,image,geometry,value")
    assert status == 200, body
    assert headers["access-control-allow-origin"] == "*"
    [row] = json.loads(body)["data"]
    assert row["id"] == world.detection_ids[0] and row["value"] == FEATURE_VALUE
    assert row["image"]["id"] == image_id
    feature_id = world.feature_ids[0]
    status, _, body = raw_get(
        world.base, f"//{feature_id}/detections?access_token={world.client_token}&fields=id,value,image")
    assert status == 200, body
    rows = json.loads(body)["data"]
    assert [r["id"] for r in rows] == [world.detection_ids[1], world.detection_ids[0]]  # newest first
    # The SDK's trailing-slash forms (spec §1.6), never a redirect.
    for target in (f"/{image_id}/?fields=id", f"/{image_id}/detections/?fields=value"):
        status, _, body = raw_get(world.base, target,
                                  headers={"Authorization": f"OAuth {world.client_token}"})
        assert status == 200, (target, body)


@pytest.mark.parametrize("path", ["/{image}?fields=id", "//{image}/detections", "/images",
                                  "/me", "/media/images/{image}/thumb_1024.jpg",
                                  "/maps/vtp/mly1_public/2/14/8796/5130"])
def test_options_preflight(http: httpx.Client, world: World, path: str) -> None:
    response = http.request(
        "OPTIONS", path.format(image=world.image_ids[0]),
        headers={"Origin": "https://viewer.example", "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "authorization,content-type,accept"})
    assert response.status_code == 204, response.text
    assert response.content == b""
    h = response.headers
    assert h["access-control-allow-origin"] == "*"
    assert {m.strip() for m in h["access-control-allow-methods"].split(",")} >= {"GET", "POST",
                                                                                 "OPTIONS"}
    assert "authorization" in h["access-control-allow-headers"].lower()
    assert h["access-control-max-age"] == "86400"


def test_me_with_a_user_token(http: httpx.Client, world: World) -> None:
    response = http.get("/me", params={"fields": "id,username"},
                        headers={"Authorization": f"OAuth {world.user_token}"})
    assert response.status_code == 200, response.text
    assert response.json() == {"id": world.user_id, "username": "alice"}
    response = http.get("/me", params={"fields": "id,username"},
                        headers={"Authorization": f"OAuth {world.client_token}"})
    assert response.status_code == 401, response.text
    assert response.json()["error"]["message"] == (
        "Error validating access token: A user access token is required for this request.")


def test_all_27_fields_body_is_python_literal_safe(http: httpx.Client, world: World) -> None:
    response = http.get(f"/{world.image_ids[0]}", params={"fields": ",".join(SDK_IMAGE_FIELDS)},
                        headers={"Authorization": f"OAuth {world.client_token}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json; charset=UTF-8"
    body = response.text
    assert "\\/" not in body
    assert ast.literal_eval(body) == json.loads(body)
