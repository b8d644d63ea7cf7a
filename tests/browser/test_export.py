"""Browser: a user exports all of their data from `/account/export` (issue #17), in headless
Chromium against a live `wayview serve`, every non-loopback request aborted.

The server runs no jobs itself (`jobs.serve_workers = 0`): the page shows the export queued,
then `wayview worker --drain` runs it in another process and the page, never reloaded by the
test, follows it to done (its script polls the status URL); the zip is downloaded through the
browser and holds the photos byte for byte.
"""

from __future__ import annotations

import asyncio
import json
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.acceptance.live import live_server, wayview
from tests.browser.harness import WAIT_MS, launch_chromium, offline_context, screenshot

pytestmark = [pytest.mark.slow]

USERNAME = "greta"
PASSWORD = "export all of it 1"
PHOTOS = 6
NO_JOBS = {"WAYVIEW_JOBS__SERVE_WORKERS": "0"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium(web_build=False)


async def _create_user(data: Path) -> None:
    from wayview.auth.tokens import hash_password
    from wayview.settings import Settings
    from wayview.testing import open_test_store

    settings = Settings(_env_file=None, data_dir=data)
    async with open_test_store(settings) as store:
        await store.create_user(USERNAME, email="greta@example.org",
                                password_hash=hash_password(PASSWORD))


def test_user_exports_their_data_from_the_account_page(browser: Any, tmp_path: Path) -> None:
    from wayview.fixtures import write_jpeg

    data = tmp_path / "data"
    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API may hold an event loop here
        pool.submit(asyncio.run, _create_user(data)).result()
    start = datetime(2023, 4, 2, 8, 0, 0, tzinfo=UTC)
    for k in range(PHOTOS):
        write_jpeg(tmp_path / "photos" / f"IMG_{k:04d}.jpg", width=640, height=480,
                   lat=55.7047, lon=13.191 + k * 0.00015, captured_at=start + timedelta(seconds=2 * k),
                   compass_deg=90.0, altitude_m=20.0, seed=k, label=str(k))
    report = json.loads(wayview("import", str(tmp_path / "photos"), "--user", USERNAME, "--json",
                                data_dir=data, cwd=tmp_path).strip().splitlines()[-1])
    assert report["imported"] == PHOTOS
    uploaded = sorted(p.read_bytes() for p in (tmp_path / "photos").iterdir())

    with live_server(data, tmp_path / "server.log", cwd=tmp_path, env=NO_JOBS) as server:
        context, offline = offline_context(browser, accept_downloads=True)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        # The account page links to the export page; signing in comes first.
        page.goto(f"{server.base_url}/account/export")
        page.fill("#login", USERNAME)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/account/export", timeout=WAIT_MS)
        page.goto(f"{server.base_url}/account")
        page.click("a[href='/account/export']")
        page.wait_for_url("**/account/export", timeout=WAIT_MS)
        assert "not exported your data yet" in page.content()

        page.click("#start-export")
        page.wait_for_selector("tr[data-state='queued'] progress", timeout=WAIT_MS)
        assert page.is_disabled("#start-export")
        screenshot(page, "export-queued")
        # Another process runs the job; the page follows without being reloaded by hand.
        wayview("worker", "--drain", data_dir=data, cwd=tmp_path)
        page.wait_for_selector("tr[data-state='done'] a.download", timeout=WAIT_MS)
        row = page.locator("tr[data-state='done']")
        assert "done" in row.inner_text() and "MB" in row.inner_text()
        screenshot(page, "export-done")

        with page.expect_download(timeout=WAIT_MS) as info:
            page.click("a.download")
        download = info.value
        assert download.suggested_filename.startswith(f"wayview-export-{USERNAME}-")
        saved = tmp_path / download.suggested_filename
        download.save_as(saved)
        context.close()
    with zipfile.ZipFile(saved) as zf:
        assert zf.testzip() is None
        originals = sorted(zf.read(n) for n in zf.namelist() if n.startswith("originals/"))
        images = json.loads(zf.read("metadata/images.json"))
    assert originals == uploaded and len(images) == PHOTOS
    assert offline.blocked == [] and errors == []
