"""Browser: an owner fixes the blurring of one image at `/account/images/{id}/blur` (issue #17,
re-blur), in headless Chromium against a live `wayview serve`, every non-loopback request
aborted.

The owner follows the viewer's link target, signs in, sees the unblurred original, drags a
rectangle over it and saves. The server runs no jobs itself (`jobs.serve_workers = 0`):
`wayview worker --drain` renders the new version in another process while the page, never
reloaded by the test, polls until it is served and shows it. The served thumbnail is blurred
inside the rectangle only, under a new URL; the old one answers 404.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage
from tests.acceptance.live import live_server, wayview
from tests.browser.harness import WAIT_MS, launch_chromium, offline_context, screenshot

pytestmark = [pytest.mark.slow]

USERNAME = "rosa"
PASSWORD = "blur that plate 1"
ENV = {"WAYVIEW_JOBS__SERVE_WORKERS": "0", "WAYVIEW_PIPELINE__BLURRER": "none"}
#: The rectangle the test draws (normalised u0, v0, u1, v1) and a part of the photo it leaves.
DRAWN = (0.55, 0.5, 0.9, 0.85)
ELSEWHERE = (0.1, 0.1, 0.4, 0.4)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium(web_build=False)


async def _create_user(data: Path) -> None:
    from wayview.auth.tokens import hash_password
    from wayview.settings import Settings
    from wayview.testing import open_test_store

    settings = Settings(_env_file=None, data_dir=data)
    async with open_test_store(settings) as store:
        await store.create_user(USERNAME, email="rosa@example.org",
                                password_hash=hash_password(PASSWORD))


def _difference(served: bytes, upload: bytes, box: tuple[float, float, float, float]) -> float:
    with PILImage.open(io.BytesIO(served)) as a:
        mine = np.asarray(a.convert("L"), dtype=np.float64)
    h, w = mine.shape
    with PILImage.open(io.BytesIO(upload)) as b:
        theirs = np.asarray(b.convert("L").resize((w, h), PILImage.Resampling.BICUBIC),
                            dtype=np.float64)
    u0, v0, u1, v1 = box
    rows = slice(round((v0 + 0.03) * h), round((v1 - 0.03) * h))
    cols = slice(round((u0 + 0.03) * w), round((u1 - 0.03) * w))
    return float(np.abs(mine[rows, cols] - theirs[rows, cols]).mean())


def test_owner_draws_a_region_saves_and_sees_the_new_version(browser: Any,
                                                              tmp_path: Path) -> None:
    from wayview.fixtures import Overlay, write_jpeg

    data = tmp_path / "data"
    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API may hold an event loop here
        pool.submit(asyncio.run, _create_user(data)).result()
    stripes = tuple(Overlay(((u, 0.0), (u + 0.0125, 0.0), (u + 0.0125, 1.0), (u, 1.0)),
                            (10, 10, 10), (10, 10, 10)) for u in np.arange(0.0, 1.0, 0.025))
    photo = write_jpeg(tmp_path / "photos" / "IMG_0001.jpg", width=1200, height=900,
                       lat=55.7047, lon=13.191, captured_at=datetime(2023, 4, 2, 8, tzinfo=UTC),
                       compass_deg=90.0, seed=3, overlays=stripes)
    upload = photo.read_bytes()
    report = json.loads(wayview("import", str(tmp_path / "photos"), "--user", USERNAME,
                                "--json", data_dir=data, cwd=tmp_path, env=ENV)
                        .strip().splitlines()[-1])
    assert report["imported"] == 1

    with live_server(data, tmp_path / "server.log", cwd=tmp_path, env=ENV) as server:
        context, offline = offline_context(browser)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        found = page.request.get(f"{server.base_url}/images", params={
            "fields": "id,thumb_1024_url", "bbox": "13.19,55.70,13.20,55.71",
            "access_token": _client_token(tmp_path, data)})
        [image] = found.json()["data"]
        image_id, old_url = image["id"], image["thumb_1024_url"]
        assert "/v" not in old_url.removeprefix(server.base_url)
        # The viewer's link target: sign in first, then the editor.
        editor = f"{server.base_url}/account/images/{image_id}/blur"
        page.goto(editor)
        page.fill("#login", USERNAME)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"**/account/images/{image_id}/blur", timeout=WAIT_MS)
        page.wait_for_selector("#source", timeout=WAIT_MS)
        page.wait_for_load_state("load")
        assert page.locator("#source").evaluate("img => img.naturalWidth") > 0
        assert page.get_attribute("#status", "data-state") == "live"
        assert page.locator("svg#regions [data-region]").count() == 0  # nothing found

        box = page.locator("svg#regions").bounding_box()
        assert box is not None

        def at(u: float, v: float) -> tuple[float, float]:
            return box["x"] + u * box["width"], box["y"] + v * box["height"]

        page.mouse.move(*at(DRAWN[0], DRAWN[1]))
        page.mouse.down()
        page.mouse.move(*at(DRAWN[2], DRAWN[3]), steps=8)
        page.mouse.up()
        assert page.locator("svg#regions [data-added]").count() == 1
        assert "Unsaved" in page.inner_text("#changes")
        screenshot(page, "reblur-drawn")
        page.click("#save")
        page.wait_for_url(f"**/account/images/{image_id}/blur?saved=1", timeout=WAIT_MS)
        assert page.get_attribute("#status", "data-state") == "rendering"
        assert page.locator("svg#regions [data-added]").count() == 1  # saved
        # Another process renders the new version; the page follows without a reload.
        wayview("worker", "--drain", data_dir=data, cwd=tmp_path, env=ENV)
        page.wait_for_selector("#status[data-state='live']", timeout=WAIT_MS)
        assert "Version 1 is served" in page.inner_text("#status")
        page.wait_for_selector("#served[src*='/v1/']", timeout=WAIT_MS)
        for _ in range(WAIT_MS // 100):  # the new thumbnail loads
            if page.locator("#served").evaluate("img => img.complete && img.naturalWidth > 0"):
                break
            page.wait_for_timeout(100)
        else:
            raise AssertionError("the new version's thumbnail did not load")
        screenshot(page, "reblur-served")
        served_url = page.eval_on_selector("#served", "img => img.src")
        served = page.request.get(served_url)
        assert served.status == 200
        assert _difference(served.body(), upload, DRAWN) > 25.0
        assert _difference(served.body(), upload, ELSEWHERE) < 8.0
        assert page.request.get(old_url).status == 404
        context.close()
    assert offline.blocked == [] and errors == []


def _client_token(tmp_path: Path, data: Path) -> str:
    created = json.loads(wayview("apps", "create", "reblur-reader", "--owner", USERNAME,
                                 "--scope", "read", "--json", data_dir=data, cwd=tmp_path,
                                 env=ENV).strip().splitlines()[-1])
    return str(created["client_token"])
