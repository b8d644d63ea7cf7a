"""Browser: exploring in /app (issue #18 items 2–4 and 7). Time travel under the viewer (the
captures of a place by date, switching years in place, by click and by keyboard), the viewer's
direction kept in the address, who took the photo linked to their page, the camera filter
(answered by the server's search: the tiles carry no make), map-feature values picked from the
taxonomy, a configured place search, and the keyboard shortcuts. Headless Chromium against a
live `wayview serve`, every non-loopback request aborted; screenshots at 1280 × 800 and
375 × 812 in artifacts/browser/."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from tests.acceptance.live import live_server
from tests.browser.harness import (
    REVISIT_MAKE,
    REVISIT_MODEL,
    SIGN_VALUE,
    USERNAME,
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
    yield from seed_world(tmp_path_factory.mktemp("explore"), revisit=True)





def _shown(page: Any, image_id: str) -> None:
    page.wait_for_function("id => window.wayview.viewer && window.wayview.state.imageId === id",
                           arg=image_id, timeout=WAIT_MS)


def test_time_travel_switches_years_in_place(browser: Any, world: World) -> None:
    for width, height in ((1280, 800), (375, 812)):
        context, page, errors, offline = watched_page(browser, width, height)
        here = world.image_ids[2]
        page.goto(f"{world.base}/app?pKey={here}")
        wait_app_loaded(page)
        _shown(page, here)
        # Two captures of this place: 2022 (shown, current) and 2024.
        page.wait_for_function("() => window.wayview.timeline.captures.length === 2",
                               timeout=WAIT_MS)
        timeline = page.locator("#timeline")
        assert timeline.is_visible()
        assert page.locator(".timeline-year").all_inner_texts() == ["2022", "2024"]
        assert page.locator(".timeline-capture").all_inner_texts() == ["1 Jun 2022",
                                                                      "15 Sept 2024"]
        current = page.locator('.timeline-capture[aria-current="true"]')
        assert current.inner_text() == "1 Jun 2022"
        # Who took it, linked to their public page.
        page.wait_for_function("() => document.querySelector('#viewer-credit a')",
                               timeout=WAIT_MS)
        link = page.locator("#viewer-credit a").first
        assert link.inner_text() == USERNAME
        assert link.get_attribute("href") == f"/app/user/{USERNAME}"
        # Switch to 2024 in place: the same spot of the other sequence.
        page.click("text=15 Sept 2024")
        _shown(page, world.revisit_ids[2])
        page.wait_for_function("() => document.querySelector('.timeline-capture[aria-current="
                               "\"true\"]').textContent === '15 Sept 2024'", timeout=WAIT_MS)
        assert address_query(page)["pKey"] == world.revisit_ids[2]
        page.wait_for_timeout(500)  # the transition ends
        screenshot(page, f"app-time-travel-{width}")
        # And back with the keyboard ("[" = earlier), focus on the page, not a field.
        page.evaluate("() => document.activeElement && document.activeElement.blur()")
        page.keyboard.press("[")
        _shown(page, here)
        assert not errors, errors
        assert not offline.blocked, offline.blocked
        context.close()


def test_the_viewer_direction_comes_back_from_the_address(browser: Any, world: World) -> None:
    context, page, errors, offline = watched_page(browser, 1280, 800)
    here = world.image_ids[1]
    page.goto(f"{world.base}/app?pKey={here}")
    wait_app_loaded(page)
    _shown(page, here)
    page.wait_for_function("() => window.wayview.viewer.isNavigable !== false", timeout=WAIT_MS)
    # Look left (a photo's centre cannot come closer to its edge than half the view).
    page.evaluate("() => window.wayview.viewer.setCenter([0.4, 0.5])")
    page.wait_for_function("() => new URLSearchParams(location.search).get('x') === '0.4000'",
                           timeout=WAIT_MS)
    bearing = page.evaluate("() => window.wayview.viewer.getBearing()")
    assert 45 < bearing < 89, bearing  # the photos face east: looking left turns north
    shared = page.url
    page.goto(shared)
    wait_app_loaded(page)
    _shown(page, here)
    page.wait_for_function("b => window.wayview.viewer.getBearing().then(v => "
                           "Math.abs(v - b) < 1)", arg=bearing, timeout=WAIT_MS)
    center = page.evaluate("() => window.wayview.viewer.getCenter()")
    assert center[0] == pytest.approx(0.4, abs=0.01)
    assert not errors, errors
    assert not offline.blocked, offline.blocked
    context.close()


def test_camera_and_map_feature_value_filters(browser: Any, world: World) -> None:
    context, page, errors, offline = watched_page(browser, 1280, 800)
    lon, lat = world.positions[2]
    ids = ("() => window.wayview.map.loaded() ? [...new Set(window.wayview.map"
           ".queryRenderedFeatures({layers: ['images']}).map(f => String(f.properties.id)))]"
           ".sort() : null")
    page.goto(f"{world.base}/app?lat={lat}&lng={lon}&z=17.5")
    wait_app_loaded(page)
    everything = sorted(world.image_ids + world.revisit_ids)
    page.wait_for_function(f"n => ({ids})()?.length === n", arg=len(everything),
                           timeout=WAIT_MS)
    # The camera: the server answers which images it took; the map keeps those.
    page.fill("#make", REVISIT_MAKE.lower())
    page.dispatch_event("#make", "change")
    page.wait_for_function(f"want => JSON.stringify(({ids})()) === JSON.stringify(want)",
                           arg=sorted(world.revisit_ids), timeout=WAIT_MS)
    page.fill("#model", "not-" + REVISIT_MODEL)
    page.dispatch_event("#model", "change")
    page.wait_for_function(f"() => ({ids})()?.length === 0", timeout=WAIT_MS)
    assert page.locator("#camera-note").inner_text() == "No images by this camera in view."
    page.fill("#model", REVISIT_MODEL)
    page.dispatch_event("#model", "change")
    page.wait_for_function(f"n => ({ids})()?.length === n", arg=len(world.revisit_ids),
                           timeout=WAIT_MS)
    q = address_query(page)
    assert (q["make"], q["model"]) == (REVISIT_MAKE.lower(), REVISIT_MODEL)
    # Below zoom 14 the camera cannot be told: the page says so rather than show everything.
    page.evaluate("() => window.wayview.map.jumpTo({zoom: 12})")
    page.wait_for_function("() => document.querySelector('#camera-note').textContent"
                           ".startsWith('Zoom in')", timeout=WAIT_MS)
    page.fill("#make", "")
    page.fill("#model", "")
    page.dispatch_event("#model", "change")
    # Map-feature values from the taxonomy, with their icons.
    page.evaluate("([lon, lat]) => window.wayview.map.jumpTo({center: [lon, lat], zoom: 17.5})",
                  [lon, lat])
    features = ("() => window.wayview.map.loaded() ? window.wayview.map.queryRenderedFeatures("
                "{layers: ['points', 'signs']}).map(f => f.properties.value).sort() : null")
    page.wait_for_function(f"() => ({features})()?.length === 2", timeout=WAIT_MS)
    page.fill("#value-search", "regulatory stop")
    option = page.locator(f'.value-option[data-value="{SIGN_VALUE}"]')
    option.wait_for(timeout=WAIT_MS)
    assert option.locator("img").get_attribute("src").endswith(f"/{SIGN_VALUE}.svg")
    option.click()
    page.wait_for_function(f"want => JSON.stringify(({features})()) === JSON.stringify(want)",
                           arg=[SIGN_VALUE], timeout=WAIT_MS)
    assert address_query(page)["values"] == SIGN_VALUE
    screenshot(page, "app-value-filter")
    page.goto(page.url)
    wait_app_loaded(page)
    assert page.locator(".value-chip").count() == 1
    page.wait_for_function(f"want => JSON.stringify(({features})()) === JSON.stringify(want)",
                           arg=[SIGN_VALUE], timeout=WAIT_MS)
    page.click(".value-chip")
    page.wait_for_function(f"() => ({features})()?.length === 2", timeout=WAIT_MS)
    assert not errors, errors
    assert not offline.blocked, offline.blocked
    context.close()


def test_place_search_and_keyboard_shortcuts(browser: Any, world: World) -> None:
    lon, lat = world.positions[3]
    places = [{"display_name": "Testgatan, Lund, Sweden", "lat": str(lat), "lon": str(lon),
               "boundingbox": [str(lat - 0.0005), str(lat + 0.0005), str(lon - 0.0008),
                               str(lon + 0.0008)]},
              {"display_name": "Testgatan, Malmö, Sweden", "lat": "55.6", "lon": "13.0"}]
    with third_party_site({"/search": json.dumps(places)}, content_type="application/json",
                          cors=True) as geocoder, live_server(
            world.server.data_dir, world.server.data_dir.parent / "geocoded.log",
            cwd=world.server.data_dir.parent,
            env={"WAYVIEW_WEB__GEOCODER_URL": f"{geocoder}/search"}) as server:
        context, page, errors, offline = watched_page(browser, 1280, 800)
        page.goto(f"{server.base_url}/app?lat=0&lng=0&z=2")
        wait_app_loaded(page)
        # "/" goes to the place search; Enter searches; the first result is focused.
        page.keyboard.press("/")
        assert page.evaluate("() => document.activeElement.id") == "place"
        page.keyboard.type("Testgatan")
        page.keyboard.press("Enter")
        page.locator(".place-result").first.wait_for(timeout=WAIT_MS)
        assert page.locator(".place-result").all_inner_texts() == [
            "Testgatan, Lund, Sweden", "Testgatan, Malmö, Sweden"]
        assert page.evaluate("() => document.activeElement.textContent") == \
            "Testgatan, Lund, Sweden"
        page.keyboard.press("Enter")
        page.wait_for_function("([lon, lat]) => { const c = window.wayview.map.getCenter();"
                               " return Math.abs(c.lng - lon) < 1e-4 && Math.abs(c.lat - lat)"
                               " < 1e-4; }", arg=[lon, lat], timeout=WAIT_MS)
        assert window_zoom(page) > 15
        # "?" lists the shortcuts; Escape closes the list; "f" folds the panel.
        page.evaluate("() => document.activeElement.blur()")
        page.keyboard.press("?")
        dialog = page.locator("dialog#shortcuts")
        assert dialog.is_visible() and "Earlier capture" in dialog.inner_text()
        screenshot(page, "app-shortcuts")
        page.keyboard.press("Escape")
        assert not dialog.is_visible()
        page.keyboard.press("f")
        assert page.get_attribute("#toggle-controls", "aria-expanded") == "false"
        # Every control can be reached with Tab.
        page.keyboard.press("f")
        reached = set()
        for _ in range(40):
            page.keyboard.press("Tab")
            reached.add(page.evaluate("() => document.activeElement.id || "
                                      "document.activeElement.className"))
        assert {"place", "from", "creator", "make", "value-search", "download"} <= reached
        assert not errors, errors
        assert not offline.blocked, offline.blocked
        context.close()
    # Without a geocoder the form is not there and nothing is asked of anyone.
    context, page, errors, offline = watched_page(browser, 1280, 800)
    page.goto(f"{world.base}/app")
    wait_app_loaded(page)
    assert not page.locator("#place-search").is_visible()
    context.close()


def window_zoom(page: Any) -> float:
    return float(page.evaluate("() => window.wayview.map.getZoom()"))
