"""Browser: a user uploads the 29 Lund photos (../shared/data/opensfm_lund, one capture sequence)
from `/upload` (issue #18 item 5), in headless Chromium against a live `wayview serve` that runs
the processing pipeline in-process, every non-loopback request aborted.

The user follows the account page's link, signs in, drops four bad files on the page (a text
file, a PNG, a JPEG without GPS and one without a capture time: each listed with its reason,
none sent) and chooses 25 Lund photos plus a zip holding the other 4 and a README (listed as not
a photo). The page checks them, groups the 29 into one sequence and sends them through the
upload service mapillary_tools uses. The test slows the browser's uploads down, reloads the page
mid-upload and sees the upload resume by itself from IndexedDB: photos sent before the reload
are not sent again, and the server's byte offset is where interrupted photos continue. Then the
page follows the processing until the sequence is on the map drawn from this server's tiles,
with a link to it in /app. Screenshots at 1280x800 and 375x812 go to artifacts/browser/.
"""

from __future__ import annotations

import asyncio
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage
from tests.acceptance.live import live_server
from tests.browser.harness import WAIT_MS, launch_chromium, offline_context, screenshot

pytestmark = [pytest.mark.slow]

LUND = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "opensfm_lund"
        / "images").resolve()
USERNAME = "lina"
PASSWORD = "upload from lund 1"
#: In-process jobs (the default `jobs.serve_workers`); no face/plate models, to keep it short.
ENV = {"WAYVIEW_PIPELINE__BLURRER": "none", "WAYVIEW_PIPELINE__DETECTORS": "none"}
IN_ZIP = ("26.jpg", "27.jpg", "28.jpg", "29.jpg")
#: Upload bandwidth before the reload (bytes/s): slow enough to reload mid-upload.
THROTTLE = 250 * 1024
PROCESSING_WAIT_MS = 90_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium()


async def _create_user(data: Path) -> None:
    from wayview.auth.tokens import hash_password
    from wayview.settings import Settings
    from wayview.testing import open_test_store

    settings = Settings(_env_file=None, data_dir=data)
    async with open_test_store(settings) as store:
        await store.create_user(USERNAME, email="lina@example.org",
                                password_hash=hash_password(PASSWORD))


def _bad_files(folder: Path) -> dict[str, str]:
    """Files the page must refuse: name → words of the reason it gives."""
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("not a photo\n")
    img = PILImage.new("RGB", (64, 48), (120, 130, 140))
    img.save(folder / "map.png")
    img.save(folder / "no-gps.jpg", "JPEG")
    exif = PILImage.Exif()
    exif.get_ifd(0x8825).update({1: "N", 2: (55.0, 42.0, 17.0), 3: "E", 4: (13.0, 11.0, 28.0)})
    img.save(folder / "no-time.jpg", "JPEG", exif=exif)
    return {"notes.txt": "not a JPEG", "map.png": "PNG", "no-gps.jpg": "no GPS position",
            "no-time.jpg": "no capture time"}


def _zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in IN_ZIP:
            archive.write(LUND / name, f"lund/{name}")
        archive.writestr("lund/README.txt", "photos from OpenSfM's Lund data set\n")


_DROP = """async (files) => {
  const transfer = new DataTransfer();
  for (const f of files) {
    const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
    transfer.items.add(new File([bytes], f.name, { type: f.type }));
  }
  const zone = document.getElementById("drop-zone");
  for (const type of ["dragenter", "dragover", "drop"]) {
    zone.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
  }
}"""


def _drop(page: Any, folder: Path) -> None:
    import base64

    files = [{"name": p.name, "type": "", "data": base64.b64encode(p.read_bytes()).decode()}
             for p in sorted(folder.iterdir())]
    page.evaluate(_DROP, files)


def _top(page: Any, selector: str) -> None:
    """Scroll so that `selector` is at the top of the viewport (for a screenshot)."""
    page.locator(selector).evaluate("(e) => e.scrollIntoView({ block: 'start' })")


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rows(page: Any) -> list[dict[str, Any]]:
    return list(page.evaluate("""() => [...document.querySelectorAll('.files li[data-key]')].map(
        (li) => ({ name: li.querySelector('.name').textContent, state: li.dataset.state,
                   resumedFrom: Number(li.dataset.resumedFrom || 0),
                   value: li.querySelector('progress').value,
                   max: li.querySelector('progress').max }))"""))


def test_user_uploads_the_lund_photos_from_the_browser(browser: Any, tmp_path: Path) -> None:
    if not LUND.is_dir():
        pytest.skip(f"shared test data not available: {LUND} (needs ../shared beside the repo)")
    data = tmp_path / "data"
    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API may hold an event loop here
        pool.submit(asyncio.run, _create_user(data)).result()
    reasons = _bad_files(tmp_path / "bad")
    _zip(tmp_path / "more-of-lund.zip")
    chosen = [str(LUND / f"{k:02d}.jpg") for k in range(1, 26)] + [str(tmp_path / "more-of-lund.zip")]

    with live_server(data, tmp_path / "server.log", cwd=tmp_path, env=ENV) as server:
        context, offline = offline_context(browser, viewport={"width": 1280, "height": 800})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        # Signed out, /upload asks to sign in first and comes back.
        page.goto(f"{server.base_url}/upload")
        page.wait_for_url("**/signin?next=%2Fupload", timeout=WAIT_MS)
        page.fill("#login", USERNAME)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/upload", timeout=WAIT_MS)
        # The account page links here.
        page.goto(f"{server.base_url}/account")
        page.click("a[href='/upload']")
        page.wait_for_url("**/upload", timeout=WAIT_MS)
        page.wait_for_selector("body[data-ready=true]", timeout=WAIT_MS)

        # Bad files dropped on the page: listed with their reason, nothing to upload.
        _drop(page, tmp_path / "bad")
        page.wait_for_selector("#rejected li:nth-child(4)", timeout=WAIT_MS)
        listed = {li.split(": ", 1)[0]: li.split(": ", 1)[1]
                  for li in page.locator("#rejected li").all_inner_texts()}
        assert set(listed) == set(reasons), listed
        for name, words in reasons.items():
            assert words in listed[name], (name, listed[name])
        assert page.locator(".batch").count() == 0

        # Slow uploads down, then choose the photos and the zip with the file input.
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send("Network.emulateNetworkConditions", {
            "offline": False, "latency": 0, "downloadThroughput": -1,
            "uploadThroughput": THROTTLE})
        page.set_input_files("#file-input", chosen)
        page.wait_for_selector(".batch", timeout=WAIT_MS)
        assert page.locator(".batch").count() == 1  # one capture sequence, one upload
        assert page.locator(".batch .files li").count() == 29
        listed = page.locator("#rejected li").all_inner_texts()
        assert any("more-of-lund.zip › lund/README.txt: not a JPEG" in t for t in listed), listed
        page.wait_for_function(
            "() => document.querySelectorAll('.files li[data-state=done]').length >= 6",
            timeout=WAIT_MS)
        page.wait_for_timeout(400)  # some photos are part-way
        _top(page, "#overall")
        screenshot(page, "upload-1280-uploading")
        before = {r["name"]: r for r in _rows(page)}
        sent_before = {n for n, r in before.items() if r["state"] == "done"}
        assert 6 <= len(sent_before) < 29, before

        # Reload mid-upload (at full speed afterwards): the page picks up where it was.
        requested: list[str] = []
        page.reload()
        page.on("request", lambda request: requested.append(f"{request.method} {request.url}"))
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send("Network.emulateNetworkConditions", {
            "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
        page.wait_for_selector("body[data-ready=true]", timeout=WAIT_MS)
        assert page.locator(".batch").count() == 1
        assert page.locator(".batch .files li").count() == 29
        page.wait_for_selector(".batch[data-state=processing], .batch[data-state=done]",
                               timeout=WAIT_MS)
        after = {r["name"]: r for r in _rows(page)}
        assert all(r["state"] == "done" for r in after.values()), after
        # Photos sent before the reload are not sent again, not even asked for their offset.
        for name in sent_before:
            key = f"wayview_web_{_sha256(LUND / name)}.jpg"
            assert not [u for u in requested if key in u], (name, requested)
        resumed_part_way = {n: r["resumedFrom"] for n, r in after.items()
                            if 0 < r["resumedFrom"] < r["max"]}
        print(f"sent before the reload: {len(sent_before)}; resumed part-way: {resumed_part_way}")
        assert resumed_part_way, "no photo continued from bytes the server kept"

        # Processing, then the sequence on the map from this server's tiles.
        page.wait_for_selector(".batch[data-on-map=true]", timeout=PROCESSING_WAIT_MS)
        status = page.inner_text(".batch .batch-status")
        assert "29 photos in 1 sequence, shown on the map" in status, status
        link = page.get_attribute(".batch a.open-app", "href")
        assert link is not None and link.startswith("/app?pKey=")
        sequence_id = page.get_attribute(".batch .sequences li", "data-sequence")
        drawn = page.evaluate("""(id) => window.wayviewUpload.map.queryRenderedFeatures(
            { layers: ['sequences'] }).filter((f) => String(f.properties.id) === id).length""",
                              sequence_id)
        assert drawn > 0
        _top(page, "#overall")
        page.wait_for_timeout(300)
        screenshot(page, "upload-1280-done")
        page.set_viewport_size({"width": 375, "height": 812})
        page.wait_for_timeout(500)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 375
        _top(page, "#overall")
        screenshot(page, "upload-375-done")
        _top(page, "#batches-section")
        screenshot(page, "upload-375-rejected")
        page.evaluate("() => window.scrollTo(0, 0)")
        screenshot(page, "upload-375-top")
        # Keyboard: the file input is reachable with Tab.
        page.evaluate("() => document.activeElement && document.activeElement.blur()")
        for _ in range(20):
            page.keyboard.press("Tab")
            if page.evaluate("() => document.activeElement.id") == "file-input":
                break
        else:
            raise AssertionError("the file input is not reachable with Tab")

        # The link opens the first photo of the sequence in the explorer.
        page.set_viewport_size({"width": 1280, "height": 800})
        first = link.split("=", 1)[1]
        token = server_client_token(page)
        r = page.request.get(f"{server.base_url}/image_ids",
                             params={"sequence_id": sequence_id, "access_token": token})
        assert r.status == 200, r.text()
        ids = [row["id"] for row in r.json()["data"]]
        assert len(ids) == 29 and ids[0] == first
        context.close()
    assert offline.blocked == [] and errors == [], (offline.blocked, errors)


def server_client_token(page: Any) -> str:
    """The page's read-only map token (the embed token /app uses too)."""
    return str(page.evaluate("() => JSON.parse(document.getElementById('wayview-config')"
                             ".textContent).token"))
