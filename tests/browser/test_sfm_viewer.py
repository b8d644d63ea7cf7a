"""Browser: MapillaryJS in `/embed` uses the real SfM mesh while it moves along the Lund walk
(issue #16), in headless Chromium with every non-loopback request aborted.

The world: the 29 Lund photos (../shared/data/opensfm_lund) imported with
`pipeline.positioner = sfm`; the live server's own worker runs the sfm job, and the test waits
until the Graph API serves its results. Screenshots go to `artifacts/browser/`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.acceptance.live import live_server, wayview, wayview_json
from tests.browser.harness import WAIT_MS, launch_chromium, need, offline_context, screenshot

from wayview.pipeline.sfm import sfm_unavailable

pytestmark = [pytest.mark.slow]

LUND = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "opensfm_lund").resolve()
ENV = {"WAYVIEW_PIPELINE__POSITIONER": "sfm", "WAYVIEW_PIPELINE__BLURRER": "none",
       "WAYVIEW_PIPELINE__DETECTORS": "none"}
SFM_WAIT_S = 300.0


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium()


@pytest.fixture(scope="module")
def lund_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    reason = sfm_unavailable()
    need(reason is None, f"structure from motion: {reason}")
    if not (LUND / "images").is_dir():  # licensed data beside the repo: skip, even in CI
        pytest.skip(f"shared Lund data not available: {LUND} (../shared beside the repo)")
    root = tmp_path_factory.mktemp("sfm-browser")
    data = root / "data"
    wayview_json("users", "create", "lund", data_dir=data, cwd=root, env=ENV)
    app = wayview_json("apps", "create", "sfm viewer", "--owner", "lund", "--scope", "read",
                       data_dir=data, cwd=root, env=ENV)
    report = json.loads(wayview("import", str(LUND / "images"), "--user", "lund", "--json",
                                data_dir=data, cwd=root, env=ENV).strip().splitlines()[-1])
    assert report["imported"] == 29, report
    sequence_id = report["sequences"][0]["id"]
    with live_server(data, root / "server.log", cwd=root, env=ENV) as server, \
            httpx.Client(trust_env=False, timeout=10) as http:
        headers = {"Authorization": f"OAuth {app['client_token']}"}
        deadline = time.monotonic() + SFM_WAIT_S
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:  # the server's worker runs the sfm job
            r = http.get(f"{server.base_url}/images", headers=headers, params={
                "sequence_ids": sequence_id,
                "fields": "id,captured_at,atomic_scale,mesh,merge_cc,computed_geometry"})
            assert r.status_code == 200, r.text
            rows = r.json()["data"]
            if rows and all(row.get("atomic_scale", 1.0) != 1.0 for row in rows):
                break
            time.sleep(2.0)
        else:
            log = (root / "server.log").read_text(errors="replace")[-3000:]
            raise AssertionError(f"the sfm job did not finish in {SFM_WAIT_S:.0f} s:\n{log}")
        rows.sort(key=lambda row: row["captured_at"])
        yield {"server": server, "rows": rows}


def _mesh_of_current(page: Any) -> dict[str, Any]:
    """The current image's mesh as MapillaryJS holds it (after it fetched and parsed it)."""
    handle = page.wait_for_function("""async () => {
        const image = await window.wayview.viewer.getImage();
        if (!image || !image.mesh || image.mesh.vertices.length === 0) return false;
        const v = Array.from(image.mesh.vertices);
        return {id: image.id, scale: image.scale, merged: image.merged,
                count: v.length / 3, depths: v.filter((_, i) => i % 3 === 2)};
    }""", timeout=WAIT_MS)
    value: dict[str, Any] = handle.json_value()
    return value


def test_mapillaryjs_moves_along_lund_on_the_real_mesh(browser: Any,
                                                       lund_world: dict[str, Any]) -> None:
    rows = lund_world["rows"]
    base = lund_world["server"].base_url
    start, after = rows[10]["id"], rows[11]["id"]
    context, offline = offline_context(browser, viewport={"width": 1000, "height": 640})
    page = context.new_page()
    errors: list[str] = []
    meshes: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("response", lambda r: meshes.append(r.url) if r.url == rows[10]["mesh"]["url"]
            or r.url == rows[11]["mesh"]["url"] else None)
    try:
        page.goto(f"{base}/embed?image_key={start}&style=photo")
        page.wait_for_function(
            "id => window.wayview && window.wayview.state.imageEvents.includes(id)",
            arg=start, timeout=WAIT_MS)
        first = _mesh_of_current(page)
        assert first["id"] == start and first["merged"] is True
        assert first["scale"] == pytest.approx(rows[10]["atomic_scale"])
        # The real mesh: 81 vertices at the depths of the points the photo sees, not the
        # flat plane (one depth) the GPS track gives.
        assert first["count"] == 81
        depths = first["depths"]
        assert min(depths) > 0 and max(depths) > 1.5 * min(depths)
        screenshot(page, "sfm-lund-before")
        page.evaluate("() => window.wayview.viewer.moveDir("
                      "window.wayview.NavigationDirection.Next)")
        page.wait_for_timeout(350)  # mid-transition: the two meshes blend
        screenshot(page, "sfm-lund-transition")
        page.wait_for_function(
            "id => window.wayview.state.imageEvents.includes(id)", arg=after, timeout=WAIT_MS)
        second = _mesh_of_current(page)
        assert second["id"] == after and second["count"] == 81
        assert max(second["depths"]) > 1.5 * min(second["depths"])
        screenshot(page, "sfm-lund-after")
        assert rows[10]["mesh"]["url"] in meshes and rows[11]["mesh"]["url"] in meshes
        assert not errors, errors
        assert not offline.blocked, offline.blocked
    finally:
        context.close()
