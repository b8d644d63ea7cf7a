"""Acceptance: vector tiles read by real clients from a live wayview (spec §4, §10.1, §10.4).

Two clients read the tiles of one seeded world served by a real `wayview serve` on loopback:

- the official Python SDK (PyPI `mapillary` 1.0.16, own virtualenv `.venv-sdk`, pointed at the
  server by the transport rewrite of spec §10.1): `get_image_close_to`, `images_in_bbox`,
  `sequences_in_bbox`, `get_image_looking_at`, `is_image_being_looked_at`,
  `map_feature_points_in_bbox`, `traffic_signs_in_bbox`;
- iD's decoder: `@mapbox/vector-tile` + `pbf` at the versions iD 2.42 resolves
  (`tests/acceptance/node/`, installed with `npm ci` from the committed lock file), decoding
  z14 tiles fetched exactly as iD asks for them (raw `|` token in the query, no trailing slash).

The world: three sequences of generated JPEGs brought in with `wayview import` (A: five flat
photos heading east; B: five flat photos running south across a z14 tile edge; C: two 2:1
panoramas), and four map features (two `trafficsign`, two `point`) written through the store
before the server starts. Everything but B's south end and one sign lies in one z14 tile.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.acceptance.live import (
    REPO,
    LiveServer,
    clean_env,
    client_venv,
    live_server,
    node_package,
    raw_get,
    wayview,
    wayview_json,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("tiles-clients")]

SDK_VERSION = "1.0.16"
SDK_TIMEOUT_S = 300
MVT = "application/vnd.mapbox-vector-tile"
MAX_SAFE_INTEGER = 2**53 - 1
#: A z14 tile spans 0.022° of longitude: 4096 units are about 5.4e-6°, so positions decoded
#: from a tile match the graph's to about that.
TILE_TOLERANCE_DEG = 1e-5

T0 = datetime(2021, 5, 1, 10, 0, 0, 500_000, tzinfo=UTC)
LON0, LAT0 = 13.19100, 55.70470
#: Around every seeded thing, four z14 tiles: x 8791..8792, y 5125..5126 (two of them empty).
BBOX = {"west": 13.180, "south": 55.700, "east": 13.202, "north": 55.710}
#: Only sequence A (and no map feature) lies inside.
BBOX_A = {"west": 13.1905, "south": 55.70465, "east": 13.1918, "north": 55.70475}
LOOK_EAST = (13.19200, LAT0)  # in front of A's cameras (they head 90°..94°)
LOOK_WEST = (13.19000, LAT0)  # behind them
LOOK_RADIUS_M = 80


@dataclass(frozen=True)
class Photo:
    """One generated JPEG of the world."""

    sequence: str  # "A", "B" or "C"
    lon: float
    lat: float
    captured_at: datetime
    compass_deg: float
    pano: bool = False
    make: str = "AcmeCam"
    model: str = "X-100"

    @property
    def captured_at_ms(self) -> int:
        return int(self.captured_at.timestamp() * 1000)


PHOTOS: list[Photo] = (
    [Photo("A", LON0 + k * 0.0001, LAT0, T0 + timedelta(seconds=k), 90.0 + k)
     for k in range(5)]
    + [Photo("B", 13.19500, 55.70310 - k * 0.0003, T0 + timedelta(hours=1, seconds=2 * k), 180.0,
             make="OtherCam", model="Z-2") for k in range(5)]
    + [Photo("C", 13.19900 + k * 0.0001, 55.70600, T0 + timedelta(hours=2, seconds=k), 270.0,
             pano=True, make="PanoCam", model="360") for k in range(2)]
)


@dataclass(frozen=True)
class Feature:
    """One seeded map feature."""

    name: str
    object_type: str  # "trafficsign" or "point"
    value: str
    lon: float
    lat: float
    first_seen_at_ms: int
    last_seen_at_ms: int


def _ms(sequence: str, k: int) -> int:
    return [p for p in PHOTOS if p.sequence == sequence][k].captured_at_ms


FEATURES: list[Feature] = [
    Feature("sign_a", "trafficsign", "regulatory--stop--g1", 13.19125, 55.70480,
            _ms("A", 1), _ms("A", 3)),
    Feature("sign_b", "trafficsign", "warning--pedestrians-crossing--g4", 13.19510, 55.70205,
            _ms("B", 3), _ms("B", 4)),
    Feature("light_a", "point", "object--street-light", 13.19145, 55.70462,
            _ms("A", 4), _ms("A", 4)),
    Feature("bench_c", "point", "object--bench", 13.19905, 55.70595, _ms("C", 0), _ms("C", 1)),
]


@dataclass(frozen=True)
class GraphImage:
    """An image as the graph API returns it (the truth the tiles are checked against)."""

    id: int
    sequence: str
    captured_at: int
    compass_angle: float
    is_pano: bool
    lon: float
    lat: float
    photo: Photo


@dataclass
class World:
    """What was seeded, as the graph API reports it, and the live server serving it."""

    server: LiveServer
    client_token: str
    sequences: dict[str, str]  # "A" -> sequence id
    images: dict[int, GraphImage]
    features: dict[str, int]  # Feature.name -> map feature id

    @property
    def base(self) -> str:
        return self.server.base_url

    def image_ids(self, *sequences: str) -> list[int]:
        return sorted(i.id for i in self.images.values() if i.photo.sequence in sequences)

    def first_image(self, sequence: str) -> GraphImage:
        return min((i for i in self.images.values() if i.photo.sequence == sequence),
                   key=lambda i: (i.captured_at, i.id))


def tile_of(lon: float, lat: float) -> tuple[int, int, int]:
    from wayview.tiles.tilemath import lnglat_to_tile

    x, y = lnglat_to_tile(lon, lat, 14)
    return 14, x, y


MAIN_TILE = tile_of(LON0, LAT0)
SOUTH_TILE = (14, MAIN_TILE[1], MAIN_TILE[2] + 1)
EMPTY_TILE = (14, MAIN_TILE[1] - 1, MAIN_TILE[2])


# -- the world ------------------------------------------------------------------------------


def _write_photos(folder: Path) -> None:
    from wayview.fixtures import write_jpeg

    for k, p in enumerate(PHOTOS):
        width, height = (1024, 512) if p.pano else (640, 480)
        write_jpeg(folder / f"IMG_{k:04d}.jpg", width=width, height=height, lat=p.lat, lon=p.lon,
                   captured_at=p.captured_at, compass_deg=p.compass_deg, altitude_m=20.0,
                   make=p.make, model=p.model, pano=p.pano, seed=k, label=f"{p.sequence}{k}")


async def _add_features(data_dir: Path) -> dict[str, int]:
    """The map features, through the store (no client creates them)."""
    from wayview.model.entities import MapFeature
    from wayview.settings import Settings
    from wayview.testing import open_test_store

    settings = Settings(_env_file=None, data_dir=data_dir)
    async with open_test_store(settings) as store:
        ids = await store.reserve_ids("map_feature", len(FEATURES))
        await store.insert_map_features([
            MapFeature(id=fid, object_value=f.value, object_type=f.object_type, lon=f.lon,
                       lat=f.lat, first_seen_at_ms=f.first_seen_at_ms,
                       last_seen_at_ms=f.last_seen_at_ms)
            for fid, f in zip(ids, FEATURES, strict=True)
        ])
    return {f.name: int(fid) for fid, f in zip(ids, FEATURES, strict=True)}


def _graph_images(http: httpx.Client, sequence_ids: list[str]) -> dict[int, GraphImage]:
    by_ms = {p.captured_at_ms: p for p in PHOTOS}
    images: dict[int, GraphImage] = {}
    for sequence_id in sequence_ids:
        response = http.get("/image_ids", params={"sequence_id": sequence_id})
        assert response.status_code == 200, response.text
        for row in response.json()["data"]:
            r = http.get(f"/{row['id']}",
                         params={"fields": "id,sequence,captured_at,compass_angle,geometry,"
                                           "camera_type"})
            assert r.status_code == 200, r.text
            body = r.json()
            lon, lat = body["geometry"]["coordinates"]
            images[int(body["id"])] = GraphImage(
                id=int(body["id"]), sequence=body["sequence"], captured_at=body["captured_at"],
                compass_angle=body["compass_angle"],
                is_pano=body["camera_type"] in ("spherical", "equirectangular"),
                lon=lon, lat=lat, photo=by_ms[body["captured_at"]])
    return images


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Seed through the CLI, the importer and the store, then serve it live."""
    root = tmp_path_factory.mktemp("tiles-live")
    data = root / "data"
    wayview_json("users", "create", "tilda", "--email", "tilda@example.org", data_dir=data,
                 cwd=root)
    app = wayview_json("apps", "create", "tile clients", "--owner", "tilda", data_dir=data,
                       cwd=root)
    _write_photos(root / "photos")
    report = json.loads(wayview("import", str(root / "photos"), "--user", "tilda", "--json",
                                data_dir=data, cwd=root).strip().splitlines()[-1])
    assert report["imported"] == len(PHOTOS) and report["skipped"] == [], report
    assert sorted(s["image_count"] for s in report["sequences"]) == [2, 5, 5], report
    features = asyncio.run(_add_features(data))
    with live_server(data, root / "server.log", cwd=root) as server:
        with httpx.Client(base_url=server.base_url, trust_env=False, timeout=10,
                          headers={"Authorization": f"OAuth {app['client_token']}"}) as http:
            images = _graph_images(http, [s["id"] for s in report["sequences"]])
        assert len(images) == len(PHOTOS)
        sequences = {i.photo.sequence: i.sequence for i in images.values()}
        assert sorted(sequences) == ["A", "B", "C"], sequences
        assert len(set(sequences.values())) == 3, sequences
        yield World(server=server, client_token=app["client_token"], sequences=sequences,
                    images=images, features=features)


def test_world_layout() -> None:
    """The seeded layout this module relies on (tile membership of everything)."""
    assert {tile_of(p.lon, p.lat) for p in PHOTOS if p.sequence in "AC"} == {MAIN_TILE}
    assert [tile_of(p.lon, p.lat) for p in PHOTOS if p.sequence == "B"] == (
        [MAIN_TILE] * 3 + [SOUTH_TILE] * 2)
    assert [tile_of(f.lon, f.lat) for f in FEATURES] == [MAIN_TILE, SOUTH_TILE, MAIN_TILE,
                                                         MAIN_TILE]
    things: list[Photo | Feature] = [*PHOTOS, *FEATURES]
    for thing in things:
        assert BBOX["west"] < thing.lon < BBOX["east"] and BBOX["south"] < thing.lat < BBOX["north"]
        inside_a = (BBOX_A["west"] < thing.lon < BBOX_A["east"]
                    and BBOX_A["south"] < thing.lat < BBOX_A["north"])
        assert inside_a == (isinstance(thing, Photo) and thing.sequence == "A"), thing


# -- the Python SDK -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sdk_python() -> Path:
    """The python of the SDK virtualenv (shared with test_sdk.py; installed on first use)."""
    import os

    venv = Path(os.environ.get("WAYVIEW_SDK_VENV") or REPO / ".venv-sdk")
    return client_venv(venv, f"mapillary=={SDK_VERSION}", "mapillary", SDK_VERSION)


# Runs in the SDK's virtualenv and prints one JSON object on stdout. The SDK logs every request
# to sys.stdout, so stdout is swapped for stderr before `mapillary` is imported. Every request
# the SDK sends is recorded (after the rewrite) with the server's answer, for failure messages.
SDK_SCRIPT = r'''
import json, sys, traceback

real_stdout, sys.stdout = sys.stdout, sys.stderr
cfg = json.loads(sys.argv[1])
BASE = cfg["base"]
SEEN = []

import requests.adapters

_send = requests.adapters.HTTPAdapter.send


def send(self, request, **kw):  # spec 10.1: rewrite at the transport layer
    for host in ("https://graph.mapillary.com", "https://tiles.mapillary.com"):
        if request.url.startswith(host):
            request.url = BASE + request.url[len(host):]
    response = _send(self, request, **kw)
    SEEN.append({"method": request.method, "url": request.url, "status": response.status_code,
                 "content_type": response.headers.get("content-type"),
                 "content_encoding": response.headers.get("content-encoding"),
                 "accept_encoding": request.headers.get("accept-encoding"),
                 "authorization": "authorization" in {k.lower() for k in request.headers},
                 "bytes": len(response.content)})
    return response


requests.adapters.HTTPAdapter.send = send

import mapillary.interface as mly

results = {}


def check(name, fn):
    start = len(SEEN)
    try:
        results[name] = {"ok": True, "value": fn()}
    except BaseException as exc:
        results[name] = {"ok": False, "error": type(exc).__module__ + "." + type(exc).__name__,
                         "message": str(exc), "traceback": traceback.format_exc()}
    results[name]["requests"] = SEEN[start:]


def as_dict(value):
    if value is None or isinstance(value, (dict, bool)):
        return value
    if isinstance(value, str):
        return json.loads(value)
    return value.to_dict()  # mapillary.models.geojson.GeoJSON


bbox, bbox_a = cfg["bbox"], cfg["bbox_a"]
lon, lat = cfg["close_to"]
check("set_token", lambda: mly.set_access_token(cfg["token"]))
check("close_to", lambda: as_dict(mly.get_image_close_to(longitude=lon, latitude=lat)))
check("close_to_radius", lambda: as_dict(
    mly.get_image_close_to(longitude=lon, latitude=lat, radius=40)))
check("close_to_pano", lambda: as_dict(
    mly.get_image_close_to(longitude=lon, latitude=lat, image_type="pano")))
check("images_bbox", lambda: as_dict(mly.images_in_bbox(bbox)))
check("images_bbox_pano", lambda: as_dict(mly.images_in_bbox(bbox, image_type="pano")))
check("images_bbox_a", lambda: as_dict(mly.images_in_bbox(bbox_a)))
check("images_bbox_sequence", lambda: as_dict(
    mly.images_in_bbox(bbox, sequence_id=[cfg["sequence_b"]])))
check("images_bbox_min_captured_at", lambda: as_dict(
    mly.images_in_bbox(bbox, min_captured_at=cfg["between_a_and_b"])))
check("images_bbox_compass", lambda: as_dict(mly.images_in_bbox(bbox, compass_angle=(85, 95))))
check("sequences_bbox", lambda: as_dict(mly.sequences_in_bbox(bbox)))
check("sequences_bbox_pano", lambda: as_dict(mly.sequences_in_bbox(bbox, image_type="pano")))
east, west = cfg["look_east"], cfg["look_west"]
radius = cfg["look_radius"]
check("looking_at_east", lambda: as_dict(
    mly.get_image_looking_at(at={"lng": east[0], "lat": east[1]}, radius=radius)))
check("looked_at_east", lambda: mly.is_image_being_looked_at(at=east, radius=radius))
check("looked_at_west", lambda: mly.is_image_being_looked_at(at=west, radius=radius))
check("points_bbox", lambda: as_dict(mly.map_feature_points_in_bbox(bbox)))
check("points_bbox_values", lambda: as_dict(
    mly.map_feature_points_in_bbox(bbox, filter_values=["object--bench"])))
check("signs_bbox", lambda: as_dict(mly.traffic_signs_in_bbox(bbox)))
check("signs_bbox_values", lambda: as_dict(
    mly.traffic_signs_in_bbox(bbox, filter_values=["regulatory--stop--g1"])))
check("signs_bbox_existed_at", lambda: as_dict(
    mly.traffic_signs_in_bbox(bbox, existed_at=cfg["between_a_and_b"])))
check("points_bbox_a", lambda: as_dict(mly.map_feature_points_in_bbox(bbox_a)))

real_stdout.write(json.dumps(results))
real_stdout.flush()
'''


@pytest.fixture(scope="session")
def sdk(sdk_python: Path, world: World, tmp_path_factory: pytest.TempPathFactory
        ) -> dict[str, Any]:
    """Run the SDK's tile functions once against the live server; results by name."""
    folder = tmp_path_factory.mktemp("sdk-tiles-run")
    script = folder / "run_sdk_tiles.py"
    script.write_text(SDK_SCRIPT)
    cfg = {"base": world.base, "token": world.client_token, "bbox": BBOX, "bbox_a": BBOX_A,
           "close_to": [LON0 + 0.0002, LAT0], "sequence_b": world.sequences["B"],
           "between_a_and_b": (T0 + timedelta(minutes=30)).isoformat(),
           "look_east": list(LOOK_EAST), "look_west": list(LOOK_WEST),
           "look_radius": LOOK_RADIUS_M}
    done = subprocess.run([str(sdk_python), str(script), json.dumps(cfg)], cwd=folder,
                          env=clean_env(PYTHONDONTWRITEBYTECODE="1", TZ="UTC"),
                          capture_output=True, text=True, timeout=SDK_TIMEOUT_S,
                          stdin=subprocess.DEVNULL, check=False)
    (folder / "sdk.log").write_text(done.stderr)
    assert done.returncode == 0, f"SDK script failed:\n{done.stderr[-6000:]}"
    (folder / "sdk-results.json").write_text(done.stdout)
    results: dict[str, Any] = json.loads(done.stdout)
    return results


def ok(results: dict[str, Any], name: str, world: World) -> Any:
    """The value of a successful SDK call, or a failure with its traceback, requests and log."""
    entry = results[name]
    if not entry["ok"]:
        pytest.fail(f"SDK call {name} raised {entry['error']}: {entry['message']}\n"
                    f"{entry['traceback']}\n--- requests ---\n"
                    f"{json.dumps(entry['requests'], indent=1)}\n"
                    f"--- server log ---\n{world.server.log_tail()}")
    return entry["value"]


def _geojson_features(value: Any, name: str) -> list[dict[str, Any]]:
    assert isinstance(value, dict) and value.get("type") == "FeatureCollection", (name, value)
    features = value["features"]
    assert isinstance(features, list), (name, value)
    return features


def image_ids_of(results: dict[str, Any], name: str, world: World) -> list[int]:
    """The image ids an SDK call returned, sorted, duplicates kept."""
    features = _geojson_features(ok(results, name, world), name)
    return sorted(f["properties"]["id"] for f in features)


def test_sdk_token_accepted(sdk: dict[str, Any], world: World) -> None:
    ok(sdk, "set_token", world)


def test_sdk_tile_requests_are_the_hosted_shape(sdk: dict[str, Any], world: World) -> None:
    """Every tile request: query token, trailing slash, z14 only, answered 200 with MVT."""
    tiles = [r for entry in sdk.values() for r in entry["requests"] if "/maps/vtp/" in r["url"]]
    assert tiles, sdk
    for r in tiles:
        path, _, query = r["url"].removeprefix(world.base).partition("?")
        assert path.startswith("/maps/vtp/") and path.endswith("/"), r
        assert path.split("/")[5] == "14", r  # /maps/vtp/<tileset>/2/14/x/y/
        assert query.startswith("access_token=MLY%7C"), r
        assert not r["authorization"], r
        assert r["status"] == 200, r
        assert r["content_type"] == MVT, r
        # requests asks for gzip; wayview then labels it (and requests inflates it).
        if r["bytes"]:
            assert "gzip" in (r["accept_encoding"] or ""), r
            assert r["content_encoding"] == "gzip", r
    empty = [r for r in tiles if r["bytes"] == 0]
    assert empty, "the 2x2 bbox has two empty tiles; the SDK must have decoded them"
    assert all(r["content_encoding"] is None for r in empty), empty


def test_sdk_get_image_close_to(sdk: dict[str, Any], world: World) -> None:
    # No filter: every image of the z14 tile containing the point (A, C and B's north half).
    in_main = sorted(i.id for i in world.images.values()
                     if tile_of(i.photo.lon, i.photo.lat) == MAIN_TILE)
    assert image_ids_of(sdk, "close_to", world) == in_main
    features = _geojson_features(ok(sdk, "close_to", world), "close_to")
    for f in features:
        image = world.images[f["properties"]["id"]]
        p = f["properties"]
        assert p["sequence_id"] == image.sequence
        assert p["captured_at"] == image.captured_at
        assert p["is_pano"] is image.is_pano
        assert p["compass_angle"] == round(image.compass_angle)
        lon, lat = f["geometry"]["coordinates"]
        assert abs(lon - image.lon) < TILE_TOLERANCE_DEG and abs(lat - image.lat) < TILE_TOLERANCE_DEG
    # The SDK's haversine filter (metres) and image_type filter, on tile properties.
    assert image_ids_of(sdk, "close_to_radius", world) == world.image_ids("A")
    assert image_ids_of(sdk, "close_to_pano", world) == world.image_ids("C")


def test_sdk_images_in_bbox(sdk: dict[str, Any], world: World) -> None:
    # SDK 1.0.16 always applies its image_type filter, and with no image_type it keeps flat
    # images only (is_pano == False); panoramas need image_type="pano". Four tiles are merged:
    # B spans two of them and must come back once per image (points live in one tile only).
    assert image_ids_of(sdk, "images_bbox", world) == world.image_ids("A", "B")
    assert image_ids_of(sdk, "images_bbox_pano", world) == world.image_ids("C")
    assert image_ids_of(sdk, "images_bbox_a", world) == world.image_ids("A")
    assert image_ids_of(sdk, "images_bbox_sequence", world) == world.image_ids("B")
    assert image_ids_of(sdk, "images_bbox_min_captured_at", world) == world.image_ids("B")
    assert image_ids_of(sdk, "images_bbox_compass", world) == world.image_ids("A")


def test_sdk_sequences_in_bbox(sdk: dict[str, Any], world: World) -> None:
    features = _geojson_features(ok(sdk, "sequences_bbox", world), "sequences_bbox")
    ids = [f["properties"]["id"] for f in features]
    # One line per tile a sequence crosses (the SDK does not merge them): B twice.
    assert sorted(ids) == sorted([world.sequences["A"], world.sequences["B"],
                                  world.sequences["B"]]), ids
    for f in features:
        assert isinstance(f["properties"]["id"], str)
        assert f["geometry"]["type"] in ("LineString", "MultiLineString"), f
        first = world.first_image("A" if f["properties"]["id"] == world.sequences["A"] else "B")
        assert f["properties"]["image_id"] == first.id
        assert f["properties"]["captured_at"] == first.captured_at
        assert f["properties"]["is_pano"] is False
    pano = _geojson_features(ok(sdk, "sequences_bbox_pano", world), "sequences_bbox_pano")
    assert [f["properties"]["id"] for f in pano] == [world.sequences["C"]]
    assert pano[0]["properties"]["is_pano"] is True


def test_sdk_image_looking_at(sdk: dict[str, Any], world: World) -> None:
    assert image_ids_of(sdk, "looking_at_east", world) == world.image_ids("A")
    assert ok(sdk, "looked_at_east", world) is True
    assert ok(sdk, "looked_at_west", world) is False


def _feature_ids(results: dict[str, Any], name: str, world: World) -> list[int]:
    features = _geojson_features(ok(results, name, world), name)
    return sorted(f["properties"]["id"] for f in features)


def test_sdk_map_feature_points_in_bbox(sdk: dict[str, Any], world: World) -> None:
    fid = world.features
    assert _feature_ids(sdk, "points_bbox", world) == sorted([fid["light_a"], fid["bench_c"]])
    assert _feature_ids(sdk, "points_bbox_values", world) == [fid["bench_c"]]
    assert _feature_ids(sdk, "points_bbox_a", world) == []
    by_name = {f.name: f for f in FEATURES}
    for f in _geojson_features(ok(sdk, "points_bbox", world), "points_bbox"):
        seeded = by_name[next(n for n, i in fid.items() if i == f["properties"]["id"])]
        assert f["properties"] == {"id": f["properties"]["id"], "value": seeded.value,
                                   "first_seen_at": seeded.first_seen_at_ms,
                                   "last_seen_at": seeded.last_seen_at_ms}
        lon, lat = f["geometry"]["coordinates"]
        assert abs(lon - seeded.lon) < TILE_TOLERANCE_DEG and abs(lat - seeded.lat) < TILE_TOLERANCE_DEG


def test_sdk_traffic_signs_in_bbox(sdk: dict[str, Any], world: World) -> None:
    fid = world.features
    # The two signs lie in two different tiles: the SDK merges them, each once.
    assert _feature_ids(sdk, "signs_bbox", world) == sorted([fid["sign_a"], fid["sign_b"]])
    assert _feature_ids(sdk, "signs_bbox_values", world) == [fid["sign_a"]]
    # existed_at keeps features first seen after the date (first_seen_at in ms).
    assert _feature_ids(sdk, "signs_bbox_existed_at", world) == [fid["sign_b"]]
    values = {f["properties"]["value"]
              for f in _geojson_features(ok(sdk, "signs_bbox", world), "signs_bbox")}
    assert values == {"regulatory--stop--g1", "warning--pedestrians-crossing--g4"}


# -- iD's decoder (Node: @mapbox/vector-tile + pbf) -------------------------------------------


Decoder = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


@pytest.fixture(scope="session")
def node_decode(tmp_path_factory: pytest.TempPathFactory) -> Decoder:
    """tests/acceptance/node installed once per session; decode.mjs on jobs
    ({"file"|"url", "z", "x", "y"}), returning its JSON."""
    package = node_package(tmp_path_factory.mktemp("node"))

    def decode(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        decoded: list[dict[str, Any]] = package.run("decode.mjs", jobs)
        return decoded

    return decode


def id_target(world: World, tileset: str, tile: tuple[int, int, int]) -> str:
    """The request target iD sends: no trailing slash, its token raw (`MLY|…|…`) in the query."""
    z, x, y = tile
    assert "|" in world.client_token
    return f"/maps/vtp/{tileset}/2/{z}/{x}/{y}?access_token={world.client_token}"


@pytest.fixture(scope="session")
def fetched(world: World, tmp_path_factory: pytest.TempPathFactory
            ) -> Callable[[str, tuple[int, int, int]], tuple[Path, dict[str, str]]]:
    """Fetch a tile byte for byte as iD asks for it (uncompressed); its file and headers."""
    folder = tmp_path_factory.mktemp("tiles")

    def fetch(tileset: str, tile: tuple[int, int, int]) -> tuple[Path, dict[str, str]]:
        status, headers, body = raw_get(world.base, id_target(world, tileset, tile))
        assert status == 200, (tileset, tile, status, body[:300])
        assert headers["content-type"] == MVT, headers
        assert "content-encoding" not in headers, headers
        assert headers["access-control-allow-origin"] == "*", headers
        path = folder / f"{tileset}-{'-'.join(map(str, tile))}.mvt"
        path.write_bytes(body)
        return path, headers

    return fetch


def _decode_one(node_decode: Decoder, path: Path, tile: tuple[int, int, int]) -> dict[str, Any]:
    z, x, y = tile
    [out] = node_decode([{"file": str(path), "z": z, "x": x, "y": y}])
    return out


def _check_point_feature(feature: dict[str, Any], lon: float, lat: float) -> None:
    assert feature["type"] == 1, feature  # Point
    assert feature["extent"] == 4096
    assert len(feature["geometry"]) == 1 and len(feature["geometry"][0]) == 1, feature
    assert feature["geojson"]["geometry"]["type"] == "Point", feature
    f_lon, f_lat = feature["geojson"]["geometry"]["coordinates"]
    assert abs(f_lon - lon) < TILE_TOLERANCE_DEG and abs(f_lat - lat) < TILE_TOLERANCE_DEG, (
        feature, lon, lat)


def _check_image_layer(layer: dict[str, Any], world: World, expected_ids: list[int]) -> None:
    assert layer["version"] == 2 and layer["extent"] == 4096, layer
    features = layer["features"]
    ids = sorted(f["properties"]["id"] for f in features)
    assert ids == expected_ids
    for f in features:
        p = f["properties"]
        assert isinstance(p["id"], int) and 0 < p["id"] <= MAX_SAFE_INTEGER, p
        assert f["id"] == p["id"], f  # MVT feature id = entity id (spec §4.3)
        image = world.images[p["id"]]
        assert isinstance(p["sequence_id"], str) and p["sequence_id"] == image.sequence, p
        assert isinstance(p["captured_at"], int) and p["captured_at"] == image.captured_at, p
        assert isinstance(p["is_pano"], bool) and p["is_pano"] is image.is_pano, p
        assert isinstance(p["compass_angle"], int | float), p
        assert p["compass_angle"] == round(image.compass_angle), p
        assert isinstance(p.get("creator_id"), int), p
        _check_point_feature(f, image.lon, image.lat)


def test_id_decodes_z14_mly1_public(world: World, node_decode: Decoder, fetched: Any) -> None:
    path, headers = fetched("mly1_public", MAIN_TILE)
    out = _decode_one(node_decode, path, MAIN_TILE)
    layers = out["layers"]
    assert set(layers) == {"image", "sequence"}
    in_main = sorted(i.id for i in world.images.values()
                     if tile_of(i.photo.lon, i.photo.lat) == MAIN_TILE)
    _check_image_layer(layers["image"], world, in_main)

    sequence = layers["sequence"]
    assert sequence["version"] == 2 and sequence["extent"] == 4096
    by_id = {f["properties"]["id"]: f for f in sequence["features"]}
    assert len(by_id) == len(sequence["features"]), "one line per sequence and tile"
    assert set(by_id) == set(world.sequences.values())
    for letter, sequence_id in world.sequences.items():
        f = by_id[sequence_id]
        p = f["properties"]
        assert isinstance(p["id"], str), p  # sequence ids are strings, in tiles too
        assert f["id"] is None, f  # no MVT feature id for lines (spec §4.3)
        assert f["type"] == 2, f  # LineString
        assert f["geojson"]["geometry"]["type"] in ("LineString", "MultiLineString"), f
        first = world.first_image(letter)
        assert isinstance(p["image_id"], int) and p["image_id"] == first.id, p
        assert isinstance(p["captured_at"], int) and p["captured_at"] == first.captured_at, p
        assert isinstance(p["is_pano"], bool) and p["is_pano"] is first.is_pano, p
    # A's line runs from its first to its last image in capture order; vertices may be
    # simplified away on a straight stretch, but each one left is an image position.
    line = by_id[world.sequences["A"]]["geojson"]["geometry"]["coordinates"]
    a_images = sorted((i for i in world.images.values() if i.photo.sequence == "A"),
                      key=lambda i: i.captured_at)

    def near(point: list[float], image: GraphImage) -> bool:
        return (abs(point[0] - image.lon) < TILE_TOLERANCE_DEG
                and abs(point[1] - image.lat) < TILE_TOLERANCE_DEG)

    assert near(line[0], a_images[0]) and near(line[-1], a_images[-1]), line
    assert all(any(near(point, image) for image in a_images) for point in line), line
    # B crosses the tile's south edge: its line is clipped, but reaches the edge.
    b_line = by_id[world.sequences["B"]]["geometry"]
    assert max(y for part in b_line for _, y in part) >= 4096, b_line


def test_id_decodes_z14_south_tile(world: World, node_decode: Decoder, fetched: Any) -> None:
    """B's south end: its images appear only here, its line in both tiles."""
    path, _ = fetched("mly1_public", SOUTH_TILE)
    layers = _decode_one(node_decode, path, SOUTH_TILE)["layers"]
    assert set(layers) == {"image", "sequence"}
    south = sorted(i.id for i in world.images.values()
                   if tile_of(i.photo.lon, i.photo.lat) == SOUTH_TILE)
    assert len(south) == 2
    _check_image_layer(layers["image"], world, south)
    assert [f["properties"]["id"] for f in layers["sequence"]["features"]] == [world.sequences["B"]]


@pytest.mark.parametrize(("tileset", "layer", "names"), [
    ("mly_map_feature_traffic_sign", "traffic_sign", {MAIN_TILE: ["sign_a"],
                                                      SOUTH_TILE: ["sign_b"]}),
    ("mly_map_feature_point", "point", {MAIN_TILE: ["light_a", "bench_c"], SOUTH_TILE: []}),
])
def test_id_decodes_z14_map_features(world: World, node_decode: Decoder, fetched: Any,
                                     tileset: str, layer: str,
                                     names: dict[tuple[int, int, int], list[str]]) -> None:
    by_name = {f.name: f for f in FEATURES}
    for tile, expected in names.items():
        path, _ = fetched(tileset, tile)
        out = _decode_one(node_decode, path, tile)
        if not expected:
            assert out["byteLength"] == 0 and out["layers"] == {}, out
            continue
        assert set(out["layers"]) == {layer}, out["layers"].keys()
        decoded = out["layers"][layer]
        assert decoded["version"] == 2 and decoded["extent"] == 4096
        ids = sorted(f["properties"]["id"] for f in decoded["features"])
        assert ids == sorted(world.features[n] for n in expected)
        for f in decoded["features"]:
            p = f["properties"]
            assert isinstance(p["id"], int) and 0 < p["id"] <= MAX_SAFE_INTEGER, p
            assert f["id"] == p["id"], f
            seeded = by_name[next(n for n in expected if world.features[n] == p["id"])]
            assert p == {"id": p["id"], "value": seeded.value,
                         "first_seen_at": seeded.first_seen_at_ms,
                         "last_seen_at": seeded.last_seen_at_ms}, p
            _check_point_feature(f, seeded.lon, seeded.lat)


def test_id_decodes_an_empty_tile(world: World, node_decode: Decoder, fetched: Any) -> None:
    for tileset, tile in [("mly1_public", EMPTY_TILE),
                          ("mly_map_feature_traffic_sign", EMPTY_TILE),
                          # map-feature tilesets below z14 are empty by rule (spec §4.2)
                          ("mly_map_feature_point",
                           (13, MAIN_TILE[1] // 2, MAIN_TILE[2] // 2))]:
        path, headers = fetched(tileset, tile)
        assert path.read_bytes() == b"", (tileset, tile)
        assert headers.get("content-length") in ("0", None), headers
        out = _decode_one(node_decode, path, tile)
        assert out["byteLength"] == 0 and out["layers"] == {}, out


def test_gzip_only_with_content_encoding(world: World, fetched: Any) -> None:
    plain_path, _ = fetched("mly1_public", MAIN_TILE)
    plain = plain_path.read_bytes()
    status, headers, body = raw_get(world.base, id_target(world, "mly1_public", MAIN_TILE),
                                    headers={"Accept-Encoding": "gzip"})
    assert status == 200, body[:300]
    assert headers["content-encoding"] == "gzip", headers
    assert headers["content-type"] == MVT, headers
    assert body[:2] == b"\x1f\x8b"
    assert gzip.decompress(body) == plain
    # An empty tile stays empty (nothing to compress, no Content-Encoding needed).
    status, headers, body = raw_get(world.base, id_target(world, "mly1_public", EMPTY_TILE),
                                    headers={"Accept-Encoding": "gzip"})
    assert (status, body) == (200, b""), (status, body[:300])
    assert "content-encoding" not in headers, headers


def test_id_fetches_like_a_browser(world: World, node_decode: Decoder, fetched: Any) -> None:
    """Node's fetch (WHATWG URL: `|` stays raw, gzip accepted and inflated) as iD's fetch()."""
    z, x, y = MAIN_TILE
    plain_path, _ = fetched("mly1_public", MAIN_TILE)
    from_file = _decode_one(node_decode, plain_path, MAIN_TILE)
    jobs = [{"url": world.base + id_target(world, tileset, tile), "z": tile[0], "x": tile[1],
             "y": tile[2]}
            for tileset, tile in [("mly1_public", MAIN_TILE),
                                  ("mly_map_feature_traffic_sign", MAIN_TILE),
                                  ("mly1_public", EMPTY_TILE)]]
    image_tile, sign_tile, empty_tile = node_decode(jobs)
    assert image_tile["status"] == 200 and image_tile["contentType"] == MVT, image_tile
    assert image_tile["contentEncoding"] == "gzip", image_tile
    assert image_tile["layers"] == from_file["layers"]
    assert image_tile["byteLength"] == plain_path.stat().st_size
    assert sign_tile["status"] == 200 and set(sign_tile["layers"]) == {"traffic_sign"}
    assert empty_tile["status"] == 200 and empty_tile["byteLength"] == 0
    assert empty_tile["layers"] == {}
