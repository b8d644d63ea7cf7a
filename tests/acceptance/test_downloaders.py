"""Acceptance: Mapillary image downloaders from PyPI download through wayview (issue #20).

Two command-line downloaders, each installed unmodified from PyPI into its own virtualenv
(`.venv-mapillary-downloader`, `.venv-mapillary-dl` beside the repository) and run as a user
runs them against a real `wayview serve` on loopback:

- `mapillary-downloader` 0.12.0 (WTFPL): archives *a user's* images
  (`GET /images?creator_username=…&limit=2000`, following `paging.next`), one folder per capture
  date and sequence, tarred per date, with the API's metadata written into each file's EXIF
  (and GPano XMP for panoramas) and `metadata.jsonl.gz` beside them;
- `mapillary-dl` 0.1.9 (MIT): downloads *an area* (`--bbox`: `GET /images?bbox=…` per grid cell,
  then `GET /{id}` for `thumb_2048_url`) to `images/<id>.jpg` with GPS written into EXIF. It asks
  "Download N new images?" even without a terminal; the test answers `y` on its stdin.

Both hard-code `https://graph.mapillary.com` (no setting for it), so they are pointed at the
server by a transport rewrite (spec §10.1): a `sitecustomize.py` on `PYTHONPATH` patches
`requests`' `HTTPAdapter.send` to send `graph.mapillary.com` to the live server and to refuse
every other host that is not the server (mapillary-downloader would ask archive.org whether the
collection exists; `--no-check-ia` turns that off, the rewrite makes sure). The image URLs come
from the API and already point at the server.

What they wrote is compared with what was uploaded and with what the server serves: the set of
ids, the folders, every file's JPEG data (everything but the APPn metadata segments the tools
rewrite) byte for byte against the server's bytes for the same URL, the pixels against the
uploaded photo, and the metadata they wrote (positions, capture time, heading, camera) against
the upload's EXIF. A second server on the same data answers at most 2 images per search page
(`search.max_limit`), so mapillary-downloader has to follow `paging.next` through three pages.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image as PILImage
from PIL import ImageChops, ImageStat
from tests.acceptance.live import (
    REPO,
    LiveServer,
    clean_env,
    client_venv,
    live_server,
    wayview,
    wayview_json,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("downloaders")]

DOWNLOADER_VERSION = "0.12.0"  # PyPI mapillary-downloader
DL_VERSION = "0.1.9"  # PyPI mapillary-dl
RUN_TIMEOUT_S = 300
T0 = datetime(2023, 4, 12, 8, 15, 0, 250_000, tzinfo=UTC)
LON0, LAT0 = 13.40500, 52.52000
STEP_DEG = 0.00008
WIDTH, HEIGHT = 1280, 960
PANO_W, PANO_H = 2048, 1024
#: Around every seeded photo, inside one bbox search (≤ 0.01 deg²).
BBOX = (13.4040, 52.5190, 13.4080, 52.5215)
OWNER, OTHER = "hedda", "ivar"
#: The photos of each user: (lon, lat, seconds after T0, heading, panorama).
PHOTOS = {
    OWNER: [(LON0 + k * STEP_DEG, LAT0, 2 * k, 80.0 + k, k == 4) for k in range(5)],
    OTHER: [(LON0 + k * STEP_DEG, LAT0 + 0.00005, 3600 + 2 * k, 260.0, False)
            for k in range(3)],
}
MAKE = {OWNER: ("AcmeCam", "X-100"), OTHER: ("OtherCam", "Z2")}

# On the clients' PYTHONPATH: the transport rewrite of spec §10.1, plus no other host.
SITECUSTOMIZE = '''
import os

import requests.adapters
import requests.exceptions

BASE = os.environ["WAYVIEW_TEST_BASE"]
_send = requests.adapters.HTTPAdapter.send


def send(self, request, **kw):
    for host in ("https://graph.mapillary.com", "https://tiles.mapillary.com"):
        if request.url.startswith(host):
            request.url = BASE + request.url[len(host):]
    if not request.url.startswith(BASE + "/"):
        raise requests.exceptions.ConnectionError(f"test: not the server: {request.url}")
    return _send(self, request, **kw)


requests.adapters.HTTPAdapter.send = send
'''


@dataclass
class Photo:
    """One uploaded photo and the image the server made of it."""

    username: str
    path: Path
    image_id: str
    graph: dict[str, Any]  # the image's Graph fields


@dataclass
class World:
    server: LiveServer
    client_token: str
    photos: list[Photo]

    def of(self, username: str) -> list[Photo]:
        return [p for p in self.photos if p.username == username]


# -- JPEG helpers -----------------------------------------------------------------------------


def _segments(data: bytes) -> list[tuple[int, bytes]]:
    """A JPEG's marker segments up to the scan, then the scan and the rest as one piece."""
    assert data[:2] == b"\xff\xd8", data[:4]
    out, i = [], 2
    while i < len(data):
        assert data[i] == 0xFF, f"no marker at {i}"
        marker = data[i + 1]
        if marker == 0xDA:  # start of scan: the entropy-coded data follows
            out.append((marker, data[i:]))
            break
        length = int.from_bytes(data[i + 2:i + 4], "big")
        out.append((marker, data[i:i + 2 + length]))
        i += 2 + length
    return out


def jpeg_data(data: bytes) -> bytes:
    """The JPEG without its APPn segments (EXIF, XMP, JFIF): tables, frame and scan only.
    The downloaders rewrite the metadata; the picture itself must reach them unchanged."""
    return b"".join(seg for marker, seg in _segments(data) if not 0xE0 <= marker <= 0xEF)


def pixel_difference(a: bytes, b: bytes) -> float:
    """Mean absolute difference of two JPEGs' pixels (0-255), after checking their sizes."""
    with PILImage.open(io.BytesIO(a)) as one, PILImage.open(io.BytesIO(b)) as two:
        assert one.size == two.size, (one.size, two.size)
        diff = ImageChops.difference(one.convert("RGB"), two.convert("RGB"))
        return sum(ImageStat.Stat(diff).mean) / 3


def _ratio(value: Any) -> float:
    num, den = value
    return float(num) / float(den)


def _degrees(dms: Any, ref: bytes) -> float:
    value = sum(_ratio(part) / float(60**k) for k, part in enumerate(dms))
    return -value if ref in (b"S", b"W") else value


def exif(data: bytes) -> dict[str, Any]:
    """Make, model, capture time, position and heading from a JPEG's EXIF (piexif)."""
    import piexif

    tags = piexif.load(data)
    gps, zeroth, ex = tags["GPS"], tags["0th"], tags["Exif"]
    out: dict[str, Any] = {
        "make": zeroth.get(piexif.ImageIFD.Make, b"").decode(),
        "model": zeroth.get(piexif.ImageIFD.Model, b"").decode(),
        "datetime": ex.get(piexif.ExifIFD.DateTimeOriginal, b"").decode(),
        "subsec": ex.get(piexif.ExifIFD.SubSecTimeOriginal, b""),
    }
    if piexif.GPSIFD.GPSLatitude in gps:
        out["lat"] = _degrees(gps[piexif.GPSIFD.GPSLatitude], gps[piexif.GPSIFD.GPSLatitudeRef])
        out["lon"] = _degrees(gps[piexif.GPSIFD.GPSLongitude],
                              gps[piexif.GPSIFD.GPSLongitudeRef])
    if piexif.GPSIFD.GPSImgDirection in gps:
        out["heading"] = _ratio(gps[piexif.GPSIFD.GPSImgDirection])
    if piexif.GPSIFD.GPSAltitude in gps:
        out["altitude"] = _ratio(gps[piexif.GPSIFD.GPSAltitude])
    return out


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Two users' photos imported with the CLI (hedda: four flat photos and a panorama; ivar:
    three photos of the same street an hour later), served live."""
    from wayview.fixtures import write_jpeg

    root = tmp_path_factory.mktemp("downloaders")
    data = root / "data"
    paths: dict[str, list[Path]] = {}
    for username, shots in PHOTOS.items():
        wayview_json("users", "create", username, data_dir=data, cwd=root)
        make, model = MAKE[username]
        paths[username] = []
        for k, (lon, lat, seconds, heading, pano) in enumerate(shots):
            width, height = (PANO_W, PANO_H) if pano else (WIDTH, HEIGHT)
            paths[username].append(write_jpeg(
                root / username / f"IMG_{k:04d}.jpg", width=width, height=height, lat=lat,
                lon=lon, captured_at=T0 + timedelta(seconds=seconds), compass_deg=heading,
                altitude_m=40.0 + k, make=make, model=model, pano=pano, seed=k,
                label=f"{username} {k}"))
        report = json.loads(wayview("import", str(root / username), "--user", username,
                                    "--json", data_dir=data, cwd=root).strip().splitlines()[-1])
        assert report["imported"] == len(shots) and report["skipped"] == [], report
    app = wayview_json("apps", "create", "downloaders", "--owner", OWNER, "--scope", "read",
                       data_dir=data, cwd=root)
    with live_server(data, root / "server.log", cwd=root) as server:
        headers = {"Authorization": f"OAuth {app['client_token']}"}
        fields = ("id,geometry,computed_geometry,captured_at,compass_angle,sequence,is_pano,"
                  "width,height,make,model,altitude,creator,thumb_2048_url,thumb_original_url")
        photos: list[Photo] = []
        with httpx.Client(trust_env=False, timeout=10, headers=headers) as http:
            for username, files in paths.items():
                r = http.get(f"{server.base_url}/images",
                             params={"creator_username": username, "fields": fields})
                assert r.status_code == 200, r.text
                rows = sorted(r.json()["data"], key=lambda row: row["captured_at"])
                assert len(rows) == len(files), rows
                photos += [Photo(username, path, row["id"], row)
                           for path, row in zip(files, rows, strict=True)]
        yield World(server, app["client_token"], photos)


def _venv(name: str, requirement: str, module: str, version: str) -> Path:
    return client_venv(REPO / f".venv-{name}", requirement, module, version, distribution=name)


@pytest.fixture(scope="module")
def downloader_python() -> Path:
    return _venv("mapillary-downloader", f"mapillary-downloader=={DOWNLOADER_VERSION}",
                 "mapillary_downloader", DOWNLOADER_VERSION)


@pytest.fixture(scope="module")
def dl_python() -> Path:
    return _venv("mapillary-dl", f"mapillary-dl=={DL_VERSION}", "downloader", DL_VERSION)


def run_client(command: list[str], *, base: str, cwd: Path, stdin: str = "",
               **env: str) -> str:
    """Run a downloader's console script with the transport rewrite; its output."""
    site = cwd / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    # TZ: mapillary-downloader writes EXIF times in local time (`datetime.fromtimestamp`).
    done = subprocess.run(command, cwd=cwd, input=stdin, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, check=False,
                          env=clean_env(PYTHONPATH=str(site), WAYVIEW_TEST_BASE=base, TZ="UTC",
                                        HOME=str(cwd), XDG_CACHE_HOME=str(cwd / "cache"),
                                        PYTHONDONTWRITEBYTECODE="1", **env))
    output = done.stdout + done.stderr
    (cwd / "client.log").write_text(output)
    assert done.returncode == 0, f"{command[0]} exited {done.returncode}:\n{output[-6000:]}"
    return output


def _server_bytes(world: World, url: str) -> bytes:
    with httpx.Client(trust_env=False, timeout=10) as http:
        r = http.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg", r
    return r.content


def _run_downloader(python: Path, server: LiveServer, token: str, folder: Path
                    ) -> tuple[Path, str]:
    output = run_client([str(python.parent / "mapillary-downloader"), "--output",
                         str(folder / "out"), "--no-webp", "--no-check-ia", "--max-workers",
                         "2", OWNER], base=server.base_url, cwd=folder, MAPILLARY_TOKEN=token)
    return folder / "out" / f"mapillary-{OWNER}-original", output


@pytest.fixture(scope="module")
def archive(downloader_python: Path, world: World,
            tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`mapillary-downloader --no-webp --no-check-ia hedda` (originals, tarred per date)."""
    folder, _ = _run_downloader(downloader_python, world.server, world.client_token,
                                tmp_path_factory.mktemp("mapillary-downloader"))
    return folder


def _archived(collection: Path) -> dict[str, tuple[str, bytes]]:
    """The images of a mapillary-downloader collection: id → (path in the tar, bytes)."""
    out = {}
    for tar_path in sorted(collection.glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.endswith(".jpg"):
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    out[Path(member.name).stem] = (member.name, extracted.read())
    return out


# -- mapillary-downloader ---------------------------------------------------------------------


def test_downloader_gets_exactly_the_users_images(archive: Path, world: World) -> None:
    files = _archived(archive)
    assert sorted(files) == sorted(p.image_id for p in world.of(OWNER))
    for photo in world.of(OWNER):
        name, _ = files[photo.image_id]
        day = datetime.fromtimestamp(photo.graph["captured_at"] / 1000, UTC).date().isoformat()
        assert name == f"{day}/{photo.graph['sequence']}/{photo.image_id}.jpg"
        assert (archive / f"{day}.tar").exists()


def test_downloader_files_are_the_served_originals(archive: Path, world: World) -> None:
    files = _archived(archive)
    for photo in world.of(OWNER):
        _, got = files[photo.image_id]
        served = _server_bytes(world, photo.graph["thumb_original_url"])
        assert jpeg_data(got) == jpeg_data(served), photo.image_id
        # The original as uploaded (re-encoded only where the privacy filter blurred).
        uploaded = photo.path.read_bytes()
        assert served == uploaded or pixel_difference(served, uploaded) < 4.0, photo.image_id


def test_downloader_exif_matches_the_upload(archive: Path, world: World) -> None:
    files = _archived(archive)
    for photo in world.of(OWNER):
        _, got = files[photo.image_id]
        written, uploaded = exif(got), exif(photo.path.read_bytes())
        assert (written["make"], written["model"]) == (uploaded["make"], uploaded["model"])
        assert written["datetime"] == uploaded["datetime"], (written, uploaded)
        assert int(written["subsec"]) == photo.graph["captured_at"] % 1000
        # Positions as the tool writes them (degrees, minutes, 1/100 seconds: ~0.3 m).
        assert math.dist((written["lon"], written["lat"]),
                         (uploaded["lon"], uploaded["lat"])) < 1e-5, (written, uploaded)
        assert written["heading"] == pytest.approx(uploaded["heading"], abs=0.01)
        assert written["altitude"] == pytest.approx(uploaded["altitude"], abs=0.01)


def test_downloader_marks_the_panorama(archive: Path, world: World) -> None:
    files = _archived(archive)
    for photo in world.of(OWNER):
        _, got = files[photo.image_id]
        xmp = [seg for marker, seg in _segments(got)
               if marker == 0xE1 and b"http://ns.adobe.com/xap/1.0/" in seg[:40]]
        if photo.graph["is_pano"]:
            assert xmp and b'GPano:ProjectionType="equirectangular"' in xmp[-1], photo.image_id
            assert f'GPano:FullPanoWidthPixels="{PANO_W}"'.encode() in xmp[-1]
        else:
            assert not any(b"GPano:ProjectionType" in seg for seg in xmp), photo.image_id
    assert sum(p.graph["is_pano"] for p in world.of(OWNER)) == 1


def test_downloader_metadata_file_is_the_graph_answer(archive: Path, world: World) -> None:
    with gzip.open(archive / "metadata.jsonl.gz", "rt") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    images = {row["id"]: row for row in rows if "id" in row}
    assert sorted(images) == sorted(p.image_id for p in world.of(OWNER))
    for photo in world.of(OWNER):
        row = images[photo.image_id]
        for name in ("captured_at", "sequence", "geometry", "is_pano", "width", "height",
                     "make", "model", "thumb_original_url"):
            assert row[name] == photo.graph[name], (name, row, photo.graph)


def test_downloader_follows_paging(downloader_python: Path, world: World,
                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    """With at most 2 images per search page the same user comes in three pages."""
    root = tmp_path_factory.mktemp("paged")
    with live_server(world.server.data_dir, root / "server.log", cwd=root,
                     env={"WAYVIEW_SEARCH__MAX_LIMIT": "2"}) as paged:
        collection, _ = _run_downloader(downloader_python, paged, world.client_token, root)
        log = paged.log_path.read_text()
    files = _archived(collection)
    assert sorted(files) == sorted(p.image_id for p in world.of(OWNER))
    pages = [line for line in log.splitlines() if "GET /images?" in line]
    assert len(pages) == 3, pages
    assert all(" 200 " in line for line in pages), pages
    for photo in world.of(OWNER):
        _, got = files[photo.image_id]
        assert jpeg_data(got) == jpeg_data(photo.path.read_bytes()) or \
            jpeg_data(got) == jpeg_data(_server_bytes(world, photo.graph["thumb_original_url"]))


# -- mapillary-dl -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def area(dl_python: Path, world: World, tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[Path, str]:
    """`mapillary-dl --bbox … --output-dir out`, answering its confirmation with `y`."""
    folder = tmp_path_factory.mktemp("mapillary-dl")
    output = run_client([str(dl_python.parent / "mapillary-dl"), "--bbox",
                         ",".join(map(str, BBOX)), "--output-dir", str(folder / "out")],
                        base=world.server.base_url, cwd=folder, stdin="y\n",
                        MAPILLARY_CLIENT_TOKEN=world.client_token)
    return folder / "out", output


def test_dl_gets_every_image_in_the_area(area: tuple[Path, str], world: World) -> None:
    out, output = area
    assert "Failed Downloads:      0" in output, output[-3000:]
    files = sorted(p.stem for p in (out / "images").glob("*.jpg"))
    assert files == sorted(p.image_id for p in world.photos), output[-3000:]
    assert not list((out / "images").glob("*.tmp"))


def test_dl_files_are_the_served_2048_thumbnails(area: tuple[Path, str], world: World) -> None:
    out, _ = area
    for photo in world.photos:
        got = (out / "images" / f"{photo.image_id}.jpg").read_bytes()
        served = _server_bytes(world, photo.graph["thumb_2048_url"])
        assert jpeg_data(got) == jpeg_data(served), photo.image_id
        # Never upscaled: the photos are at most 2048 wide, so the thumbnail has their size,
        # and it shows the uploaded picture.
        with PILImage.open(io.BytesIO(got)) as image:
            assert image.size == (photo.graph["width"], photo.graph["height"])
        assert pixel_difference(got, photo.path.read_bytes()) < 6.0, photo.image_id


def test_dl_writes_the_positions(area: tuple[Path, str], world: World) -> None:
    out, _ = area
    for photo in world.photos:
        written = exif((out / "images" / f"{photo.image_id}.jpg").read_bytes())
        lon, lat = photo.graph["geometry"]["coordinates"]
        assert math.dist((written["lon"], written["lat"]), (lon, lat)) < 1e-6, written
        uploaded = exif(photo.path.read_bytes())
        assert math.dist((written["lon"], written["lat"]),
                         (uploaded["lon"], uploaded["lat"])) < 1e-5, (written, uploaded)


def test_dl_database_lists_the_downloads(area: tuple[Path, str], world: World) -> None:
    import sqlite3

    out, _ = area
    with sqlite3.connect(out / "images.db") as db:
        rows = db.execute("SELECT id, lat, lon, downloaded FROM images").fetchall()
    assert sorted(r[0] for r in rows) == sorted(p.image_id for p in world.photos)
    assert all(r[3] == 1 for r in rows), rows
