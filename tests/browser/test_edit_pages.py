"""Browser: an owner corrects an image, splits a sequence, deletes an image and then a whole
sequence on the /account/sequences pages (issue #17) in headless Chromium against a live
`wayview serve`, every non-loopback request aborted; the Graph API follows at once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from tests.acceptance.live import wayview
from tests.browser.harness import (
    LAT0,
    LON0,
    START,
    STEP_DEG,
    World,
    launch_chromium,
    offline_context,
    screenshot,
    seed_world,
)

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield from seed_world(tmp_path_factory.mktemp("edits"))


def test_owner_corrects_splits_and_deletes_in_the_browser(
        browser: Any, world: World) -> None:
    from wayview.fixtures import write_jpeg

    context, offline = offline_context(browser, viewport={"width": 1100, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{world.base}/signup")
    page.fill("#username", "quinn")
    page.fill("#email", "quinn@example.org")
    page.fill("#password", "correct horse 1")
    page.click("button[type=submit]")
    page.wait_for_url(f"{world.base}/account")
    # quinn's walk, imported on the server's data folder while it runs.
    root = world.server.data_dir.parent
    photos = root / "quinn"
    for k in range(4):
        write_jpeg(photos / f"Q_{k}.jpg", width=640, height=480, lat=LAT0 + 0.001,
                   lon=LON0 + k * STEP_DEG, captured_at=START + timedelta(days=1, seconds=2 * k),
                   compass_deg=90.0, seed=40 + k)
    report = json.loads(wayview("import", str(photos), "--user", "quinn", "--json",
                                data_dir=world.server.data_dir, cwd=root
                                ).strip().splitlines()[-1])
    sequence_id = report["sequences"][0]["id"]
    auth = {"Authorization": f"OAuth {world.client_token}"}
    with httpx.Client(trust_env=False, timeout=10) as http:
        ids = [row["id"] for row in http.get(f"{world.base}/image_ids", headers=auth, params={
            "sequence_id": sequence_id}).json()["data"]]
        assert len(ids) == 4
        page.click("text=Sequences")
        page.click(f"text={sequence_id}")
        page.wait_for_selector("#correct")
        # Correct the second image's compass angle.
        page.select_option("#correct-image", ids[1])
        page.fill("#compass", "123.5")
        page.click("#correct button[type=submit]")
        page.wait_for_selector("text=The image was corrected.")
        r = http.get(f"{world.base}/{ids[1]}", headers=auth, params={"fields": "compass_angle"})
        assert r.json()["compass_angle"] == 123.5
        screenshot(page, "edits-corrected")
        # Split at the third image: the page moves to the new sequence.
        page.select_option("#split-image", ids[2])
        page.click("#split button[type=submit]")
        page.wait_for_selector("text=The sequence was split.")
        new_id = page.url.rsplit("/", 1)[1].split("?")[0]
        assert new_id != sequence_id
        first = http.get(f"{world.base}/image_ids", headers=auth,
                         params={"sequence_id": sequence_id}).json()["data"]
        second = http.get(f"{world.base}/image_ids", headers=auth,
                          params={"sequence_id": new_id}).json()["data"]
        assert [row["id"] for row in first] == ids[:2]
        assert [row["id"] for row in second] == ids[2:]
        screenshot(page, "edits-split")
        # Delete one image of the new sequence, then the whole sequence.
        page.select_option("#delete-image-id", ids[3])
        page.click("#delete-image button[type=submit]")
        page.wait_for_selector("text=The image was deleted.")
        assert http.get(f"{world.base}/{ids[3]}", headers=auth).status_code == 400
        page.click("#delete-sequence button[type=submit]")
        page.wait_for_selector("text=The sequence was deleted.")
        assert http.get(f"{world.base}/{ids[2]}", headers=auth).status_code == 400
        assert new_id not in page.content()
        assert http.get(f"{world.base}/{ids[0]}", headers=auth).status_code == 200
        screenshot(page, "edits-deleted")
    assert not errors, errors
    assert not offline.blocked, offline.blocked
    context.close()
