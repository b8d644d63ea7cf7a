"""Browser: the public profile pages (issue #18 item 6), /app/user/{username} and
/app/org/{slug}, in headless Chromium against a live `wayview serve`, every non-loopback request
aborted. The figures read right, the map draws the owner's coverage only (rendered features of
the tile layers, filtered on `creator_id` / `organization_id`), nothing overflows at 375 px,
and there is no console error. Screenshots at 1280 × 800 and 375 × 812 in artifacts/browser/.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from tests.browser.harness import (
    LAT0,
    LON0,
    STEP_DEG,
    USERNAME,
    WAIT_MS,
    World,
    launch_chromium,
    offline_context,
    screenshot,
    seed_world,
)

pytestmark = [pytest.mark.slow]

ORG_SLUG = "oresund"
ORG_NAME = "Öresund <Mapping> & Co"
#: The organization's sequence: metadata only (the pages read no photo), north of the street.
ORG_POINTS = [(LON0 + k * STEP_DEG, LAT0 + 0.0006) for k in range(6)]
VIEWPORTS = [(1280, 800), (375, 812)]


@dataclass
class Profiles:
    world: World
    user_id: str
    org_id: str


async def _add_organization(data_dir: Any) -> tuple[int, int]:
    """An organization with one sequence of USERNAME's (store API, beside the live server)."""
    from wayview.settings import Settings
    from wayview.testing import add_sequence, open_test_store

    settings = Settings(_env_file=None, data_dir=data_dir)  # type: ignore[call-arg]
    async with open_test_store(settings) as store:
        user = await store.get_user_by_username(USERNAME)
        assert user is not None
        org = await store.create_organization(ORG_SLUG, name=ORG_NAME,
                                              description="Streets of Lund, 2023.")
        await store.add_organization_member(org.id, user.id)
        await add_sequence(store, user, ORG_POINTS, start_ms=1_690_000_000_000, step_ms=2000,
                           organization_id=org.id)
        return user.id, org.id


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium()


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Profiles]:
    root = tmp_path_factory.mktemp("profiles")
    for world in seed_world(root):
        with ThreadPoolExecutor(1) as pool:
            user_id, org_id = pool.submit(asyncio.run, _add_organization(root / "data")).result()
        yield Profiles(world=world, user_id=str(user_id), org_id=str(org_id))


def _open(browser: Any, url: str, size: tuple[int, int]) -> tuple[Any, Any, list[str], Any]:
    context, offline = offline_context(browser, viewport={"width": size[0], "height": size[1]})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    response = page.goto(url)
    assert response is not None and response.status == 200, url
    page.wait_for_function("() => window.wayview && window.wayview.mapLoaded", timeout=WAIT_MS)
    return context, page, errors, offline


def _stat(page: Any, name: str) -> str:
    return str(page.locator(f'[data-stat="{name}"]').inner_text()).strip()


def _drawn(page: Any, key: str) -> list[str]:
    """The owner property of every rendered feature of the tile layers."""
    return list(page.evaluate(
        "(key) => window.wayview.map.queryRenderedFeatures({layers: ['sequences', 'images']})"
        ".map(f => String(f.properties[key]))", key))


def _check_layout(page: Any, width: int) -> None:
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width
    box = page.locator("#map").bounding_box()
    assert box is not None and box["width"] > 0.8 * min(width, 960) - 40 and box["height"] >= 200


def test_a_contributors_profile(browser: Any, profiles: Profiles) -> None:
    base = profiles.world.base
    for size in VIEWPORTS:
        context, page, errors, offline = _open(browser, f"{base}/app/user/{USERNAME}", size)
        assert page.locator("h1").inner_text() == USERNAME
        assert (_stat(page, "images"), _stat(page, "sequences")) == ("11", "2")
        # 4 + 5 steps of 0.00015° of longitude at 55.7° N (~9.4 m each).
        distance = float(page.get_attribute('[data-stat="distance"]', "data-length-m") or 0)
        assert distance == pytest.approx(9 * 9.40, rel=0.01)
        assert _stat(page, "distance") == "85 m"
        assert _stat(page, "first") == "2022-06-01" and _stat(page, "last") == "2023-07-22"
        rows = page.locator("table.sequences tbody tr")
        assert rows.count() == 2
        newest = rows.nth(0).locator("a")
        assert re.fullmatch(r"/app\?pKey=\d+", newest.get_attribute("href") or "")
        assert rows.nth(1).locator("a").get_attribute("href") == \
            f"/app?pKey={profiles.world.image_ids[0]}"
        # The map shows the user's lines and images, and only theirs.
        page.wait_for_function("() => window.wayview.map.queryRenderedFeatures("
                               "{layers: ['sequences', 'images']}).length > 0", timeout=WAIT_MS)
        drawn = _drawn(page, "creator_id")
        assert drawn and set(drawn) == {profiles.user_id}
        _check_layout(page, size[0])
        screenshot(page, f"profile-user-{size[0]}x{size[1]}")
        assert errors == [] and offline.blocked == []
        context.close()


def test_an_organizations_profile(browser: Any, profiles: Profiles) -> None:
    base = profiles.world.base
    for size in VIEWPORTS:
        context, page, errors, offline = _open(browser, f"{base}/app/org/{ORG_SLUG}", size)
        assert page.locator("h1").inner_text() == ORG_NAME  # escaped, shown as text
        assert (_stat(page, "images"), _stat(page, "sequences")) == ("6", "1")
        assert _stat(page, "first") == "2023-07-22"
        contributor = page.locator(".contributors a")
        assert contributor.inner_text() == USERNAME
        assert contributor.get_attribute("href") == f"/app/user/{USERNAME}"
        assert page.locator("a.explore").get_attribute("href") == \
            f"/app?organization={profiles.org_id}"
        page.wait_for_function("() => window.wayview.map.queryRenderedFeatures("
                               "{layers: ['sequences', 'images']}).length > 0", timeout=WAIT_MS)
        drawn = _drawn(page, "organization_id")
        assert drawn and set(drawn) == {profiles.org_id}
        _check_layout(page, size[0])
        screenshot(page, f"profile-org-{size[0]}x{size[1]}")
        assert errors == [] and offline.blocked == []
        context.close()
    # The contributor's link leads to their profile.
    context, page, errors, _ = _open(browser, f"{base}/app/org/{ORG_SLUG}", VIEWPORTS[0])
    page.click(".contributors a")
    page.wait_for_function("() => window.wayview && window.wayview.mapLoaded", timeout=WAIT_MS)
    assert page.url == f"{base}/app/user/{USERNAME}" and errors == []
    context.close()
