"""Browser: organizations, reporting from the viewer and moderation (issue #17) in headless
Chromium against a live `wayview serve`, every non-loopback request aborted.

Two people sign up in their own browser contexts: olga creates an organization and invites
pia, who accepts; pia opens an image in /app, follows the viewer's "Report this image" link
and reports three images; olga, made a moderator with `wayview role`, dismisses one report,
deletes the second image and hides the third (the API stops serving them), then shows the
hidden one again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.acceptance.live import wayview
from tests.browser.harness import (
    WAIT_MS,
    World,
    launch_chromium,
    offline_context,
    screenshot,
    seed_world,
)

pytestmark = [pytest.mark.slow]

PASSWORD = "correct horse 1"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield from seed_world(tmp_path_factory.mktemp("governance"))


def _person(browser: Any, world: World, username: str) -> tuple[Any, Any, list[str]]:
    context, offline = offline_context(browser, viewport={"width": 1100, "height": 750})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{world.base}/signup")
    page.fill("#username", username)
    page.fill("#email", f"{username}@example.org")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{world.base}/account")
    return context, page, errors


def test_organizations_reports_and_moderation_in_the_browser(browser: Any, world: World
                                                             ) -> None:
    olga_ctx, olga, olga_errors = _person(browser, world, "olga")
    pia_ctx, pia, pia_errors = _person(browser, world, "pia")
    # olga creates an organization and invites pia.
    olga.click("text=Organizations")
    olga.fill("#slug", "lund-walks")
    olga.fill("#name", "Lund walks")
    olga.click("text=Create organization")
    olga.wait_for_selector("text=Organization created")
    olga.fill("#username", "pia")
    olga.click("button:has-text('Invite')")
    olga.wait_for_selector("text=Invitation sent")
    screenshot(olga, "governance-organization")
    # pia accepts on her organizations page.
    pia.goto(f"{world.base}/account/organizations")
    assert pia.locator("text=(invited)").is_visible()
    pia.click("button:has-text('Accept')")
    pia.wait_for_selector("text=Welcome: you are a member now.")
    assert "active" in pia.locator("table").inner_text()
    # pia opens an image in the explorer; the viewer links to the report page of that image.
    target = world.image_ids[1]
    pia.goto(f"{world.base}/app?pKey={target}")
    pia.wait_for_function("id => window.wayview && window.wayview.state.imageEvents"
                          ".includes(id)", arg=target, timeout=WAIT_MS)
    link = pia.locator("#report-image")
    assert link.is_visible() and link.get_attribute("href") == f"/report/{target}"
    screenshot(pia, "governance-viewer-report-link")
    for image_id, reason, comment in ((target, "privacy", "a face, unblurred"),
                                      (world.image_ids[3], "offensive", "rude graffiti"),
                                      (world.image_ids[0], "privacy", "a number plate")):
        pia.goto(f"{world.base}/report/{image_id}")
        pia.check(f"input[name=reason][value={reason}]")
        pia.fill("#comment", comment)
        pia.click("text=Send report")
        pia.wait_for_selector("text=Your report is in the moderators' queue.")
    # olga is no moderator and the images are not her organization's: no such reports.
    olga.goto(f"{world.base}/moderation")
    assert "a face" not in olga.content()
    wayview("role", "olga", "moderator", data_dir=world.server.data_dir,
            cwd=world.server.data_dir.parent)
    olga.goto(f"{world.base}/moderation")
    rows = olga.locator("tr[id^=report-]")
    assert rows.count() == 3
    screenshot(olga, "governance-moderation-queue")
    privacy = olga.locator("tr", has_text="a face, unblurred")
    privacy.locator("input[name=note]").fill("blurred already")
    privacy.locator("button:has-text('Dismiss')").click()
    olga.wait_for_selector("text=Report dismissed.")
    olga.locator("tr", has_text="rude graffiti").locator(
        "button:has-text('Delete image')").click()
    olga.wait_for_selector("text=Image deleted; its reports are resolved.")
    olga.locator("tr", has_text="a number plate").locator(
        "button:has-text('Hide image')").click()
    olga.wait_for_selector("text=Image hidden; its reports are resolved.")
    assert olga.locator("tr[id^=report-]").count() == 0
    hidden = olga.locator(f"#hidden-{world.image_ids[0]}")
    assert hidden.is_visible()
    with httpx.Client(trust_env=False, timeout=10) as http:
        auth = {"Authorization": f"OAuth {world.client_token}"}
        assert http.get(f"{world.base}/{world.image_ids[0]}", headers=auth).status_code == 400
        hidden.locator("button:has-text('Show again')").click()
        olga.wait_for_selector("text=The image is shown again.")
        assert http.get(f"{world.base}/{world.image_ids[0]}", headers=auth).status_code == 200
    log = olga.locator("h2:has-text('Audit log') + table").inner_text()
    for action in ("report.delete", "report.dismiss", "report.hide", "image.unhide",
                   "report.create"):
        assert action in log, action
    screenshot(olga, "governance-moderation-done")
    # The API: the deleted image answers like an id that never existed; the other stays.
    with httpx.Client(trust_env=False, timeout=10) as http:
        auth = {"Authorization": f"OAuth {world.client_token}"}
        assert http.get(f"{world.base}/{world.image_ids[3]}", headers=auth).status_code == 400
        assert http.get(f"{world.base}/{target}", headers=auth).status_code == 200
    assert not olga_errors and not pia_errors
    olga_ctx.close()
    pia_ctx.close()
