"""tests.fuzz.world: a small demo world served by a real `wayview serve` on loopback, for fuzzing.

The data come in the public way: `prepare_demo` builds the demo city (users, organizations,
sequences through the importer, map features, detections) and keeps its client token; the CLI
issues a user token; one upload session is filled over HTTP so `/finish_upload` has a real handle
to chew on. The server runs with the request budgets off (the fuzzer sends far more than a
minute's worth) and its process ids are kept to read its memory from /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from tests.acceptance.live import REPO, LiveServer, live_server, wayview_json

from wayview.model.entities import DetectionSearch, ImageSearch, MapFeatureSearch
from wayview.settings import Settings

#: Budgets off: the fuzzer sends more than a minute's or a day's worth of requests (spec §9).
FUZZ_SERVER_ENV = {
    "WAYVIEW_RATE_LIMIT__GRAPH_PER_MINUTE": "0",
    "WAYVIEW_RATE_LIMIT__SEARCH_PER_MINUTE": "0",
    "WAYVIEW_RATE_LIMIT__TILES_PER_DAY": "0",
    "WAYVIEW_RATE_LIMIT__UPLOAD_PER_MINUTE": "0",
    "WAYVIEW_LOG_LEVEL": "warning",
}


@dataclass
class Known:
    """Values that exist in the world, mixed into generated requests to get past lookups."""

    image_ids: list[str] = field(default_factory=list)
    feature_ids: list[str] = field(default_factory=list)
    detection_ids: list[str] = field(default_factory=list)
    organization_ids: list[str] = field(default_factory=list)
    user_ids: list[str] = field(default_factory=list)
    usernames: list[str] = field(default_factory=list)
    sequence_ids: list[str] = field(default_factory=list)
    bboxes: list[str] = field(default_factory=list)
    tiles: list[tuple[int, int, int]] = field(default_factory=list)
    handles: list[str] = field(default_factory=list)

    @property
    def node_ids(self) -> list[str]:
        """Every node id (all types)."""
        return [*self.image_ids, *self.feature_ids, *self.detection_ids,
                *self.organization_ids, *self.user_ids]


@dataclass
class FuzzTarget:
    """A live server to fuzz: its URL, tokens, known values and process."""

    server: LiveServer
    client_token: str
    user_token: str
    upload_prefix: str
    known: Known

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def pids(self) -> list[int]:
        """The server process and its children (granian workers)."""
        root = self.server.process.pid
        return [root, *_children(root)]


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue
        # pid (comm) state ppid …: comm may hold spaces and parentheses.
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry))
            found.extend(_children(int(entry)))
    return found


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB, (0, 0) once it is gone."""
    values = {"VmRSS": 0, "VmHWM": 0}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                name, _, rest = line.partition(":")
                if name in values:
                    values[name] = int(rest.split()[0])
    except OSError:
        pass
    return values["VmRSS"], values["VmHWM"]


def _tile_xy(lon: float, lat: float, z: int) -> tuple[int, int]:
    import math

    n = 2**z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)


async def _known_values(settings: Settings, bbox: tuple[float, float, float, float]
                        ) -> Known:
    from wayview.testing import open_test_store

    known = Known()
    async with open_test_store(settings) as store:
        images = (await store.search_images(ImageSearch(bbox=bbox, limit=None))).items
        features = (await store.search_map_features(MapFeatureSearch(bbox=bbox))).items
        detections = (await store.search_detections(DetectionSearch(bbox=bbox))).items
        known.image_ids = [str(im.id) for im in images[:200]]
        known.sequence_ids = sorted({im.sequence_id for im in images})[:50]
        known.organization_ids = sorted({str(im.organization_id) for im in images
                                         if im.organization_id is not None})
        known.user_ids = sorted({str(im.creator_id) for im in images})
        known.usernames = sorted({im.creator_username for im in images if im.creator_username})
        known.feature_ids = [str(f.id) for f in features[:100]]
        known.detection_ids = [str(d.id) for d in detections[:100]]
        for im in images[:: max(1, len(images) // 8)]:
            known.bboxes.append(f"{im.lon - 0.002:.6f},{im.lat - 0.002:.6f},"
                                f"{im.lon + 0.002:.6f},{im.lat + 0.002:.6f}")
            for z in (0, 3, 6, 10, 13, 14):
                known.tiles.append((z, *_tile_xy(im.lon, im.lat, z)))
    west, south, east, north = bbox
    if (east - west) * (north - south) <= 0.01:
        known.bboxes.append(f"{west},{south},{east},{north}")
    known.tiles = sorted(set(known.tiles))
    return known


def _small_jpeg() -> bytes:
    from PIL import Image as PILImage

    out = io.BytesIO()
    PILImage.new("RGB", (64, 48), (90, 120, 150)).save(out, "JPEG", quality=70)
    return out.getvalue()


def _upload_handles(base_url: str, prefix: str, user_token: str) -> list[str]:
    """Fill two sessions (a JPEG, random bytes) and return their file handles."""
    handles = []
    auth = {"Authorization": f"OAuth {user_token}"}
    with httpx.Client(trust_env=False, timeout=30.0) as client:
        for key, body in (("fuzz_seed_image.jpg", _small_jpeg()),
                          ("fuzz_seed_bytes.zip", bytes(range(256)) * 2)):
            url = f"{base_url}{prefix}/{key}"
            held = client.get(url, headers=auth)  # a reused world holds the bytes already
            held.raise_for_status()
            offset = min(int(held.json()["offset"]), len(body))
            answer = client.post(url, content=body[offset:],
                                 headers={**auth, "Offset": str(offset)})
            answer.raise_for_status()
            handles.append(str(answer.json()["h"]))
    return handles


@contextlib.contextmanager
def fuzz_server(folder: Path, *, images: int = 120, seed: int = 7,
                env: dict[str, str] | None = None,
                database_url: str = "") -> Iterator[FuzzTarget]:
    """Build the demo world in `folder` (once; reused when already there) and serve it; with
    `database_url`, in that (empty) PostgreSQL database instead of SQLite."""
    from wayview.demo.command import prepare_demo

    data_dir = folder / "data"
    settings = Settings(_env_file=None, data_dir=data_dir,  # type: ignore[call-arg]
                        database_url=database_url)
    store_env = {"WAYVIEW_DATABASE_URL": database_url} if database_url else {}
    info, _, client_token, _ = asyncio.run(
        prepare_demo(settings, images=images, seed=seed, with_token=True))
    assert client_token is not None
    username = sorted(info.users)[0]
    user_token = str(wayview_json("tokens", "create", "--user", username, data_dir=data_dir,
                                  cwd=REPO, env=store_env)["access_token"])
    known = asyncio.run(_known_values(settings, info.bbox))
    server_env = {**FUZZ_SERVER_ENV, **store_env, **(env or {})}
    prefix = settings.upload.path_prefix
    with live_server(data_dir, folder / "server.log", cwd=REPO, env=server_env) as server:
        known.handles = _upload_handles(server.base_url, prefix, user_token)
        yield FuzzTarget(server, client_token, user_token, prefix, known)
