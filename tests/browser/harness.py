"""tests.browser.harness: a seeded live wayview and Debian's Chromium driven by Playwright, offline.

The browser runs headless with SwiftShader for WebGL (MapLibre and MapillaryJS need it). Every
request that does not go to a loopback address is aborted and recorded, so a test that passes
proves the pages work with the network cut off. Outside CI a missing Chromium or an unbuilt
front-end skips with a reason; with `CI` set they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from tests.acceptance.live import REPO, LiveServer, live_server, wayview, wayview_json

CHROMIUM = Path(os.environ.get("WAYVIEW_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # WebGL without a GPU (spec §10.3).
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
]
ARTIFACTS = REPO / "artifacts" / "browser"
MANIFEST = REPO / "src" / "wayview" / "api" / "static" / "dist" / "manifest.json"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
WAIT_MS = 45_000

START = datetime(2022, 6, 1, 9, 30, 0, tzinfo=UTC)
LON0, LAT0 = 13.19100, 55.70470
STEP_DEG = 0.00015  # ~9.4 m: markers ~28 px apart at z18
PHOTOS = 5
USERNAME = "frida"
SIGN_VALUE = "regulatory--stop--g1"
POINT_VALUE = "object--street-light"


def need(condition: bool, reason: str) -> None:
    """Skip with `reason` unless the condition holds; fail instead when `CI` is set."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this fails instead of skipping)")
    pytest.skip(reason)


@dataclass
class World:
    """The seeded data and the live server serving it."""

    server: LiveServer
    client_token: str
    sequence_id: str
    image_ids: list[str]  # capture order
    positions: list[tuple[float, float]]  # (lon, lat) per image
    sign_id: str
    point_id: str
    #: With `seed_world(revisit=True)`: a second sequence over the same street two years
    #: later, by REVISITOR with another camera (REVISIT_MAKE), in capture order.
    revisit_ids: list[str] = field(default_factory=list)
    revisit_sequence_id: str = ""

    @property
    def base(self) -> str:
        return self.server.base_url


async def _add_features(data_dir: Path, sequence_id: str) -> tuple[int, int]:
    """One traffic sign and one point beside the line, the sign's detection on the second
    photo (store API)."""
    from wayview.model.entities import Detection, ImageSearch, MapFeature
    from wayview.settings import Settings
    from wayview.testing import open_test_store

    settings = Settings(_env_file=None, data_dir=data_dir)  # type: ignore[call-arg]
    async with open_test_store(settings) as store:
        page = await store.search_images(ImageSearch(sequence_ids=(sequence_id,), limit=100))
        seen = sorted(im.captured_at_ms for im in page.items)
        sign_id, point_id = await store.reserve_ids("map_feature", 2)
        await store.insert_map_features([
            MapFeature(id=sign_id, object_value=SIGN_VALUE, object_type="trafficsign",
                       lon=LON0 + 1.5 * STEP_DEG, lat=LAT0 + 0.00004,
                       first_seen_at_ms=seen[1], last_seen_at_ms=seen[2]),
            MapFeature(id=point_id, object_value=POINT_VALUE, object_type="point",
                       lon=LON0 + 3.5 * STEP_DEG, lat=LAT0 - 0.00004,
                       first_seen_at_ms=seen[3], last_seen_at_ms=seen[3]),
        ])
        second = min(page.items, key=lambda im: im.captured_at_ms if im.captured_at_ms > seen[0]
                     else 2**62)
        (detection_id,) = await store.reserve_ids("detection", 1)
        await store.insert_detections([Detection(
            id=detection_id, image_id=second.id, value=SIGN_VALUE, geometry=(DETECTION_RING,),
            created_at_ms=seen[1], map_feature_id=sign_id)])
    return sign_id, point_id


#: The sign's detection on the second photo: a box in the middle-right, normalised.
DETECTION_RING = ((0.55, 0.35), (0.7, 0.35), (0.7, 0.55), (0.55, 0.55))


REVISITOR = "gustav"
REVISIT_MAKE, REVISIT_MODEL = "OtherCam", "X2"
REVISIT_START = datetime(2024, 9, 15, 14, 0, 0, tzinfo=UTC)


def seed_world(root: Path, *, revisit: bool = False) -> Iterator[World]:
    """A user, an app, one sequence of real JPEGs imported by the CLI, two map features; then a
    live server. With `revisit`, a second user drives the same street two years later with
    another camera (1 m to the north). A generator: the server stops when it is closed."""
    from wayview.fixtures import write_jpeg

    data = root / "data"
    wayview_json("users", "create", USERNAME, data_dir=data, cwd=root)
    app = wayview_json("apps", "create", "browser tests", "--owner", USERNAME, "--scope", "read",
                       data_dir=data, cwd=root)
    positions = [(LON0 + k * STEP_DEG, LAT0) for k in range(PHOTOS)]
    for k, (lon, lat) in enumerate(positions):
        write_jpeg(root / "photos" / f"IMG_{k:04d}.jpg", width=1024, height=768, lat=lat,
                   lon=lon, captured_at=START + timedelta(seconds=2 * k), compass_deg=90.0,
                   altitude_m=20.0, seed=k, label=str(k))
    report = json.loads(wayview("import", str(root / "photos"), "--user", USERNAME, "--json",
                                data_dir=data, cwd=root).strip().splitlines()[-1])
    assert report["imported"] == PHOTOS and len(report["sequences"]) == 1, report
    sequence_id = report["sequences"][0]["id"]
    revisit_sequence = ""
    if revisit:
        wayview_json("users", "create", REVISITOR, data_dir=data, cwd=root)
        for k, (lon, lat) in enumerate(positions):
            write_jpeg(root / "revisit" / f"IMG_{k:04d}.jpg", width=1024, height=768,
                       lat=lat + 0.00001, lon=lon, make=REVISIT_MAKE, model=REVISIT_MODEL,
                       captured_at=REVISIT_START + timedelta(seconds=2 * k), compass_deg=90.0,
                       altitude_m=20.0, seed=100 + k, label=f"2024 {k}")
        again = json.loads(wayview("import", str(root / "revisit"), "--user", REVISITOR,
                                   "--json", data_dir=data, cwd=root).strip().splitlines()[-1])
        assert again["imported"] == PHOTOS and len(again["sequences"]) == 1, again
        revisit_sequence = again["sequences"][0]["id"]
    # In a thread of its own: Playwright's sync API may already run an event loop here.
    with ThreadPoolExecutor(1) as pool:
        sign_id, point_id = pool.submit(asyncio.run, _add_features(data, sequence_id)).result()
    with live_server(data, root / "server.log", cwd=root) as server, \
            httpx.Client(trust_env=False, timeout=10) as http:
        r = http.get(f"{server.base_url}/images", params={
            "sequence_ids": sequence_id, "fields": "id,captured_at"},
            headers={"Authorization": f"OAuth {app['client_token']}"})
        assert r.status_code == 200, r.text
        rows = r.json()["data"]
        assert len(rows) == PHOTOS, rows
        revisit_ids: list[str] = []
        if revisit:
            r = http.get(f"{server.base_url}/images", params={
                "sequence_ids": revisit_sequence, "fields": "id"},
                headers={"Authorization": f"OAuth {app['client_token']}"})
            revisit_ids = [row["id"] for row in r.json()["data"]]
            assert len(revisit_ids) == PHOTOS, r.text
        yield World(server=server, client_token=app["client_token"], sequence_id=sequence_id,
                    image_ids=[row["id"] for row in rows], positions=positions,
                    sign_id=str(sign_id), point_id=str(point_id), revisit_ids=revisit_ids,
                    revisit_sequence_id=revisit_sequence)


@dataclass
class Offline:
    """Requests the browser tried to send off loopback (all aborted)."""

    blocked: list[str] = field(default_factory=list)


def offline_context(browser: Any, **options: Any) -> tuple[Any, Offline]:
    """A browser context that aborts every request leaving loopback."""
    context = browser.new_context(**options)
    offline = Offline()

    def handle(route: Any) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.hostname not in LOOPBACK:
            offline.blocked.append(url)
            route.abort("internetdisconnected")
            return
        route.continue_()

    context.route("**/*", handle)
    return context, offline


@contextlib.contextmanager
def third_party_site(pages: dict[str, str], *, content_type: str = "text/html; charset=utf-8",
                     cors: bool = False) -> Iterator[str]:
    """A tiny web server on a loopback port of its own answering `pages` (path → body): the
    "other site" that embeds /embed in an iframe, or serves an operator's map style
    (`content_type`, and `cors` to allow cross-origin reads as style servers do). A path is
    looked up with its query, then without (a geocoder's `/search?q=…`). Its base URL
    uses `localhost`, so it is another origin than the wayview server's `127.0.0.1`."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = pages.get(self.path, pages.get(self.path.split("?", 1)[0]))
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", content_type)
            if cors:
                self.send_header("Access-Control-Allow-Origin", "*")
            data = (body or "not found").encode("utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def watched_page(browser: Any, width: int, height: int) -> tuple[Any, Any, list[str], Offline]:
    """An offline context and a page at `width` × `height` whose errors (uncaught exceptions,
    console errors) are collected: (context, page, errors, offline)."""
    context, offline = offline_context(browser, viewport={"width": width, "height": height})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    return context, page, errors, offline


def address_query(page: Any) -> dict[str, str]:
    """The page address's query parameters (first value of each)."""
    return {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}


def wait_app_loaded(page: Any) -> None:
    """Until /app's map has loaded its style and set its filters."""
    page.wait_for_function("() => window.wayview && window.wayview.mapLoaded", timeout=WAIT_MS)


def launch_chromium(*, web_build: bool = True) -> Iterator[Any]:
    """Headless Debian Chromium through Playwright (a generator: use it in a fixture with
    `yield from`); skips, or fails in CI, without Chromium or (when the test serves our own
    pages, `web_build`) the web build."""
    need(CHROMIUM.exists(), f"Chromium not found at {CHROMIUM} (Debian package `chromium`, "
                            "or set WAYVIEW_CHROMIUM)")
    if web_build:
        need(MANIFEST.exists(), "the front-end is not built (run `make install`, which runs "
                                "`npm ci && npm run build` in web/)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                      headless=True)
        try:
            yield instance
        finally:
            instance.close()


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot as artifacts/browser/<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
