"""Acceptance: JOSM's Mapillary plugin, replayed request for request against a live wayview.

JOSM is a Debian package but its Mapillary plugin cannot be installed here, so this test sends
exactly the requests the plugin sends — same methods, paths, query strings (Java's
`URLEncoder`), bodies and headers — read from its public source, JOSM/Mapillary at commit
abad73d0bdc3426197b4fce91726daa5cd1dffc1 (files under
`src/main/java/org/openstreetmap/josm/plugins/mapillary/`), and checks that every answer has
what the plugin parses:

- `spi/preferences/IMapillaryUrls.java`: every URL (`connect`, `getTokenUrl`,
  `getUserInformation`, `getImages`, `getTrafficSigns`, `getObjectDetections`,
  `getImageInformation`, `getImagesBySequences`, `getDetectionInformation`,
  `getMapFeatureInformation`, `getOrganizationInformation`, `getUserInformation(id)`);
  `MapillaryUrls.java`: the hosts (`www.`, `graph.`, `tiles.mapillary.com`), rewritten here to
  the server's base URL — the only change (a transport rewrite, as for the SDK, spec §10.1);
- `oauth/OAuthPortListener.java`: the callback's `code=` regex and the token exchange (form body
  `grant_type`, `client_id`, `code` — no `redirect_uri` — and `Authorization: OAuth <client
  secret>`); `oauth/OAuthUtils.java`: `updateAuthorization` (`access_token`, `token_type` must
  be `bearer`, `expires_in` an int), the refresh (form body without a Content-Type of its own),
  `getWithHeader` (`Authorization: OAuth <user token>`, `x-app-usage` JSON, the 401 text that
  logs the user out); `oauth/MapillaryUser.java`: `/me` read as a map of strings;
- `utils/api/Json*Decoder.java`, `utils/MapillaryImageUtils.java`,
  `utils/MapillaryMapFeatureUtils.java`, `data/mapillary/MapillaryDownloader.java`: which keys
  and types each answer must have; `utils/MapillaryKeys.java`: tiles at z12–14 (images) and
  z14 (map features).

JOSM's own HTTP client (`org.openstreetmap.josm.tools.Http1Client`) adds `User-Agent: JOSM/…`;
Java's `HttpURLConnection` adds its default `Accept` and, for a POST body without one,
`Content-Type: application/x-www-form-urlencoded`. The plugin's client id, secret and client
token are JOSM preferences (`mapillary.api.MAPILLARY_CLIENT_ID`, `…_SECRET`, `…_TOKEN`,
`spi/preferences/ApiKeyReader.java`): a wayview user registers an app with the callback
`http://localhost:8763/` and enters its credentials there.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import mapbox_vector_tile
import pytest
from tests.acceptance.live import LiveServer, live_server, wayview, wayview_json
from tests.api.webforms import csrf_of, hidden_fields

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("josm")]

JOSM_COMMIT = "abad73d0bdc3426197b4fce91726daa5cd1dffc1"
#: `OAuthPortListener.PORT`; the plugin passes `"http://localhost:" + PORT + '/'` to `connect`.
CALLBACK = "http://localhost:8763/"
#: `Http1Client.setupConnection` (`Version.getFullAgentString()`) and HttpURLConnection's default.
JOSM_HEADERS = {"User-Agent": "JOSM/1.5 (19253 en) Linux Debian GNU/Linux 12 (bookworm) "
                              "Java/17.0.13",
                "Accept": "text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2"}
FORM = "application/x-www-form-urlencoded"
#: `OAuthPortListener.run`: how the plugin finds the code in the browser's request line.
CODE_RE = re.compile(r"^.*[&?]code=([^& ]+).*$")
#: `IMapillaryUrls.getDefaultImageInformation()`: these `ImageProperties`, distinct and sorted
#: by declaration order (enum natural order), each `toString()` = lower-case name;
#: BEST_IMAGE = THUMB_ORIGINAL_URL and WORST_IMAGE = THUMB_256_URL collapse into those.
IMAGE_FIELDS = ("id", "altitude", "atomic_scale", "camera_type", "captured_at", "compass_angle",
                "computed_altitude", "computed_compass_angle", "computed_geometry",
                "computed_rotation", "creator", "exif_orientation", "geometry", "height",
                "make", "model", "organization", "thumb_256_url", "thumb_1024_url",
                "thumb_2048_url", "thumb_original_url", "quality_score", "sequence", "width")
PASSWORD = "josm mapper passphrase 7"

T0 = datetime(2021, 5, 1, 10, 0, 0, 500_000, tzinfo=UTC)
LON0, LAT0 = 13.19100, 55.70470
COUNT = 5


def java_urlencode(text: str) -> str:
    """`java.net.URLEncoder.encode(text, UTF-8)`: letters, digits and `.-*_` stay, a space
    becomes `+`, everything else `%XX` (upper case)."""
    out = []
    for char in text:
        if char.isascii() and (char.isalnum() or char in ".-*_"):
            out.append(char)
        elif char == " ":
            out.append("+")
        else:
            out.extend(f"%{b:02X}" for b in char.encode("utf-8"))
    return "".join(out)


def query_string(parts: list[tuple[str, str]]) -> str:
    """`IMapillaryUrls.queryString`: `?k=v&…`, both URL-encoded, in map order."""
    return "?" + "&".join(f"{java_urlencode(k)}={java_urlencode(v)}" for k, v in parts)


def java_hashmap_order(keys: list[str]) -> list[str]:
    """Iteration order of a `new HashMap<>(2)` after putting `keys` (two here): bucket order
    of a table grown to 4 (String.hashCode, spread by `h ^ h >>> 16`)."""
    def bucket(key: str) -> int:
        h = 0
        for char in key:
            h = (31 * h + ord(char)) & 0xFFFFFFFF
        return (h ^ (h >> 16)) & 3

    return sorted(keys, key=lambda k: (bucket(k), keys.index(k)))


@dataclass
class World:
    """The live server, the plugin's app credentials and what was seeded."""

    server: LiveServer
    app_id: str
    client_token: str
    client_secret: str
    org_id: str
    uploader_id: str
    sequence_id: str
    image_ids: list[int]
    sign_id: int
    point_id: int
    detection_image: int

    def rewrite(self, url: str) -> str:
        """The transport rewrite: Mapillary's three hosts → the live server (URLs the server
        itself hands out, like thumbnails, are fetched as they are)."""
        if url.startswith(self.server.base_url + "/"):
            return url
        for host in ("https://www.mapillary.com/", "https://graph.mapillary.com/",
                     "https://tiles.mapillary.com/"):
            if url.startswith(host):
                return self.server.base_url + "/" + url[len(host):]
        raise AssertionError(f"not a Mapillary URL: {url}")


def _write_photos(folder: Path) -> None:
    from wayview.fixtures import write_jpeg

    for k in range(COUNT):
        write_jpeg(folder / f"IMG_{k:04d}.jpg", width=640, height=480, lat=LAT0,
                   lon=LON0 + k * 0.0001, captured_at=T0 + timedelta(seconds=k),
                   compass_deg=90.0 + k, altitude_m=20.0, make="AcmeCam", model="X-100",
                   seed=k, label=f"josm {k}")


async def _seed_features(data_dir: Path, sequence_id: str) -> tuple[list[int], int, int]:
    """A stop sign and a street light seen from the imported images, with detections."""
    from wayview.model.entities import Detection, ImageSearch, MapFeature
    from wayview.settings import Settings
    from wayview.testing import open_test_store

    settings = Settings(_env_file=None, data_dir=data_dir)  # type: ignore[call-arg]
    async with open_test_store(settings) as store:
        page = await store.search_images(ImageSearch(sequence_ids=(sequence_id,)))
        images = sorted(page.items, key=lambda im: im.captured_at_ms)
        assert len(images) == COUNT
        sign_id, point_id = await store.reserve_ids("map_feature", 2)
        await store.insert_map_features([
            MapFeature(id=sign_id, object_value="regulatory--stop--g1",
                       object_type="trafficsign", lon=LON0 + 0.00025, lat=LAT0 + 0.0001,
                       first_seen_at_ms=images[1].captured_at_ms,
                       last_seen_at_ms=images[3].captured_at_ms, aligned_direction_deg=270.0),
            MapFeature(id=point_id, object_value="object--street-light", object_type="point",
                       lon=LON0 + 0.00035, lat=LAT0 - 0.0001,
                       first_seen_at_ms=images[3].captured_at_ms,
                       last_seen_at_ms=images[3].captured_at_ms),
        ])
        box = ((0.40, 0.40), (0.55, 0.40), (0.55, 0.60), (0.40, 0.60))
        detection_ids = await store.reserve_ids("detection", 3)
        await store.insert_detections([
            Detection(id=detection_ids[0], image_id=images[1].id, value="regulatory--stop--g1",
                      geometry=(box,), created_at_ms=1_621_531_741_000, map_feature_id=sign_id),
            Detection(id=detection_ids[1], image_id=images[3].id, value="regulatory--stop--g1",
                      geometry=(box,), created_at_ms=1_621_531_742_000, map_feature_id=sign_id),
            Detection(id=detection_ids[2], image_id=images[3].id, value="object--street-light",
                      geometry=(box,), created_at_ms=1_621_531_743_000,
                      map_feature_id=point_id),
        ])
    return [im.id for im in images], sign_id, point_id


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("josm")
    data = root / "data"
    uploader = wayview_json("users", "create", "tilda", data_dir=data, cwd=root)
    org = wayview_json("orgs", "create", "acme", "--name", "Acme Mapping", "--member", "tilda",
                       data_dir=data, cwd=root)
    app = wayview_json("apps", "create", "JOSM Mapillary plugin", "--owner", "tilda",
                       "--redirect-uri", CALLBACK, "--scope", "read", data_dir=data, cwd=root)
    _write_photos(root / "photos")
    report = json.loads(wayview("import", str(root / "photos"), "--user", "tilda",
                                "--organization", str(org["id"]), "--json", data_dir=data,
                                cwd=root).strip().splitlines()[-1])
    [sequence] = report["sequences"]
    image_ids, sign_id, point_id = asyncio.run(_seed_features(data, sequence["id"]))
    with live_server(data, root / "server.log", cwd=root) as server:
        yield World(server=server, app_id=str(app["app_id"]), client_token=app["client_token"],
                    client_secret=app["client_secret"], org_id=str(org["id"]),
                    uploader_id=str(uploader["id"]), sequence_id=sequence["id"],
                    image_ids=image_ids, sign_id=sign_id, point_id=point_id,
                    detection_image=image_ids[3])


class Plugin:
    """The plugin's HTTP side: `HttpClient` requests with its headers, through the rewrite."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.http = httpx.Client(timeout=30, trust_env=False, follow_redirects=False)
        self.access_token: str | None = None
        self.sent: list[tuple[str, str]] = []

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                body: bytes | None = None) -> httpx.Response:
        target = self.world.rewrite(url)
        self.sent.append((method, urlsplit(target).path))
        all_headers = {**JOSM_HEADERS, **(headers or {})}
        if body is not None and not any(k.lower() == "content-type" for k in all_headers):
            all_headers["Content-Type"] = FORM  # HttpURLConnection's default for a body
        return self.http.request(method, target, headers=all_headers, content=body)

    def authorization(self) -> str:
        """`OAuthUtils.getAuthorizationToken`: the user token once logged in, else the client
        token."""
        return "OAuth " + (self.access_token or self.world.client_token)

    def get_with_header(self, url: str) -> Any:
        """`OAuthUtils.getWithHeader`: GET with the Authorization header, `x-app-usage` checked
        (over 95 % used is an error), the body read as JSON."""
        r = self.request("GET", url, headers={"Authorization": self.authorization()})
        assert r.status_code == 200, (url, r.status_code, r.text)
        usage = json.loads(r.headers["x-app-usage"])
        used = usage.get("call_volume", usage.get("call_count", 0))
        assert isinstance(used, int) and used <= 95, usage
        return r.json()


def sign_in_browser(world: World) -> httpx.Client:
    """The system browser JOSM opens: the mapper signs up on the server's own pages."""
    browser = httpx.Client(base_url=world.server.base_url, timeout=30, trust_env=False,
                           follow_redirects=False)
    token = csrf_of(browser.get("/signup").text)
    r = browser.post("/signup", data={"csrf_token": token, "username": "mapper",
                                      "email": "mapper@example.org", "password": PASSWORD})
    assert r.status_code == 303, r.text
    return browser


def assert_token_answer(body: Any) -> str:
    """`OAuthUtils.updateAuthorization`: all three keys, `bearer`, `expires_in` a Java int."""
    assert isinstance(body["access_token"], str) and body["access_token"]
    assert body["token_type"] == "bearer"
    assert isinstance(body["expires_in"], int) and 0 < body["expires_in"] < 2**31
    # more than 30 days: the plugin refreshes 7 days before the end (`ACCESS_TOKEN_REFRESH_IN`)
    assert body["expires_in"] > 30 * 86_400
    return str(body["access_token"])


def decode_tile(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    if not response.content:
        return {}
    return dict(mapbox_vector_tile.decode(response.content,
                                          default_options={"y_coord_down": True}))


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int, int]:
    from wayview.tiles.tilemath import lnglat_to_tile

    x, y = lnglat_to_tile(lon, lat, z)
    return z, x, y


def test_josm_plugin_session(world: World) -> None:
    """Log in through `/connect`, exchange the code without `redirect_uri`, then everything the
    plugin reads: `/me`, image, traffic-sign and point tiles, image details (one and many),
    the sequence's images, detections, a map feature, the organization and the creator, a
    refresh, and the 401 text that logs the user out when the app is revoked."""
    plugin = Plugin(world)
    browser = sign_in_browser(world)
    try:
        _login(world, plugin, browser)
        _me(plugin)
        _tiles(world, plugin)
        _images_and_sequence(world, plugin)
        _detections(world, plugin)
        _map_feature(world, plugin)
        _organization_and_creator(world, plugin)
        _refresh(world, plugin)
        _revoked(world, plugin, browser)
    finally:
        plugin.close()
        browser.close()
    assert ("POST", "/token") in plugin.sent


def _login(world: World, plugin: Plugin, browser: httpx.Client) -> None:
    # `MapillaryPreferenceSetting`: OpenBrowser on connect("http://localhost:8763/").
    # LinkedHashMap order: client_id, response_type, scope, redirect_uri (last).
    connect = "https://www.mapillary.com/connect" + query_string([
        ("client_id", world.app_id), ("response_type", "code"), ("scope", "read"),
        ("redirect_uri", CALLBACK)])
    assert connect.endswith("&redirect_uri=http%3A%2F%2Flocalhost%3A8763%2F")
    page = browser.get(world.rewrite(connect))
    assert page.status_code == 200 and "JOSM Mapillary plugin" in page.text, page.text
    r = browser.post("/connect", data={**hidden_fields(page.text), "decision": "approve"})
    assert r.status_code == 303, r.text
    location = r.headers["location"]
    assert location.startswith(CALLBACK)
    # The browser's request line as the plugin's port listener reads it.
    split = urlsplit(location)
    request_line = f"GET {split.path}?{split.query} HTTP/1.1"
    match = CODE_RE.match(request_line)
    assert match, request_line
    code = match.group(1)
    # `OAuthPortListener.run`: the token exchange, exactly.
    r = plugin.request("POST", "https://graph.mapillary.com/token", headers={
        "Authorization": "OAuth " + world.client_secret, "Content-Type": FORM},
        body=(f"grant_type=authorization_code&client_id={world.app_id}&code={code}"
              ).encode())
    assert r.status_code == 200, r.text
    plugin.access_token = assert_token_answer(r.json())


def _me(plugin: Plugin) -> None:
    """`MapillaryUser.getUserInformation`: GET /me without a query, the string entries kept.
    Spec §1.4: without `fields` a node answers only its `id`, so the plugin learns the id
    (the token works) but finds no `username` to show."""
    me = plugin.get_with_header("https://graph.mapillary.com/me")
    strings = {k: v for k, v in me.items() if isinstance(v, str)}
    assert strings.get("id", "").isdigit(), me


def _tiles(world: World, plugin: Plugin) -> None:
    """`MapillaryKeys`: images at z12–14 (`mly1_public`; `mly1_computed_public` with the
    computed-locations preference), signs and points at z14; the client token in the query,
    URL-encoded by `getUrlEncodedAccessId` (`MLY%7C…`); no Authorization header."""
    token = java_urlencode(world.client_token)
    assert token.startswith("MLY%7C")
    base = "https://tiles.mapillary.com/maps/vtp/"
    for tileset in ("mly1_public", "mly1_computed_public"):
        z, x, y = tile_of(LON0, LAT0, 14)
        layers = decode_tile(plugin.request(
            "GET", f"{base}{tileset}/2/{z}/{x}/{y}?access_token={token}"))
        images = {f["id"]: f for f in layers["image"]["features"]}
        assert sorted(images) == sorted(world.image_ids), images.keys()
        for feature_id, feature in images.items():
            props = feature["properties"]
            # `MapillaryImageUtils.getKey` (feature id, else `id`), `getSequenceKey`
            # (`sequence_id`), `getDate` (`captured_at`), `getAngle` (`compass_angle`),
            # `IS_PANORAMIC` (`is_pano`), `getUser` (`creator_id`), `getOrganization`.
            assert props["id"] == feature_id
            assert props["sequence_id"] == world.sequence_id
            assert isinstance(props["captured_at"], int)
            assert isinstance(props["compass_angle"], int | float)
            assert props["is_pano"] is False
            assert str(props["creator_id"]) == world.uploader_id
            assert str(props["organization_id"]) == world.org_id
        [line] = layers["sequence"]["features"]
        assert line["properties"]["id"] == world.sequence_id
        assert line["geometry"]["type"] in ("LineString", "MultiLineString")
        z, x, y = tile_of(LON0, LAT0, 12)  # the layer's minimum zoom: sequences only
        layers = decode_tile(plugin.request(
            "GET", f"{base}{tileset}/2/{z}/{x}/{y}?access_token={token}"))
        assert [f["properties"]["id"] for f in layers["sequence"]["features"]] == [
            world.sequence_id]
    z, x, y = tile_of(LON0, LAT0, 14)
    for tileset, layer, feature_id, value in (
            ("mly_map_feature_traffic_sign", "traffic_sign", world.sign_id,
             "regulatory--stop--g1"),
            ("mly_map_feature_point", "point", world.point_id, "object--street-light")):
        layers = decode_tile(plugin.request(
            "GET", f"{base}{tileset}/2/{z}/{x}/{y}?access_token={token}"))
        [feature] = layers[layer]["features"]
        # `MapFeatureProperties`: ID, VALUE, FIRST_SEEN_AT, LAST_SEEN_AT "in vector layer"
        assert feature["id"] == feature_id and feature["properties"]["id"] == feature_id
        assert feature["properties"]["value"] == value
        assert isinstance(feature["properties"]["first_seen_at"], int)
        assert isinstance(feature["properties"]["last_seen_at"], int)


def _assert_image_info(world: World, info: dict[str, Any]) -> None:
    """`JsonImageDetailsDecoder.decodeImageInfo`: `id` a string of digits (parsed as a long),
    `geometry.coordinates` two numbers, `computed_geometry` likewise when present; every other
    property kept as a string or the JSON text; `sequence` a string."""
    assert isinstance(info["id"], str) and int(info["id"]) in world.image_ids
    lon, lat = info["geometry"]["coordinates"]
    assert isinstance(lon, float) and isinstance(lat, float)
    if "computed_geometry" in info:
        assert len(info["computed_geometry"]["coordinates"]) == 2
    assert info["sequence"] == world.sequence_id
    assert isinstance(info["captured_at"], int)
    assert info["creator"] == {"id": world.uploader_id, "username": "tilda"}
    assert info["organization"] == {"id": world.org_id}
    assert (info["make"], info["model"]) == ("AcmeCam", "X-100")
    assert (info["width"], info["height"]) == (640, 480)
    for key in ("thumb_256_url", "thumb_1024_url", "thumb_2048_url", "thumb_original_url"):
        assert info[key].startswith("http"), (key, info)
    assert set(info) <= set(IMAGE_FIELDS)


def _images_and_sequence(world: World, plugin: Plugin) -> None:
    graph = "https://graph.mapillary.com/"
    # one image: `getImageInformation(long)` → /{id}?fields=…
    first = world.image_ids[0]
    info = plugin.get_with_header(
        f"{graph}{first}" + query_string([("fields", ",".join(IMAGE_FIELDS))]))
    _assert_image_info(world, info)
    # `MapillaryImageUtils.getImage`: the best image, fetched without a token header
    r = plugin.request("GET", info["thumb_original_url"])
    assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"
    # the sequence: `getImagesBySequences` → /image_ids?sequence_id=…
    body = plugin.get_with_header(
        f"{graph}image_ids" + query_string([("sequence_id", world.sequence_id)]))
    ids = [int(row["id"]) for row in body["data"]]  # `JsonSequencesDecoder`: string ids
    assert all(isinstance(row["id"], str) for row in body["data"])
    assert ids == world.image_ids  # capture order
    # many images: `getImageInformation(long[])` → /images?fields=…&image_ids=… (HashMap)
    params = {"fields": ",".join(IMAGE_FIELDS), "image_ids": ",".join(map(str, ids))}
    order = java_hashmap_order(["fields", "image_ids"])
    body = plugin.get_with_header(f"{graph}images"
                                  + query_string([(k, params[k]) for k in order]))
    assert sorted(int(i["id"]) for i in body["data"]) == sorted(ids)
    for row in body["data"]:
        _assert_image_info(world, row)


def _detections(world: World, plugin: Plugin) -> None:
    """`getDetectionInformation` → /{image}/detections?fields=value,created_at,image,geometry;
    `JsonImageDetectionDecoder`: `id` (not asked for, parsed with getString → must be there),
    `value`, `image.id` a string, `geometry` base64 of an MVT with exactly one layer."""
    url = (f"https://graph.mapillary.com/{world.detection_image}/detections"
           + query_string([("fields", "value,created_at,image,geometry")]))
    body = plugin.get_with_header(url)
    rows = body["data"]
    assert sorted(r["value"] for r in rows) == ["object--street-light", "regulatory--stop--g1"]
    for row in rows:
        assert isinstance(row["id"], str) and int(row["id"]) > 0
        assert row["image"]["id"] == str(world.detection_image)
        tile = mapbox_vector_tile.decode(base64.b64decode(row["geometry"]))
        assert len(tile) == 1, tile.keys()
        [layer] = tile.values()
        assert len(layer["features"]) == 1
        assert layer["features"][0]["geometry"]["type"] in ("Polygon", "MultiPolygon")


def _map_feature(world: World, plugin: Plugin) -> None:
    """`MapillaryMapFeatureUtils.updateMapFeature` → /{id}?fields=geometry,images,
    aligned_direction; `JsonMapObjectDecoder`: a Point with two numbers, `images.data[].id`
    strings, `id` a string."""
    body = plugin.get_with_header(
        f"https://graph.mapillary.com/{world.sign_id}"
        + query_string([("fields", "geometry,images,aligned_direction")]))
    assert body["id"] == str(world.sign_id)
    assert body["geometry"]["type"] == "Point"
    coordinates = body["geometry"]["coordinates"]
    assert len(coordinates) == 2 and all(isinstance(c, float) for c in coordinates)
    image_ids = [row["id"] for row in body["images"]["data"]]
    assert all(isinstance(i, str) and i.isdigit() for i in image_ids)
    assert sorted(map(int, image_ids)) == sorted(world.image_ids[1:4:2])
    assert isinstance(body["aligned_direction"], int | float)


def _organization_and_creator(world: World, plugin: Plugin) -> None:
    """`OrganizationRecord.getOrganization` → /{org}?fields=slug,name,description;
    `UserProfile.getNewUser` → /{user}?fields=username,id (`JsonUserProfileDecoder`: both
    strings)."""
    org = plugin.get_with_header(f"https://graph.mapillary.com/{world.org_id}"
                                 + query_string([("fields", "slug,name,description")]))
    assert (org["id"], org["slug"], org["name"]) == (world.org_id, "acme", "Acme Mapping")
    assert set(org) <= {"id", "slug", "name", "description"}  # no description was given
    user = plugin.get_with_header(f"https://graph.mapillary.com/{world.uploader_id}"
                                  + query_string([("fields", "username,id")]))
    assert user == {"id": world.uploader_id, "username": "tilda"}


def _refresh(world: World, plugin: Plugin) -> None:
    """`OAuthUtils.refreshAuthorization`: POST getTokenUrl() with the secret, a form body of
    `grant_type=refresh_token`, `client_id` and `refresh_token` = the current access token,
    no Content-Type set by the plugin (HttpURLConnection adds the form type)."""
    old = plugin.access_token
    r = plugin.request("POST", "https://graph.mapillary.com/token", headers={
        "Authorization": "OAuth " + world.client_secret},
        body=(f"grant_type=refresh_token&client_id={world.app_id}&refresh_token={old}"
              ).encode())
    assert r.status_code == 200, r.text
    plugin.access_token = assert_token_answer(r.json())
    assert plugin.access_token != old
    plugin.get_with_header("https://graph.mapillary.com/me")


def _revoked(world: World, plugin: Plugin, browser: httpx.Client) -> None:
    """`OAuthUtils.validateJsonInformation`: a 401 whose body contains "The user has not
    authorized application" logs the plugin out."""
    page = browser.get("/account").text
    r = browser.post(f"/account/apps/{world.app_id}/revoke", data={"csrf_token": csrf_of(page)})
    assert r.status_code == 303, r.text
    r = plugin.request("GET", "https://graph.mapillary.com/me",
                       headers={"Authorization": plugin.authorization()})
    assert r.status_code == 401
    assert "The user has not authorized application" in r.text
