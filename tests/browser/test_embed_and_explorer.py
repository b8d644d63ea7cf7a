"""Browser: the `/embed` page in its three styles inside an iframe, and the `/app` explorer
(issue #6), in headless Chromium with every non-loopback request aborted.

The world: one sequence of five real JPEGs imported with `wayview import`, a traffic sign and a
point beside it, served by a live `wayview serve`. The iframe's parent page lives on another
origin (`localhost` vs. `127.0.0.1`), as on a real third-party site. Screenshots go to
`artifacts/browser/`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.browser.harness import (
    POINT_VALUE,
    SIGN_VALUE,
    USERNAME,
    WAIT_MS,
    World,
    launch_chromium,
    offline_context,
    screenshot,
    seed_world,
    third_party_site,
)

pytestmark = [pytest.mark.slow]

VIEWPORT = {"width": 1100, "height": 700}
FRAME_W, FRAME_H = 900, 480


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield from seed_world(tmp_path_factory.mktemp("browser"))


def _frame_page(src: str) -> str:
    return (f'<!doctype html><html><body style="margin:0;background:#ccc">'
            f'<h1 style="font:16px sans-serif;margin:8px">A third-party page</h1>'
            f'<iframe id="embed" src="{src}" width="{FRAME_W}" height="{FRAME_H}" '
            f'style="border:0;display:block;margin:8px" allowfullscreen></iframe>'
            f'</body></html>')


class Session:
    """One page holding `/embed` in an iframe, with its errors and the blocked requests."""

    def __init__(self, browser: Any, world: World, site: str, style: str,
                 image_key: str) -> None:
        self.parent_url = f"{site}/{style}.html?image_key={image_key}"
        self.context, self.offline = offline_context(browser, viewport=VIEWPORT)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("request", lambda req: self.requests.append(req.url))
        self.page.goto(self.parent_url)
        self.page.wait_for_selector("iframe#embed")
        self.frame = self.page.frame_locator("iframe#embed")
        self.inner = self._inner_frame()

    def _inner_frame(self) -> Any:
        deadline = time.monotonic() + WAIT_MS / 1000
        while time.monotonic() < deadline:
            for frame in self.page.frames:
                if "/embed?" in frame.url:
                    return frame
            self.page.wait_for_timeout(100)
        raise AssertionError("the iframe never loaded /embed")

    def wait(self, expression: str, arg: Any = None) -> Any:
        return self.inner.wait_for_function(expression, arg=arg, timeout=WAIT_MS).json_value()

    def seen(self, image_id: str) -> None:
        """Wait until the viewer fired its image event for `image_id`."""
        self.wait("id => window.wayview && window.wayview.state.imageEvents.includes(id)",
                  image_id)

    def check_clean(self) -> None:
        """No page error, no request off loopback, no request to `undefined` (spec §10.3)."""
        assert not self.errors, f"page errors: {self.errors}"
        assert not self.offline.blocked, f"requests left loopback: {self.offline.blocked}"
        assert not [u for u in self.requests if u.endswith("undefined")], self.requests

    def click_marker(self, lon: float, lat: float) -> None:
        """A real mouse click on the map at (lon, lat)."""
        point = self.inner.evaluate(
            """([lon, lat]) => {
                const map = window.wayview.map;
                const p = map.project([lon, lat]);
                const box = map.getContainer().getBoundingClientRect();
                return {x: box.left + p.x, y: box.top + p.y};
            }""", [lon, lat])
        frame_box = self.page.locator("iframe#embed").bounding_box()
        self.page.mouse.click(frame_box["x"] + point["x"], frame_box["y"] + point["y"])

    def rendered_image_ids(self) -> set[str]:
        return set(self.inner.evaluate(
            "() => window.wayview.map.queryRenderedFeatures({layers: ['images']})"
            ".map(f => String(f.properties.id))"))

    def map_ready(self, image_id: str) -> None:
        """Wait until the map drew the image marker of `image_id` and the current-image dot."""
        self.wait("""id => {
            const w = window.wayview;
            if (!w || !w.mapLoaded || !w.map.loaded()) return false;
            const ids = w.map.queryRenderedFeatures({layers: ['images']}).map(f => String(f.properties.id));
            const current = w.map.queryRenderedFeatures({layers: ['current-image']});
            return ids.includes(id) && current.length > 0;
        }""", image_id)


@pytest.fixture(scope="module")
def site(world: World) -> Iterator[str]:
    """The third-party site: one page per style, each holding /embed in an iframe."""
    pages = {}
    for style in ("photo", "split", "classic"):
        for key in world.image_ids:
            src = f"{world.base}/embed?image_key={key}&style={style}"
            pages[f"/{style}.html?image_key={key}"] = _frame_page(src)
    with third_party_site(pages) as base:
        yield base


@pytest.fixture
def open_embed(browser: Any, world: World, site: str) -> Iterator[Any]:
    sessions: list[Session] = []

    def make(style: str, image_key: str) -> Session:
        sessions.append(Session(browser, world, site, style, image_key))
        return sessions[-1]

    yield make
    for session in sessions:
        session.context.close()


def _attribution(session: Session) -> tuple[str, str]:
    link = session.frame.locator(".mapillary-attribution-username")
    link.first.wait_for(timeout=WAIT_MS)
    text = link.first.inner_text()
    href = session.frame.locator("a.mapillary-attribution-image-container").first \
        .get_attribute("href")
    return text, href or ""


def test_embed_photo_shows_image_and_moves_along_the_sequence(open_embed: Any, world: World) -> None:
    session = open_embed("photo", world.image_ids[0])
    session.seen(world.image_ids[0])
    assert session.inner.evaluate("() => window.wayview.map") is None
    assert session.frame.locator("#map").count() == 0
    text, href = _attribution(session)
    assert USERNAME in text
    # The image's page on this server: the explorer opened on it.
    assert href == f"{world.base}/app/?pKey={world.image_ids[0]}&focus=photo"
    moved = session.inner.evaluate(
        "async () => (await window.wayview.viewer.moveDir(window.wayview.NavigationDirection.Next)).id")
    assert moved == world.image_ids[1]
    session.seen(world.image_ids[1])
    screenshot(session.page, "embed-photo")
    session.check_clean()


def test_embed_outlines_the_detections_of_the_photo(open_embed: Any, world: World) -> None:
    """MapillaryJS draws each detection of the current image (its base64 MVT geometry decoded
    in the page) as an outline tag on the photo; other photos have none."""
    from PIL import Image

    session = open_embed("photo", world.image_ids[1])
    session.seen(world.image_ids[1])
    drawn = session.wait("() => window.wayview.seen.detections.length > 0 && "
                         "window.wayview.seen.detections")
    assert [d["value"] for d in drawn] == [SIGN_VALUE]
    ring = drawn[0]["ring"]
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    assert (min(xs), min(ys), max(xs), max(ys)) == pytest.approx((0.55, 0.35, 0.7, 0.55),
                                                                abs=1 / 4096)
    assert session.inner.evaluate(
        "() => window.wayview.viewer.getComponent('tag').getAll().length") == 1
    time.sleep(1.0)  # let the WebGL frame with the tag render
    path = screenshot(session.page, "embed-detection")
    # The orange outline is on the screenshot, where the box lies inside the photo.
    image = Image.open(path).convert("RGB")
    orange = [(x, y) for x in range(0, image.width, 2) for y in range(0, image.height, 2)
              if _is_orange(image.getpixel((x, y)))]
    assert len(orange) > 50, "no detection outline on the screenshot"
    # Moving on: the next photo has no detection, its outline is gone.
    session.inner.evaluate(
        "async () => (await window.wayview.viewer.moveDir(window.wayview.NavigationDirection.Next)).id")
    session.wait("() => window.wayview.viewer.getComponent('tag').getAll().length === 0")
    session.check_clean()


def _is_orange(rgb: tuple[int, int, int]) -> bool:
    r, g, b = rgb
    return r > 220 and 80 < g < 150 and b < 60


def test_embed_split_map_follows_viewer_and_marker_click_moves_viewer(
        open_embed: Any, world: World) -> None:
    session = open_embed("split", world.image_ids[0])
    session.seen(world.image_ids[0])
    session.map_ready(world.image_ids[0])
    viewer_box = session.frame.locator("#viewer").bounding_box()
    map_box = session.frame.locator("#map").bounding_box()
    assert abs(viewer_box["width"] - map_box["width"]) <= 2, (viewer_box, map_box)
    assert abs(viewer_box["height"] - map_box["height"]) <= 2
    assert world.image_ids[0] in session.rendered_image_ids()

    # Moving in the viewer moves the map.
    moved = session.inner.evaluate(
        "async () => (await window.wayview.viewer.moveDir(window.wayview.NavigationDirection.Next)).id")
    assert moved == world.image_ids[1]
    lon1, lat1 = world.positions[1]
    session.wait("""([lon, lat]) => {
        const c = window.wayview.map.getCenter();
        return Math.abs(c.lng - lon) < 2e-5 && Math.abs(c.lat - lat) < 2e-5 && !window.wayview.map.isMoving();
    }""", [lon1, lat1])

    # Clicking another marker moves the viewer there.
    target = world.image_ids[3]
    session.wait("id => window.wayview.map.queryRenderedFeatures({layers: ['images']})"
                 ".some(f => String(f.properties.id) === id)", target)
    session.click_marker(*world.positions[3])
    session.seen(target)
    assert session.inner.evaluate("async () => (await window.wayview.viewer.getImage()).id") == target
    session.map_ready(target)
    screenshot(session.page, "embed-split")
    session.check_clean()


def test_embed_classic_switches_focus(open_embed: Any, world: World) -> None:
    session = open_embed("classic", world.image_ids[2])
    session.seen(world.image_ids[2])
    session.map_ready(world.image_ids[2])

    def sizes() -> tuple[float, float]:
        v = session.frame.locator("#viewer").bounding_box()
        m = session.frame.locator("#map").bounding_box()
        return v["width"] * v["height"], m["width"] * m["height"]

    viewer_area, map_area = sizes()
    assert viewer_area > 4 * map_area
    screenshot(session.page, "embed-classic-photo")
    session.frame.locator("#switch").click()
    session.wait("() => document.body.dataset.focus === 'map'")
    viewer_area, map_area = sizes()
    assert map_area > 4 * viewer_area
    # The large map still drives the small viewer.
    session.map_ready(world.image_ids[2])
    session.click_marker(*world.positions[4])
    session.seen(world.image_ids[4])
    screenshot(session.page, "embed-classic-map")
    session.frame.locator("#switch").click()
    session.wait("() => document.body.dataset.focus === 'photo'")
    viewer_area, map_area = sizes()
    assert viewer_area > 4 * map_area
    session.check_clean()


# -- /app ------------------------------------------------------------------------------------


@pytest.fixture
def explorer(browser: Any, world: World) -> Iterator[tuple[Any, list[str], Any]]:
    context, offline = offline_context(browser, viewport={"width": 1200, "height": 800},
                                       accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page, errors, offline
    assert not errors, f"page errors: {errors}"
    assert not offline.blocked, f"requests left loopback: {offline.blocked}"
    context.close()


def _open_explorer(page: Any, world: World) -> None:
    page.goto(f"{world.base}/app")
    page.wait_for_function("() => window.wayview && window.wayview.mapLoaded", timeout=WAIT_MS)
    lon = (world.positions[0][0] + world.positions[-1][0]) / 2
    page.evaluate("([lon, lat]) => window.wayview.map.jumpTo({center: [lon, lat], zoom: 17.5})",
                  [lon, world.positions[0][1]])


def _wait_layers(page: Any, counts: dict[str, int]) -> None:
    page.wait_for_function("""counts => {
        const map = window.wayview.map;
        if (!map.loaded()) return false;
        return Object.entries(counts).every(([layer, n]) => {
            const ids = new Set(map.queryRenderedFeatures({layers: [layer]}).map(f => f.properties.id));
            return ids.size === n;
        });
    }""", arg=counts, timeout=WAIT_MS)


def test_app_draws_coverage_and_features_and_opens_viewer(explorer: Any, world: World) -> None:
    page, _, _ = explorer
    _open_explorer(page, world)
    _wait_layers(page, {"images": len(world.image_ids), "points": 1, "signs": 1})
    assert page.evaluate("() => window.wayview.map.queryRenderedFeatures({layers: ['sequences']})"
                         ".length") >= 1
    # The sprites come from the Mapillary sprite package, rasterised in the page.
    for value in (SIGN_VALUE, POINT_VALUE):
        size = page.evaluate("v => { const i = window.wayview.map.getImage(v);"
                             " return i ? i.data.width : 0; }", value)
        assert size >= 28, value
    screenshot(page, "app-coverage")

    target = world.image_ids[2]
    point = page.evaluate("""([lon, lat]) => {
        const p = window.wayview.map.project([lon, lat]); return {x: p.x, y: p.y}; }""",
                          list(world.positions[2]))
    page.mouse.click(point["x"], point["y"])
    page.wait_for_function("id => window.wayview.state.imageEvents.includes(id)", arg=target,
                           timeout=WAIT_MS)
    assert page.locator("#viewer-panel").is_visible()
    screenshot(page, "app-viewer")


def test_app_date_filter_hides_other_dates(explorer: Any, world: World) -> None:
    page, _, _ = explorer
    _open_explorer(page, world)
    _wait_layers(page, {"images": len(world.image_ids)})
    page.fill("#from", "2023-01-01")
    page.dispatch_event("#from", "change")
    _wait_layers(page, {"images": 0, "signs": 0, "points": 0})
    page.fill("#from", "2022-06-01")
    page.fill("#to", "2022-06-01")
    page.dispatch_event("#to", "change")
    _wait_layers(page, {"images": len(world.image_ids), "signs": 1, "points": 1})


@pytest.mark.parametrize(("kind", "value", "which"), [
    ("signs", SIGN_VALUE, "sign_id"), ("points", POINT_VALUE, "point_id"),
])
def test_app_download_gives_geojson_of_visible_features(
        explorer: Any, world: World, tmp_path: Path, kind: str, value: str, which: str) -> None:
    page, _, _ = explorer
    _open_explorer(page, world)
    _wait_layers(page, {"points": 1, "signs": 1})
    page.select_option("#download-kind", kind)
    with page.expect_download(timeout=WAIT_MS) as info:
        page.click("#download")
    download = info.value
    assert download.suggested_filename.endswith(".geojson")
    target = tmp_path / download.suggested_filename
    download.save_as(str(target))
    collection = json.loads(target.read_text("utf-8"))
    assert collection["type"] == "FeatureCollection"
    assert len(collection["features"]) == 1, collection
    feature = collection["features"][0]
    assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Point"
    assert feature["properties"]["id"] == getattr(world, which)
    assert feature["properties"]["value"] == value
    lon, lat = feature["geometry"]["coordinates"]
    assert abs(lat - world.positions[0][1]) < 0.001
    assert world.positions[0][0] - 0.001 < lon < world.positions[-1][0] + 0.001

    # Panned away, nothing is visible, so nothing is downloaded.
    page.evaluate("() => window.wayview.map.jumpTo({center: [0, 0], zoom: 15})")
    page.wait_for_function("() => window.wayview.map.loaded()", timeout=WAIT_MS)
    empty = page.evaluate(f"() => window.wayview.visibleFeatures('{kind}')")
    assert empty == {"type": "FeatureCollection", "features": []}


def test_app_image_page_opens_the_viewer_on_the_image(explorer: Any, world: World) -> None:
    """The attribution link of the viewer, /app/?pKey=<id>&focus=photo, is the image's page."""
    page, _, _ = explorer
    target = world.image_ids[3]
    page.goto(f"{world.base}/app/?pKey={target}&focus=photo")
    page.wait_for_function("id => window.wayview && window.wayview.state.imageEvents.includes(id)",
                           arg=target, timeout=WAIT_MS)
    assert page.locator("#viewer-panel").is_visible()
    center = page.evaluate("() => window.wayview.map.getCenter().toArray()")
    assert abs(center[0] - world.positions[3][0]) < 1e-3
    assert abs(center[1] - world.positions[3][1]) < 1e-3
    screenshot(page, "app-image-page")
