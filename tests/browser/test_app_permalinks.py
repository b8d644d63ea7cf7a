"""Browser: the /app explorer's address follows the view (issue #18 item 2: map position,
selected image `pKey`, date filters), a reload or a shared link shows the same, the site icon
answers (no console error), and at 375 × 812 the panel starts folded and the viewer takes the
lower half. Headless Chromium against a live `wayview serve`, every non-loopback request
aborted; screenshots at 1280 × 800 and 375 × 812 in artifacts/browser/."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image as PILImage
from tests.acceptance.live import live_server
from tests.browser.harness import (
    WAIT_MS,
    World,
    address_query,
    launch_chromium,
    screenshot,
    seed_world,
    third_party_site,
    wait_app_loaded,
    watched_page,
)

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield from seed_world(tmp_path_factory.mktemp("permalinks"))





def test_the_address_follows_the_view_and_brings_it_back(browser: Any, world: World) -> None:
    context, page, errors, offline = watched_page(browser, 1280, 800)
    lon, lat = world.positions[2]
    page.goto(f"{world.base}/app?lat={lat}&lng={lon}&z=17.5&dateFrom=2022-06-01"
              "&dateTo=2022-06-02")
    wait_app_loaded(page)
    center = page.evaluate("() => window.wayview.map.getCenter().toArray()")
    assert abs(center[0] - lon) < 1e-5 and abs(center[1] - lat) < 1e-5
    assert page.evaluate("() => window.wayview.map.getZoom()") == pytest.approx(17.5)
    assert page.input_value("#from") == "2022-06-01" and page.input_value("#to") == "2022-06-02"
    # Zoom and compass buttons, a scale bar and "where am I".
    page.click(".maplibregl-ctrl-zoom-in")
    page.wait_for_function("() => Math.abs(window.wayview.map.getZoom() - 18.5) < 1e-6",
                           timeout=WAIT_MS)
    assert page.locator(".maplibregl-ctrl-compass").is_visible()
    assert page.locator(".maplibregl-ctrl-geolocate").count() == 1
    assert page.locator(".maplibregl-ctrl-scale").inner_text().strip().endswith("m")
    # Panning writes the new position into the address.
    page.evaluate("() => window.wayview.map.jumpTo({center: [13.19200, 55.70480], zoom: 16})")
    page.wait_for_function("() => new URLSearchParams(location.search).get('lng') === '13.192000'",
                           timeout=WAIT_MS)
    q = address_query(page)
    assert (q["lat"], q["z"], q["dateFrom"]) == ("55.704800", "16.00", "2022-06-01")
    # Opening an image adds pKey; reloading the address shows the same image and view.
    page.evaluate("([lon, lat]) => window.wayview.map.jumpTo({center: [lon, lat], zoom: 18})",
                  [lon, lat])
    point = page.evaluate("([lon, lat]) => { const p = window.wayview.map.project([lon, lat]);"
                          " return {x: p.x, y: p.y}; }", [lon, lat])
    page.wait_for_function("() => window.wayview.map.loaded()", timeout=WAIT_MS)
    page.mouse.click(point["x"], point["y"])
    target = world.image_ids[2]
    page.wait_for_function("id => new URLSearchParams(location.search).get('pKey') === id",
                           arg=target, timeout=WAIT_MS)
    shared = page.url
    screenshot(page, "app-permalink-1280")
    page.goto(shared)
    wait_app_loaded(page)
    page.wait_for_function("id => window.wayview.state.imageEvents.includes(id)", arg=target,
                           timeout=WAIT_MS)
    assert page.locator("#viewer-panel").is_visible()
    assert address_query(page)["pKey"] == target
    # Closing the viewer drops pKey.
    page.click("#close-viewer")
    page.wait_for_function("() => !new URLSearchParams(location.search).has('pKey')",
                           timeout=WAIT_MS)
    icon = page.request.get(f"{world.base}/favicon.ico")
    assert icon.status == 200 and icon.headers["content-type"].startswith("image/")
    assert not errors, errors
    assert not offline.blocked, offline.blocked
    context.close()


def test_small_screens_fold_the_panel_and_stack_the_viewer(browser: Any, world: World) -> None:
    context, page, errors, offline = watched_page(browser, 375, 812)
    lon, lat = world.positions[1]
    page.goto(f"{world.base}/app?pKey={world.image_ids[1]}&lat={lat}&lng={lon}&z=18")
    wait_app_loaded(page)
    page.wait_for_function("id => window.wayview.state.imageEvents.includes(id)",
                           arg=world.image_ids[1], timeout=WAIT_MS)
    toggle = page.locator("#toggle-controls")
    assert toggle.get_attribute("aria-expanded") == "false"
    assert not page.locator("#from").is_visible()
    panel = page.locator("#viewer-panel").bounding_box()
    assert panel is not None and panel["width"] == 375 and panel["y"] >= 812 / 2 - 1
    screenshot(page, "app-375-folded")
    toggle.click()
    assert toggle.get_attribute("aria-expanded") == "true" and page.locator("#from").is_visible()
    screenshot(page, "app-375-open")
    assert not errors, errors
    assert not offline.blocked, offline.blocked
    context.close()


def test_the_map_has_an_offline_base_map_with_its_attribution(browser: Any,
                                                              world: World) -> None:
    context, page, errors, offline = watched_page(browser, 1280, 800)
    page.goto(f"{world.base}/app?lat=52&lng=10&z=3")
    wait_app_loaded(page)
    page.wait_for_function("() => window.wayview.map.loaded() && window.wayview.map"
                           ".queryRenderedFeatures({layers: ['base-land']}).length > 0",
                           timeout=WAIT_MS)
    assert page.evaluate("() => window.wayview.map.queryRenderedFeatures("
                         "{layers: ['base-borders']}).length") > 0
    # Land where there is land, sea where there is sea, in the pixels drawn (the Norwegian Sea
    # once filled solid from Russia's ring across the antimeridian). The panel folded first: it
    # covers the Atlantic.
    page.click("#toggle-controls")
    shot = PILImage.open(io.BytesIO(page.screenshot())).convert("RGB")

    def colour(lng: float, lat: float) -> str:
        x, y = page.evaluate("([lng, lat]) => { const p = window.wayview.map.project([lng, lat]);"
                             " return [Math.round(p.x), Math.round(p.y)]; }", [lng, lat])
        assert 0 <= x < shot.width and 0 <= y < shot.height, (lng, lat, x, y)
        r, g, b = shot.getpixel((x, y))
        land, sea = (0xF2, 0xF1, 0xEC), (0xC9, 0xDF, 0xF0)
        distance = {name: sum((c - d) ** 2 for c, d in zip((r, g, b), ref, strict=True))
                    for name, ref in (("land", land), ("sea", sea))}
        return min(distance, key=lambda name: distance[name])

    assert colour(10.0, 50.0) == "land"  # Germany
    for sea in ([2.0, 66.0], [-8.0, 66.0], [-20.0, 45.0], [20.0, 35.0]):
        assert colour(*sea) == "sea", sea
    assert "Natural Earth" in page.locator(".maplibregl-ctrl-attrib").inner_text()
    screenshot(page, "app-offline-basemap")
    assert not errors, errors
    assert not offline.blocked, offline.blocked
    context.close()


def test_an_operator_s_base_map_style_from_another_origin(browser: Any, world: World) -> None:
    style = {"version": 8, "sources": {}, "layers": [
        {"id": "operator-background", "type": "background",
         "paint": {"background-color": "#123456"}}]}
    with third_party_site({"/style.json": json.dumps(style)}, content_type="application/json",
                          cors=True) as site, live_server(
            world.server.data_dir, world.server.data_dir.parent / "styled.log",
            cwd=world.server.data_dir.parent,
            env={"WAYVIEW_WEB__BASEMAP_STYLE_URL": f"{site}/style.json"}) as server:
        context, page, errors, offline = watched_page(browser, 1280, 800)
        lon, lat = world.positions[2]
        page.goto(f"{server.base_url}/app?lat={lat}&lng={lon}&z=17.5")
        wait_app_loaded(page)
        page.wait_for_function("n => window.wayview.map.loaded() && new Set(window.wayview.map"
                               ".queryRenderedFeatures({layers: ['images']})"
                               ".map(f => f.properties.id)).size === n",
                               arg=len(world.image_ids), timeout=WAIT_MS)
        layer_ids = page.evaluate("() => window.wayview.map.getStyle().layers.map(l => l.id)")
        assert layer_ids[0] == "operator-background" and "base-land" not in layer_ids
        assert "images" in layer_ids
        screenshot(page, "app-operator-basemap")
        assert not errors, errors
        assert not offline.blocked, offline.blocked
        context.close()


def test_who_and_what_filters_and_their_address(browser: Any, world: World) -> None:
    context, page, errors, offline = watched_page(browser, 1280, 800)
    lon, lat = world.positions[2]
    count = ("() => window.wayview.map.loaded() ? new Set(window.wayview.map"
             ".queryRenderedFeatures({layers: ['images']}).map(f => f.properties.id)).size : -1")
    page.goto(f"{world.base}/app?lat={lat}&lng={lon}&z=17.5&creator=frida")
    wait_app_loaded(page)
    everything = len(world.image_ids)
    page.wait_for_function(f"() => ({count})() === {everything}", timeout=WAIT_MS)
    assert page.input_value("#creator") == "frida"
    page.fill("#creator", "nobody")
    page.dispatch_event("#creator", "change")
    page.wait_for_function(f"() => ({count})() === 0", timeout=WAIT_MS)
    assert page.locator("#filter-note").inner_text() == "No images by nobody."
    assert address_query(page)["creator"] == "nobody"
    page.fill("#creator", "")
    page.dispatch_event("#creator", "change")
    page.wait_for_function(f"() => ({count})() === {everything}", timeout=WAIT_MS)
    page.check("#pano-only")  # the world's photos are not panoramas
    page.wait_for_function(f"() => ({count})() === 0", timeout=WAIT_MS)
    assert address_query(page)["pano"] == "1"
    page.goto(page.url)
    wait_app_loaded(page)
    assert page.is_checked("#pano-only")
    page.wait_for_function(f"() => ({count})() === 0", timeout=WAIT_MS)
    screenshot(page, "app-filters")
    assert not errors, errors
    assert not offline.blocked, offline.blocked
    context.close()
