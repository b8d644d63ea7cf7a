"""Browser: the iD editor (npm `@openstreetmap/id`) against a live wayview, offline (spec §10.4).

iD's own npm build is served on loopback by `tests/browser/id/idsite.py` with its Mapillary
constants, MapillaryJS's graph endpoint, its CDN data and the OSM API rewritten to loopback while
serving (node_modules stays untouched). Headless Debian Chromium, driven by Playwright, opens it
with every non-loopback request aborted and checks what an iD user sees with the three Mapillary
overlays on (`photo_overlay=mapillary,mapillary-signs,mapillary-map-features`):

- image markers and sequence lines from our `mly1_public` tiles, one marker per seeded image;
- the traffic sign and the point drawn with iD's Mapillary sprites;
- a click on a marker opens iD's embedded MapillaryJS viewer on that image (`photo=mapillary/<id>`
  in the URL hash), its attribution shows the creator's username, and iD's request for the
  image's detections (`//{id}/detections`, token in the query) is answered 200;
- a click on the sign asks for the sign's detections and moves the viewer to the image of the
  newest one (spec §3.4).

The world: one user, iD's own client token registered as a read-only app, two sequences of real
JPEGs brought in with `wayview import`, a sign and a point with detections (store API).
Screenshots go to `artifacts/browser/id-*.png`.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from tests.acceptance.live import (
    LiveServer,
    clean_env,
    live_server,
    wayview,
    wayview_json,
)
from tests.browser.harness import launch_chromium, need, offline_context, screenshot
from tests.browser.id import idsite

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser-id")]

WAIT_S = 30.0
#: Off-loopback hosts iD contacts at start-up that the test leaves unanswered (aborted): Bing
#: imagery metadata (asked even with `background=none`) and taginfo (tag suggestions).
HARMLESS_HOSTS = {"dev.virtualearth.net", "taginfo.openstreetmap.org"}

START = datetime(2022, 6, 1, 9, 30, 0, tzinfo=UTC)
LON0, LAT0 = 13.19100, 55.70470
STEP_DEG = 0.00015  # ~9.4 m: markers ~28 px apart at z18
USERNAME = "ida_mapper"
#: Sequence "east": five photos heading east along LAT0; "north": three photos heading north,
#: starting about 14 m east and 11 m north of its end. All in one z14 tile and in view at z18.
LINES = {
    "east": [(LON0 + k * STEP_DEG, LAT0, 90.0) for k in range(5)],
    "north": [(LON0 + 5.5 * STEP_DEG, LAT0 + 0.0001 + k * 0.0001, 0.0) for k in range(3)],
}
SIGN_VALUE = "regulatory--stop--g1"
POINT_VALUE = "object--street-light"
BOX = ((0.40, 0.30), (0.60, 0.30), (0.60, 0.55), (0.40, 0.55))
DETECTION_CREATED_MS = 1_654_077_000_000


@dataclass
class World:
    """The seeded data and the live server serving it."""

    server: LiveServer
    images: dict[str, list[str]]  # line name -> image ids in capture order
    sequences: dict[str, str]  # line name -> sequence id
    sign_id: str
    point_id: str

    @property
    def base(self) -> str:
        return self.server.base_url


async def _add_features(data_dir: Path, sequences: dict[str, str]) -> dict[str, Any]:
    """Image ids per line; a stop sign seen in east[1] and east[3], a street light seen in
    east[2], with their detections (store API)."""
    from wayview.model.entities import Detection, ImageSearch, MapFeature
    from wayview.settings import Settings
    from wayview.testing import open_test_store

    settings = Settings(_env_file=None, data_dir=data_dir)  # type: ignore[call-arg]
    async with open_test_store(settings) as store:
        lines = {}
        for name, sequence_id in sequences.items():
            page = await store.search_images(ImageSearch(sequence_ids=(sequence_id,)))
            lines[name] = sorted(page.items, key=lambda im: (im.captured_at_ms, im.id))
        east = lines["east"]
        sign_id, point_id = await store.reserve_ids("map_feature", 2)
        await store.insert_map_features([
            MapFeature(id=sign_id, object_value=SIGN_VALUE, object_type="trafficsign",
                       lon=LON0 + 2.5 * STEP_DEG, lat=LAT0 + 0.00006,
                       first_seen_at_ms=east[1].captured_at_ms,
                       last_seen_at_ms=east[3].captured_at_ms),
            MapFeature(id=point_id, object_value=POINT_VALUE, object_type="point",
                       lon=LON0 + 2 * STEP_DEG, lat=LAT0 - 0.00006,
                       first_seen_at_ms=east[2].captured_at_ms,
                       last_seen_at_ms=east[2].captured_at_ms),
        ])
        pairs = [(east[1].id, sign_id, SIGN_VALUE), (east[3].id, sign_id, SIGN_VALUE),
                 (east[2].id, point_id, POINT_VALUE)]
        ids = await store.reserve_ids("detection", len(pairs))
        await store.insert_detections([
            Detection(id=det, image_id=image, value=value, geometry=(BOX,),
                      created_at_ms=DETECTION_CREATED_MS + k * 1000, map_feature_id=feature)
            for k, (det, (image, feature, value)) in enumerate(zip(ids, pairs, strict=True))
        ])
    return {"images": {name: [str(im.id) for im in line] for name, line in lines.items()},
            "sign_id": str(sign_id), "point_id": str(point_id)}


def _seed(root: Path) -> Iterator[World]:
    """A user, iD's client token as a read-only app, two imported sequences of real JPEGs, a
    sign and a point with detections; then a live server (stops when the generator closes)."""
    from wayview.fixtures import write_jpeg

    data = root / "data"
    wayview_json("users", "create", USERNAME, data_dir=data, cwd=root)
    wayview_json("apps", "create", "iD editor", "--owner", USERNAME, "--scope", "read",
                 "--client-token", idsite.ID_CLIENT_TOKEN, data_dir=data, cwd=root)
    k = 0
    for name, line in LINES.items():
        for n, (lon, lat, heading) in enumerate(line):
            offset = timedelta(hours=1 if name == "north" else 0, seconds=2 * n)
            write_jpeg(root / "photos" / f"IMG_{k:04d}.jpg", width=1024, height=768, lat=lat,
                       lon=lon, captured_at=START + offset, compass_deg=heading,
                       altitude_m=20.0, seed=k, label=f"{name} {n}")
            k += 1
    report = json.loads(wayview("import", str(root / "photos"), "--user", USERNAME, "--json",
                                data_dir=data, cwd=root).strip().splitlines()[-1])
    assert report["imported"] == k and len(report["sequences"]) == 2, report
    sequences = {"east" if s["image_count"] == len(LINES["east"]) else "north": s["id"]
                 for s in report["sequences"]}
    assert sorted(sequences) == ["east", "north"], report
    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API may already run an event loop
        seeded = pool.submit(asyncio.run, _add_features(data, sequences)).result()
    with live_server(data, root / "server.log", cwd=root) as server, \
            httpx.Client(base_url=server.base_url, trust_env=False, timeout=10) as http:
        r = http.get(f"/{seeded['sign_id']}", params={"fields": "id,object_value"},
                     headers={"Authorization": f"OAuth {idsite.ID_CLIENT_TOKEN}"})
        assert r.status_code == 200, (r.text, server.log_tail())
        yield World(server=server, images=seeded["images"], sequences=sequences,
                    sign_id=seeded["sign_id"], point_id=seeded["point_id"])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield from _seed(tmp_path_factory.mktemp("id-editor"))


@pytest.fixture(scope="module")
def id_packages() -> None:
    """node_modules of tests/browser/id, from its lock file (`npm ci` when missing or stale)."""
    npm = shutil.which("npm")
    need(npm is not None and shutil.which("node") is not None,
         "node and npm are needed to install iD (Debian packages nodejs, npm); not on PATH")
    assert npm is not None
    idsite.ensure_installed(npm, clean_env())
    id_version = idsite.package_version(idsite.ID_PACKAGE)
    assert id_version.startswith("2.42."), id_version
    # iD copies MapillaryJS into its dist at build time; the pinned package must be that one.
    expected = json.loads((idsite.ID_PACKAGE / "package.json").read_text())
    expected_mly = expected["devDependencies"]["mapillary-js"]
    assert idsite.package_version(idsite.MAPILLARY_PACKAGE) == expected_mly
    assert ((idsite.ID_DIST / "mapillary-js" / "mapillary.js").read_bytes()
            == (idsite.MAPILLARY_DIST / "mapillary.js").read_bytes())


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium(web_build=False)  # iD brings its own front-end


def test_rewrites_find_their_literals(id_packages: None) -> None:
    """Guard (no browser): the literals the site rewrites are where iD 2.42 has them, so an
    upgrade that moves them fails here instead of silently calling the hosted service."""
    text = (idsite.ID_DIST / "iD.min.js").read_text()
    out = idsite.rewrite_id(text, "http://127.0.0.1:1", "http://127.0.0.1:2")
    assert '"http://127.0.0.1:1/"' in out and '"http://127.0.0.1:1/maps/vtp"' in out
    assert "http://127.0.0.1:1/image_ids?sequence_id=" in out
    mly = idsite.rewrite_mapillary((idsite.MAPILLARY_DIST / "mapillary.js").read_text(),
                                   "http://127.0.0.1:1")
    assert "graph.mapillary.com" not in mly


# -- the browser run ------------------------------------------------------------------------


@dataclass
class Traffic:
    """What the page sent: wayview responses (URL as sent, status), aborted off-loopback
    requests, page errors."""

    wayview: list[tuple[str, int]] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def matching(self, pattern: str) -> list[tuple[str, int]]:
        return [(u, s) for u, s in self.wayview if re.search(pattern, u)]


def _poll(page: Any, what: str, check: Callable[[], Any], timeout: float = WAIT_S) -> Any:
    """Call `check` until it returns something truthy (bounded); its value. Waits through the
    page, so Playwright dispatches the page's events (responses) in between."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        page.wait_for_timeout(250)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {value!r}")


#: Tags every drawn Mapillary thing with the id iD bound to it (d3 keeps data in `__data__`), so
#: the test can compare with the seeded ids and click a given one.
TAG_IDS = """() => {
  const out = {};
  for (const [name, sel] of Object.entries({
      images: '.layer-mapillary .viewfield-group',
      sequences: '.layer-mapillary .sequence',
      signs: '.layer-mapillary-signs .icon-sign',
      points: '.layer-mapillary-map-features .icon-map-feature'})) {
    out[name] = [...document.querySelectorAll(sel)].map(el => {
      const d = el.__data__ || {};
      const id = String(name === 'sequences' ? d.properties.id : d.id);
      el.setAttribute('data-wv-id', id);
      const use = el.querySelector('use');
      return {id, sprite: use ? use.getAttribute('href') || use.getAttribute('xlink:href') : null};
    });
  }
  return out;
}"""


def _drawn(page: Any) -> dict[str, list[dict[str, Any]]]:
    return dict(page.evaluate(TAG_IDS))


def test_id_shows_and_opens_wayview_imagery(id_packages: None, browser: Any,
                                            world: World) -> None:
    traffic = Traffic()
    wayview_origin = urlsplit(world.base).netloc
    with idsite.id_site(world.base) as site:
        context, offline = offline_context(browser, viewport={"width": 1280, "height": 800})
        traffic.blocked = offline.blocked  # the aborted off-loopback requests, as they come
        # A first visit shows the welcome splash over the map: mark it seen, as a returning
        # user would have it.
        context.add_init_script("localStorage.setItem('sawSplash', 'true');")
        page = context.new_page()
        page.on("pageerror", lambda exc: traffic.errors.append(str(exc)))
        page.on("response", lambda resp: traffic.wayview.append((resp.url, resp.status))
                if urlsplit(resp.url).netloc == wayview_origin else None)
        try:
            _run(page, site, world, traffic)
        except AssertionError as exc:
            screenshot(page, "id-failure")
            raise AssertionError(
                f"{exc}\nblocked: {traffic.blocked}\npage errors: {traffic.errors}\n"
                f"wayview responses: {traffic.wayview[-30:]}\n"
                f"site 404s: {[s.path for s in site.served if s.status != 200]}\n"
                f"server log:\n{world.server.log_tail()}") from exc
        finally:
            context.close()


def _run(page: Any, site: idsite.IdSite, world: World, traffic: Traffic) -> None:
    east, north = world.images["east"], world.images["north"]
    lon, lat = LON0 + 2.5 * STEP_DEG, LAT0 + 0.0001
    page.goto(f"{site.base_url}/index.html#background=none&map=18.00/{lat:.6f}/{lon:.6f}"
              "&photo_overlay=mapillary,mapillary-signs,mapillary-map-features",
              wait_until="load")

    # Markers (one per seeded image, all in view), the two sequence lines, the two icons.
    def overlays() -> dict[str, list[dict[str, Any]]] | None:
        drawn = _drawn(page)
        ok = (len(drawn["images"]) == len(east) + len(north) and len(drawn["sequences"]) == 2
              and drawn["signs"] and drawn["points"])
        return drawn if ok else None

    drawn = _poll(page, "the Mapillary markers, sequences, signs and points", overlays)
    assert sorted(d["id"] for d in drawn["images"]) == sorted(east + north)
    assert sorted(d["id"] for d in drawn["sequences"]) == sorted(world.sequences.values())
    assert [(d["id"], d["sprite"]) for d in drawn["signs"]] == [(world.sign_id, f"#{SIGN_VALUE}")]
    assert [(d["id"], d["sprite"]) for d in drawn["points"]] == [
        (world.point_id, f"#{POINT_VALUE}")]
    # The icons are iD's own sprites (img/mapillary-sprite.svg, 8 MB, and
    # img/mapillary-object-sprite.svg), fetched into the page's defs when the overlays are on.
    for value in (SIGN_VALUE, POINT_VALUE):
        _poll(page, f"the sprite #{value} in the page",
              lambda value=value: page.locator(f"svg defs [id='{value}']").count() >= 1)
    tiles = traffic.matching(r"/maps/vtp/")
    for tileset in ("mly1_public", "mly_map_feature_traffic_sign", "mly_map_feature_point"):
        got = [(u, s) for u, s in tiles if f"/maps/vtp/{tileset}/2/14/" in u]
        assert got and all(s == 200 for _, s in got), (tileset, tiles)
    screenshot(page, "id-overlays")

    # Click the middle marker of the east line: iD's viewer opens on it.
    target = east[2]
    page.locator(f".layer-mapillary .viewfield-group[data-wv-id='{target}'] circle").click()
    _poll(page, f"photo=mapillary/{target} in the URL hash",
          lambda: f"photo=mapillary/{target}" in page.evaluate("location.hash"))
    viewer = page.locator("#ideditor-mly")
    assert viewer.is_visible()
    _poll(page, "the creator's username in the viewer's attribution",
          lambda: USERNAME in (page.locator(".mapillary-attribution-username").all_inner_texts()
                               or [""])[0])
    # With the signs overlay on, iD asks for the image's detections (apiUrl ends in "/").
    detections = _poll(page, f"iD's //{target}/detections request", lambda: traffic.matching(
        rf"//{target}/detections\?access_token=MLY\|.*&fields=id,image,geometry,value$"))
    assert all(status == 200 for _, status in detections), detections
    # The server saw it too (its access log shows the normalised path, token redacted).
    _poll(page, "the detections request in the server log", lambda: re.search(
        rf"GET /{target}/detections\?access_token=\[redacted\]&fields=id,image,geometry,value 200 ",
        world.server.log_path.read_text(errors="replace")))
    # MapillaryJS drew the frame from our thumbnails/tiles (no failing image requests).
    assert not [u for u, s in traffic.wayview if s >= 400], traffic.wayview
    _poll(page, "the viewer's canvas", lambda: page.locator("#ideditor-mly canvas").count() > 0)
    page.wait_for_timeout(1000)  # let the frame settle for the screenshot
    screenshot(page, "id-viewer")

    # Click the stop sign: iD asks for its detections and opens the image of the newest one.
    _drawn(page)  # (re)tag what iD drew after the map moved to the image
    page.locator(f".layer-mapillary-signs .icon-sign[data-wv-id='{world.sign_id}']").click()
    newest = east[3]
    feature_detections = _poll(page, f"iD's //{world.sign_id}/detections request",
                               lambda: traffic.matching(rf"//{world.sign_id}/detections\?"
                                                        r"access_token=MLY\|.*&fields=id,value,image$"))
    assert all(status == 200 for _, status in feature_detections), feature_detections
    _poll(page, f"photo=mapillary/{newest} after clicking the sign",
          lambda: f"photo=mapillary/{newest}" in page.evaluate("location.hash"))
    page.wait_for_timeout(1500)  # let the viewer's transition end for the screenshot
    screenshot(page, "id-sign")

    # iD ran on what the site served from node_modules: MapillaryJS (rewritten), the tagging
    # schema and the name-suggestion index in place of the CDN (the community index and the
    # Wikipedia site matrix are served too, but only asked for by panes this test leaves
    # closed), and the OSM API stub.
    served = " ".join(sorted({s.path for s in site.served}))
    for prefix in ("/mapillary-js/mapillary.js", "/mapillary-js/mapillary.css",
                   "/npm/@openstreetmap/id-tagging-schema@", "/npm/name-suggestion-index@",
                   "/osm/api/0.6/map.json"):
        assert site.paths(prefix), f"nothing served under {prefix}; served: {served}"

    # Offline: the only requests that left loopback (and were aborted) are to services this
    # test does not stub, which iD asks at start-up and does without.
    assert {urlsplit(u).hostname for u in traffic.blocked} <= HARMLESS_HOSTS, traffic.blocked
    assert not traffic.errors, traffic.errors


def test_id_draws_the_stop_sign_the_pipeline_found_in_lund(id_packages: None, browser: Any,
                                                           world: World) -> None:
    """The real Lund photos, imported with the CLI into the running server's data: the
    pipeline's own detections make the stop-sign map feature, and iD's traffic-sign overlay
    draws it with its sprite (issue #15's real-client check)."""
    from tests.conftest import shared_path

    lund = shared_path("data", "opensfm_lund", "images")
    report = json.loads(wayview("import", str(lund), "--user", USERNAME, "--json",
                                data_dir=world.server.data_dir,
                                cwd=world.server.data_dir.parent).strip().splitlines()[-1])
    assert report["imported"] == 29, report
    with httpx.Client(base_url=world.base, trust_env=False, timeout=10) as http:
        r = http.get("/map_features", params={
            "bbox": "13.190,55.697,13.200,55.702", "object_values": SIGN_VALUE,
            "fields": "id,geometry"},
            headers={"Authorization": f"OAuth {idsite.ID_CLIENT_TOKEN}"})
    assert r.status_code == 200, r.text
    [feature] = r.json()["data"]
    lon, lat = feature["geometry"]["coordinates"]
    with idsite.id_site(world.base) as site:
        context, offline = offline_context(browser, viewport={"width": 1280, "height": 800})
        context.add_init_script("localStorage.setItem('sawSplash', 'true');")
        page = context.new_page()
        try:
            page.goto(f"{site.base_url}/index.html#background=none&map=18.00/{lat:.6f}/"
                      f"{lon:.6f}&photo_overlay=mapillary,mapillary-signs", wait_until="load")
            signs = _poll(page, "the Lund stop sign on iD's traffic-sign overlay",
                          lambda: [d for d in _drawn(page)["signs"] if d["id"] == feature["id"]])
            assert [d["sprite"] for d in signs] == [f"#{SIGN_VALUE}"]
            screenshot(page, "id-lund-stop-sign")
        except AssertionError:
            screenshot(page, "id-lund-failure")
            raise
        finally:
            context.close()
