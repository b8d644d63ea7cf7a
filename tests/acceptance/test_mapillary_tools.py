"""Acceptance: the real mapillary_tools uploads to a live wayview (spec §8, §10.2).

mapillary_tools 0.14.7, 0.13.3 and 0.12.1 each run from their own virtualenv
(`.venv-mapillary-tools-<version>`, or `$WAYVIEW_MT_VENV_<major>_<minor>`), pointed at a real
`wayview serve` by the environment variables of §10.2, through a recording proxy (so the test
sees the `Offset`, chunking and sizes each version sends, and can inject 412/429 answers).
The uploader's token comes from `wayview tokens create` (0.14: `authenticate --jwt`; 0.12/0.13:
the INI profile written directly).

Every test runs with each of the three versions (no version is skipped), each version against a
server of its own (as the same sample uploaded twice is one upload): where a version sends
something else (0.12's sized chunks and closing empty POST, 0.13's retries of broken connections
only, 0.12/0.13's GPX track beside the video and CAMM positions without a clock), the test says
so, citing that version's source.

After each upload the test waits for the server's own job runner to process the upload, then
reads the result through the Graph API: one sequence per upload in
capture order, positions within 1e-6° of the EXIF, `captured_at` in ms, make/model, creator,
organization, panoramas.
"""

from __future__ import annotations

import asyncio
import configparser
import hashlib
import io
import json
import os
import subprocess
import time
from collections.abc import Iterator
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
    wayview,
    wayview_json,
)
from tests.acceptance.recording_proxy import Injection, Record, RecordingProxy
from tests.conftest import shared_path

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("mapillary_tools")]

VERSIONS = ("0.14.7", "0.13.3", "0.12.1")
#: mapillary_tools' own hard-coded client token (spec §7.4), registered like an operator would.
MT_CLIENT_TOKEN = "MLY|5675152195860640|6b02c72e6e3c801e5603ab0495623282"
MT_TIMEOUT_S = 600
START = datetime(2021, 5, 1, 10, 0, 0, 500_000, tzinfo=UTC)
START_MS = 1_619_863_200_500
LAT0, LON0 = 55.70470, 13.19100
STEP_DEG = 0.00005
MAKE, MODEL = "AcmeCam", "X-100"
IMAGE_FIELDS = ("id,geometry,captured_at,make,model,creator,organization,compass_angle,"
                "camera_type,is_pano,sequence,width,height")


@dataclass
class World:
    """The live server, the proxy in front of it and the uploader's credentials."""

    server: LiveServer
    proxy: RecordingProxy
    token: str
    user_id: str
    org_id: str

    def graph(self, path: str, **params: str) -> Any:
        with httpx.Client(base_url=self.server.base_url, timeout=30, trust_env=False) as http:
            r = http.get(path, params=params, headers={"Authorization": f"OAuth {self.token}"})
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, version: str) -> Iterator[World]:
    """A server per version: a second version uploading the same sample would find the first
    one's session (keys are md5s of the source file) and its frames already imported."""
    root = tmp_path_factory.mktemp(f"mt-upload-{version}")
    data = root / "data"
    user = wayview_json("users", "create", "uploader", data_dir=data, cwd=root)
    wayview("apps", "create", "mapillary_tools", "--owner", "uploader", "--client-token",
            MT_CLIENT_TOKEN, data_dir=data, cwd=root)
    org = wayview_json("orgs", "create", "acme", "--name", "Acme Mapping", "--member",
                       "uploader", data_dir=data, cwd=root)
    token = wayview_json("tokens", "create", "--user", "uploader", data_dir=data,
                         cwd=root)["access_token"]
    with live_server(data, root / "server.log", cwd=root) as server:
        with RecordingProxy(server.base_url).running() as proxy:
            yield World(server, proxy, token, user["id"], org["id"])


def mt_python(version: str) -> Path:
    major_minor = "_".join(version.split(".")[:2])
    venv = Path(os.environ.get(f"WAYVIEW_MT_VENV_{major_minor}")
                or REPO / f".venv-mapillary-tools-{version}")
    return client_venv(venv, f"mapillary_tools=={version}", "mapillary_tools", version)


@pytest.fixture(scope="module", params=VERSIONS)
def version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@dataclass
class Tool:
    """One mapillary_tools version with a hermetic config, history and cache."""

    python: Path
    version: str
    world: World
    home: Path

    @property
    def config(self) -> Path:
        return self.home / "config.ini"

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        variables = clean_env(
            MAPILLARY_GRAPH_API_ENDPOINT=self.world.proxy.base_url,
            MAPILLARY_UPLOAD_ENDPOINT=f"{self.world.proxy.base_url}/upload",
            MAPILLARY_CLIENT_TOKEN=MT_CLIENT_TOKEN,
            MAPILLARY_CONFIG_PATH=str(self.config),
            MAPILLARY_UPLOAD_HISTORY_PATH=str(self.home / "history"),
            MAPILLARY_TOOLS_UPLOAD_CACHE_DIR=str(self.home / "cache"),
            MAPILLARY_TOOLS_PROMPT_DISABLED="YES",
            HOME=str(self.home),
            **env,
        )
        done = subprocess.run([str(self.python), "-m", "mapillary_tools.commands", *args],
                              env=variables, capture_output=True, text=True,
                              timeout=MT_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False,
                              cwd=self.home)
        return done

    def ok(self, *args: str, **env: str) -> str:
        done = self.run(*args, **env)
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"mapillary_tools {' '.join(args)}:\n{output[-6000:]}"
        return output


@pytest.fixture
def tool(version: str, world: World, tmp_path: Path) -> Tool:
    tool = Tool(mt_python(version), version, world, tmp_path / "mt-home")
    tool.home.mkdir()
    if version.startswith("0.14"):
        tool.ok("authenticate", "--user_name", "wayview", "--jwt", world.token)
    else:  # 0.12/0.13: the profile written directly (spec §10.2)
        profile = configparser.ConfigParser()
        profile.optionxform = str  # type: ignore[assignment,method-assign]
        profile["wayview"] = {"user_upload_token": world.token,
                              "MAPSettingsUserKey": world.user_id,
                              "MAPSettingsUsername": "uploader"}
        with tool.config.open("w") as fh:
            profile.write(fh)
    return tool


# -- server-side processing -------------------------------------------------------------------


def finishes_since(world: World, before: int) -> list[Record]:
    return [r for r in world.proxy.records[before:]
            if r.method == "POST" and r.path.startswith("/finish_upload")]


def process_uploads(world: World) -> list[dict[str, Any]]:
    """The results of every finish so far, once the live server's own job runner has
    processed them (the server runs jobs in the background, `jobs.serve_workers`)."""
    deadline = time.monotonic() + MT_TIMEOUT_S
    while True:
        results = asyncio.run(_results(world.server.data_dir))
        if all(r["result"] is not None for r in results):
            return [{"cluster_id": r["cluster_id"], "file_type": r["file_type"],
                     "organization_id": r["organization_id"], **r["result"]} for r in results]
        assert time.monotonic() < deadline, f"uploads not processed: {results}"
        time.sleep(0.2)


async def _results(data_dir: Path) -> list[dict[str, Any]]:
    from wayview.ingest.upload_finish import INGEST_JOB
    from wayview.settings import Settings
    from wayview.testing import open_test_store

    settings = Settings(_env_file=None, data_dir=data_dir)  # type: ignore[call-arg]
    results = []
    async with open_test_store(settings) as store:
        # Cluster ids are graph-style ids, not a counter: every finish queued one ingest job,
        # so the jobs list them in the order the finishes came.
        jobs = sorted((j for j in await store.list_jobs(limit=100_000) if j.kind == INGEST_JOB),
                      key=lambda j: j.id)
        for job in jobs:
            cluster_id = int(job.payload["cluster_id"])  # type: ignore[call-overload]
            finish = await store.get_upload_finish(cluster_id)
            assert finish is not None, cluster_id
            results.append({"cluster_id": cluster_id, "file_type": finish.file_type,
                            "organization_id": finish.organization_id,
                            "result": finish.result})
    return results


def new_results(world: World, known: int) -> list[dict[str, Any]]:
    results = process_uploads(world)
    return results[known:]


def known_results(world: World) -> int:
    return len(process_uploads(world))


def sequence_images(world: World, sequence_id: str) -> list[dict[str, Any]]:
    data = world.graph("/images", sequence_ids=sequence_id, fields=IMAGE_FIELDS)["data"]
    return sorted(data, key=lambda im: (im["captured_at"], im["id"]))


# -- test data -------------------------------------------------------------------------------


def write_photos(folder: Path, count: int = 6, *, pano: bool = True, tag: str = ""
                 ) -> list[tuple[float, float]]:
    """A line of JPEGs 1 s apart (GPS, DateTimeOriginal, heading) and, with `pano`, one 2:1
    GPano panorama after it; returns the (lat, lon) of each line image in capture order."""
    from wayview.fixtures import write_jpeg

    positions = []
    for k in range(count + (1 if pano else 0)):
        is_pano = k == count
        lat, lon = LAT0 + k * 0.00001, LON0 + k * STEP_DEG
        write_jpeg(folder / f"IMG_{k:04d}.jpg", width=1024 if is_pano else 640,
                   height=512 if is_pano else 480, lat=lat, lon=lon,
                   captured_at=START + timedelta(seconds=k), compass_deg=90.0 + k,
                   altitude_m=30.0 + k, make=MAKE, model=MODEL, seed=k, label=f"{tag} {k}",
                   pano=is_pano)
        if not is_pano:
            positions.append((lat, lon))
    return positions


def uploaded_images(world: World, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The images of finished uploads, each upload one sequence, in capture order."""
    images = []
    for result in results:
        assert result["state"] == "done" and len(result["sequences"]) == 1, result
        found = sequence_images(world, result["sequences"][0]["id"])
        assert len(found) == result["imported"] > 0, result
        images.extend(found)
    return sorted(images, key=lambda im: (im["captured_at"], im["id"]))


def assert_line(world: World, images: list[dict[str, Any]],
                positions: list[tuple[float, float]], *, organization: str | None = None,
                pano: bool = True) -> None:
    """The line of `write_photos` as served: positions, times, camera, creator, panorama."""
    assert len(images) == len(positions) + (1 if pano else 0)
    for k, image in enumerate(images):
        if k < len(positions):
            lat, lon = positions[k]
            got_lon, got_lat = image["geometry"]["coordinates"]
            assert abs(got_lat - lat) <= 1e-6 and abs(got_lon - lon) <= 1e-6, (k, image)
            assert image["is_pano"] is False and image["camera_type"] == "perspective"
        assert image["captured_at"] == START_MS + k * 1000, (k, image)
        assert (image["make"], image["model"]) == (MAKE, MODEL)
        assert image["creator"] == {"id": world.user_id, "username": "uploader"}
        assert image.get("organization") == ({"id": organization} if organization else None)
        assert image["compass_angle"] == pytest.approx(90.0 + k, abs=0.01)
    if pano:
        assert images[-1]["is_pano"] is True and images[-1]["camera_type"] == "spherical"


# -- tests -------------------------------------------------------------------------------------


def test_process_and_upload_images(tool: Tool, world: World, tmp_path: Path):
    """Images → one upload per sequence (0.14: bundle manifest; 0.12/0.13: zip) for the org.

    mapillary_tools puts the panorama (another image size) in a sequence of its own."""
    photos = tmp_path / "photos"
    positions = write_photos(photos, tag=f"{tool.version} images")
    known = known_results(world)
    before = len(world.proxy.records)
    tool.ok("process_and_upload", str(photos), "--user_name", "wayview",
            "--organization_key", world.org_id,
            MAPILLARY_TOOLS_UPLOAD_CHUNK_SIZE_MB="0.05")
    finishes = finishes_since(world, before)
    results = new_results(world, known)
    expected_type = "mly_bundle_manifest" if tool.version.startswith("0.14") else "zip"
    assert len(finishes) == len(results) >= 1
    assert {r["file_type"] for r in results} == {expected_type}
    assert {r["organization_id"] for r in results} == {int(world.org_id)}
    # graph-style cluster ids (spec §8.1), not a counter
    assert all(10**14 <= r["cluster_id"] < 2**53 for r in results), results
    assert_line(world, uploaded_images(world, results), positions, organization=world.org_id)
    posts = [r for r in world.proxy.records[before:]
             if r.method == "POST" and r.path.startswith("/upload/")]
    if tool.version.startswith("0.12"):
        # one sized POST per 50 kB chunk, then an empty one, per zip (spec §8.2)
        assert all(not r.chunked and "x-entity-length" in r.headers for r in posts)
        assert len(posts) >= 3 and posts[-1].body_size == 0
    else:
        assert all(r.chunked for r in posts if r.body_size), posts


def test_lund_images(tool: Tool, world: World, tmp_path: Path):
    """The 29 Lund photos → one sequence at their EXIF positions and capture times.

    Their capture time exists only in the legacy Mapillary app description, which
    mapillary_tools does not read; like a user would, the test writes it into EXIF
    `DateTimeOriginal` of the copies it uploads (nothing else changes)."""
    source = shared_path("data", "opensfm_lund")
    rows = {Path(row["file"]).name: row
            for row in _manifest_rows(json.loads((source / "manifest.json").read_text()))}
    photos = tmp_path / "lund"
    photos.mkdir()
    for name, row in sorted(rows.items()):
        _with_capture_time(source / "images" / name, photos / name, row["captured_at_ms"],
                           tag=tool.version)
    known = known_results(world)
    tool.ok("process_and_upload", str(photos), "--user_name", "wayview")
    results = new_results(world, known)
    images = uploaded_images(world, results)
    # mapillary_tools itself drops photos taken within 0.1 m of the previous one; the server
    # keeps every photo it was sent (nothing dropped).
    assert len(rows) == 29 and 25 <= len(images) <= 29
    assert all(r["dropped"] == [] for r in results)
    by_time = {row["captured_at_ms"]: row for row in rows.values()}
    for image in images:
        row = by_time[image["captured_at"]]
        lon, lat = image["geometry"]["coordinates"]
        assert abs(lat - row["lat"]) <= 1e-6 and abs(lon - row["lon"]) <= 1e-6, (image, row)
        assert image["captured_at"] == row["captured_at_ms"]
        assert image["creator"]["username"] == "uploader"
    assert_lund_stop_sign(world)


#: Where the Lund stop sign stands, estimated by eye from the photos (it is 26 m ahead of
#: frame 23 by its size and bearing; frames 25–26 pass it): good to about ±6 m.
LUND_STOP = (13.19455, 55.69958)
SDK_SCRIPT = '''
import json, sys
real_stdout, sys.stdout = sys.stdout, sys.stderr
cfg = json.loads(sys.argv[1])
import requests.adapters
_send = requests.adapters.HTTPAdapter.send
def send(self, request, **kw):
    for host in ("https://graph.mapillary.com", "https://tiles.mapillary.com"):
        if request.url.startswith(host):
            request.url = cfg["base"] + request.url[len(host):]
    return _send(self, request, **kw)
requests.adapters.HTTPAdapter.send = send
import mapillary.interface as mly
mly.set_access_token(cfg["token"])
bbox = cfg["bbox"]
out = {"signs": json.loads(mly.traffic_signs_in_bbox(bbox)),
       "stop": json.loads(mly.traffic_signs_in_bbox(bbox, filter_values=["regulatory--stop--g1"])),
       "points": json.loads(mly.map_feature_points_in_bbox(bbox))}
real_stdout.write(json.dumps(out))
'''


def assert_lund_stop_sign(world: World) -> None:
    """The pipeline saw the real stop sign: one map feature near where it stands, served by
    the Graph API and found by the Mapillary SDK's `traffic_signs_in_bbox`."""
    from tests.acceptance.test_sdk import SDK_VERSION

    from wayview.pipeline.triangulate import distance_m

    lon, lat = LUND_STOP
    bbox = f"{lon - 0.001},{lat - 0.001},{lon + 0.001},{lat + 0.001}"
    features = world.graph("/map_features", bbox=bbox, object_values="regulatory--stop--g1",
                           fields="id,object_value,object_type,geometry,images")["data"]
    assert len(features) == 1, features
    [feature] = features
    flon, flat = feature["geometry"]["coordinates"]
    assert distance_m(flon, flat, lon, lat) < 10.0, feature
    assert feature["object_type"] == "trafficsign" and len(feature["images"]["data"]) >= 2
    detections = world.graph(f"/{feature['id']}/detections", fields="id,value,geometry,image")
    assert {d["value"] for d in detections["data"]} == {"regulatory--stop--g1"}
    # The SDK (its own tile client and GeoJSON) finds it too.
    sdk = client_venv(Path(os.environ.get("WAYVIEW_SDK_VENV") or REPO / ".venv-sdk"),
                      f"mapillary=={SDK_VERSION}", "mapillary", SDK_VERSION)
    cfg = {"base": world.server.base_url, "token": world.token,
           "bbox": {"west": lon - 0.002, "south": lat - 0.002, "east": lon + 0.002,
                    "north": lat + 0.002}}
    done = subprocess.run([str(sdk), "-c", SDK_SCRIPT, json.dumps(cfg)], env=clean_env(),
                          capture_output=True, text=True, timeout=300, check=False,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-4000:]
    found = json.loads(done.stdout)
    values = [f["properties"]["value"] for f in found["stop"]["features"]]
    assert values == ["regulatory--stop--g1"], found["stop"]
    assert "regulatory--stop--g1" in [f["properties"]["value"]
                                      for f in found["signs"]["features"]]


def _with_capture_time(source: Path, target: Path, captured_at_ms: int, *, tag: str) -> None:
    """Copy a JPEG adding EXIF DateTimeOriginal/SubSecTimeOriginal/OffsetTimeOriginal (UTC)."""
    import piexif

    moment = datetime.fromtimestamp(captured_at_ms / 1000, tz=UTC)
    exif = piexif.load(str(source))
    exif["Exif"][piexif.ExifIFD.DateTimeOriginal] = moment.strftime("%Y:%m:%d %H:%M:%S").encode()
    exif["Exif"][piexif.ExifIFD.SubSecTimeOriginal] = f"{captured_at_ms % 1000:03d}".encode()
    exif["Exif"][piexif.ExifIFD.OffsetTimeOriginal] = b"+00:00"
    # Each run uploads distinct bytes (the server keeps one copy of identical photos).
    exif["0th"][piexif.ImageIFD.Software] = f"wayview tests {tag}".encode()
    exif.pop("thumbnail", None)
    exif["1st"] = {}
    data = source.read_bytes()
    out = io.BytesIO()
    piexif.insert(piexif.dump(exif), data, out)
    target.write_bytes(out.getvalue())


def _manifest_rows(manifest: Any) -> list[dict[str, Any]]:
    rows = manifest["images"] if isinstance(manifest, dict) and "images" in manifest else manifest
    if isinstance(rows, dict):
        rows = list(rows.values())
    return list(rows)


def test_resumed_zip_upload_posts_from_the_stored_offset(tool: Tool, world: World,
                                                         tmp_path: Path):
    """The first K bytes of a zip are already held: the tool POSTs from K; bytes equal.

    Every version names the session after the zip (`mly_tools_<md5>.zip`: 0.14 the md5 of the
    file, 0.12/0.13 the sequence md5 kept in the zip's comment, `uploader.upload_zipfile`) and
    asks `GET {UPLOAD}/<key>` for the offset first. 0.13/0.14 then send the rest in one chunked
    POST; 0.12 sends it in `Content-Length` chunks (one here) and a final empty POST."""
    photos = tmp_path / "photos"
    write_photos(photos, count=4, pano=False, tag=f"{tool.version} resume")
    tool.ok("process", str(photos))
    zips = tmp_path / "zips"
    tool.ok("zip", str(photos), str(zips))
    [archive] = sorted(zips.glob("*.zip"))
    data = archive.read_bytes()
    key = archive.name
    assert key.startswith("mly_tools_") and key.endswith(".zip")
    if tool.version.startswith("0.14"):
        assert key == f"mly_tools_{hashlib.md5(data).hexdigest()}.zip"
    held = len(data) // 3
    with httpx.Client(base_url=world.server.base_url, trust_env=False) as http:
        r = http.post(f"/upload/{key}", content=data[:held],
                      headers={"Authorization": f"OAuth {world.token}", "Offset": "0"})
        assert r.status_code == 200, r.text
    before = len(world.proxy.records)
    known = known_results(world)
    # `upload` reads a description file even for a folder of zips: an empty one will do.
    (zips / "mapillary_image_description.json").write_text("[]")
    if tool.version.startswith("0.14"):
        tool.ok("upload", str(zips), "--user_name", "wayview", "--reupload")
    elif tool.version.startswith("0.13"):  # no history of this zip yet: nothing to --reupload
        tool.ok("upload", str(zips), "--user_name", "wayview")
    else:  # 0.12 uploads zips only when asked to (`DirectUploadFileType.ZIP`)
        tool.ok("upload", str(zips), "--user_name", "wayview", "--filetypes", "zip")
    gets = [r for r in world.proxy.records[before:]
            if r.method == "GET" and r.path == f"/upload/{key}"]
    assert gets, "the tool did not ask for the offset"
    posts = [(r.headers.get("offset"), r.body_size) for r in world.proxy.records[before:]
             if r.method == "POST" and r.path == f"/upload/{key}"]
    expected = [(str(held), len(data) - held)]
    if tool.version.startswith("0.12"):
        expected.append((str(len(data)), 0))  # 0.12's closing empty POST
    assert posts == expected
    from wayview.ingest.upload_sessions import staged_path
    from wayview.settings import Settings

    settings = Settings(_env_file=None, data_dir=world.server.data_dir)  # type: ignore[call-arg]
    assert staged_path(settings, int(world.user_id), key).read_bytes() == data
    [result] = new_results(world, known)
    assert result["file_type"] == "zip" and result["state"] == "done"


def _upload_post(record: Record) -> bool:
    return record.method == "POST" and record.path.startswith("/upload/")


@pytest.fixture
def proxy_injections(world: World) -> Iterator[RecordingProxy]:
    """The proxy, with injections a failed test left unused removed afterwards."""
    yield world.proxy
    world.proxy.clear_injections()


def test_injected_412_and_429_are_retried(tool: Tool, world: World, tmp_path: Path,
                                          proxy_injections: RecordingProxy):
    """An upload POST answered 412, then one answered 429 (both `retriable`), is retried and
    the upload succeeds: 0.14 waits `Retry-After`; 0.12 retries any `debug_info.retriable` 4xx
    (412 at once, else after `min(2^n, 16)` s: `uploader._is_retriable_exception`,
    `_is_immediate_retry`).

    0.13.3 cannot: `UploadService.upload_chunks` (`upload_api_v4.py`) reads `resp.json()["h"]`
    without `raise_for_status()`, so a 412 or 429 body ends the upload with "File handle not
    found in the upload response" (a RuntimeError, never retried). What 0.13 does retry is a
    broken connection (`requests.ConnectionError`): there the proxy passes the first 10 kB of
    the POST body to the server and closes the connection unanswered; the tool asks for the
    offset and POSTs the rest from it (spec §8.3 rule 3)."""
    photos = tmp_path / "photos"
    positions = write_photos(photos, count=3, tag=f"{tool.version} retry")
    known = known_results(world)
    injected = len(world.proxy.injected)
    before = len(world.proxy.records)
    if tool.version.startswith("0.13"):
        world.proxy.inject(Injection(_upload_post, 0, b"", drop_after=10_000))
        tool.ok("process_and_upload", str(photos), "--user_name", "wayview")
        [dropped] = world.proxy.injected[injected:]
        later = world.proxy.records[world.proxy.records.index(dropped, before) + 1:]
        assert (later[0].method, later[0].path) == ("GET", dropped.path)  # the offset
        resumed = [r for r in later if r.method == "POST" and r.path == dropped.path]
        assert resumed[0].headers["offset"] == "10000"
        assert resumed[0].body_size == dropped.body_size - 10_000
    else:
        u2 = json.dumps({"debug_info": {"retriable": True, "type": "OffsetInvalidError",
                                        "message": "Request starting offset is invalid"}})
        u3 = json.dumps({"debug_info": {"retriable": True, "type": "RequestRateLimitedError",
                                        "message": "Request rate limit has been exceeded"},
                         "backoff": 1000})
        world.proxy.inject(Injection(_upload_post, 412, u2.encode(),
                                     {"Content-Type": "application/json"}))
        world.proxy.inject(Injection(_upload_post, 429, u3.encode(),
                                     {"Content-Type": "application/json", "Retry-After": "1"}))
        tool.ok("process_and_upload", str(photos), "--user_name", "wayview")
        assert [r.path.startswith("/upload/") for r in world.proxy.injected[injected:]] == [
            True, True]
    assert_line(world, uploaded_images(world, new_results(world, known)), positions)


def test_video_with_a_gpx_track(tool: Tool, world: World, tmp_path: Path):
    """An MP4 geotagged from a GPX track → `mly_camm_video` → frames along the track.

    0.14 takes the track from `--geotag_source_path`. 0.12/0.13 have the same (then
    experimental) `--video_geotag_source gpx`, which reads the track from beside the video
    (`%g.gpx`, `video_data_extraction/extractors/gpx_parser.py`) and rebases its times to start
    at 0 (`base_parser._rebase_times`): the track's own clock is not uploaded, so for them the
    test checks positions against the time since the first frame."""
    from tests.helpers_video import encode_video

    video = tmp_path / "video" / "drive.mp4"
    video.parent.mkdir()
    encode_video(video, seconds=12, fps=10, width=320, height=240)
    points = [(START + timedelta(seconds=t), LAT0, LON0 + t * 0.00005) for t in range(13)]
    if tool.version.startswith("0.14"):
        gpx = tmp_path / "drive.gpx"
        args = ("--video_geotag_source", "gpx", "--geotag_source_path", str(gpx))
    else:
        gpx = video.parent / "drive.gpx"
        args = ("--video_geotag_source", "gpx")
    gpx.write_text(_gpx(points))
    known = known_results(world)
    before = len(world.proxy.records)
    tool.ok("process_and_upload", str(video.parent), "--user_name", "wayview", *args)
    finish_bodies = finishes_since(world, before)
    assert len(finish_bodies) == 1
    [result] = new_results(world, known)
    assert result["file_type"] == "mly_camm_video" and result["state"] == "done", result
    images = sequence_images(world, result["sequences"][0]["id"])
    assert len(images) >= 8
    start_ms = (int(START.timestamp() * 1000) if tool.version.startswith("0.14")
                else images[0]["captured_at"])
    for image in images:
        lon, lat = image["geometry"]["coordinates"]
        assert abs(lat - LAT0) <= 1e-6 and LON0 - 1e-6 <= lon <= LON0 + 12 * 0.00005 + 1e-6
        seconds = (image["captured_at"] - start_ms) / 1000
        # the position matches the GPX at the image's time
        assert abs(lon - (LON0 + seconds * 0.00005)) <= 2e-6, image
        assert image["compass_angle"] == pytest.approx(90.0, abs=1.0)
        assert (image["width"], image["height"]) == (320, 240)


def _gpx(points: list[tuple[datetime, float, float]]) -> str:
    rows = "\n".join(
        f'<trkpt lat="{lat:.7f}" lon="{lon:.7f}"><ele>20.0</ele>'
        f"<time>{moment.strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]}Z</time></trkpt>"
        for moment, lat, lon in points)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<gpx version="1.1" creator="wayview tests" '
            'xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>\n'
            f"{rows}\n</trkseg></trk></gpx>\n")


def test_gopro_sample_video(tool: Tool, world: World, tmp_path: Path):
    """The GoPro MAX sample (GPMF GPS) → the tool's CAMM upload → frames at its GPS fixes.

    Every version reads the GPMF track itself (0.12: `FileType.GOPRO` among
    `upload.CAMM_CONVERTABLES`) and uploads `mly_camm_video`."""
    sample = shared_path("data", "gopro_max_sample", "max-heromode.mp4")
    folder = tmp_path / "gopro"
    folder.mkdir()
    (folder / sample.name).write_bytes(sample.read_bytes())
    known = known_results(world)
    output = tool.ok("process_and_upload", str(folder), "--user_name", "wayview")
    [result] = new_results(world, known)
    assert result["file_type"] == "mly_camm_video", (result, output[-3000:])
    assert result["state"] == "done" and result["imported"] >= 3, result
    images = sequence_images(world, result["sequences"][0]["id"])
    first = datetime(2019, 11, 18, 23, 45, 14, tzinfo=UTC).timestamp() * 1000
    times = [image["captured_at"] for image in images]
    assert times == sorted(times) and times[-1] - times[0] <= 12_000
    if not tool.version.startswith("0.14"):
        # 0.12/0.13 write CAMM type 5 (no time; 0.12 `geotag/camm_builder.py`, 0.13
        # `camm/camm_builder.py`) and drop the GPMF track from the upload: the only clock left
        # is the movie header, which the GoPro writes in the camera's local time.
        assert abs(times[0] - first) <= 14 * 3_600_000 + 60_000
    else:
        assert first - 1000 <= times[0] <= first + 12_000
    for image in images:
        lon, lat = image["geometry"]["coordinates"]
        assert abs(lat - 33.1267) < 0.001 and abs(lon + 117.3273) < 0.001
