"""The web pages of organizations, moderation and reporting (issue #17), driven like a
browser: sign in, read the page's CSRF token, post its forms."""

from __future__ import annotations

import re

import httpx
from tests.api.webforms import post_form, sign_up

from wayview.settings import Settings
from wayview.store import Store
from wayview.testing import add_sequence, app_client


async def test_pages_need_a_session(client: httpx.AsyncClient) -> None:
    for path in ("/account/organizations", "/moderation", "/report/1"):
        r = await client.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/signin?next=")


async def test_create_invite_accept_report_and_moderate_through_the_pages(
        client: httpx.AsyncClient, settings: Settings, store: Store) -> None:
    await sign_up(client, "olga")
    r = await post_form(client, "/account/organizations", "/account/organizations",
                        {"slug": "Bad Slug", "name": "x"})
    assert r.status_code == 400 and "lower-case letters" in r.text
    r = await post_form(client, "/account/organizations", "/account/organizations",
                        {"slug": "lund-walks", "name": "Lund walks"})
    assert r.status_code == 303
    org_path = r.headers["location"].split("?")[0]
    org_id = int(org_path.rsplit("/", 1)[1])
    page = await client.get(r.headers["location"])
    assert "Organization created" in page.text and "Lund walks" in page.text
    async with app_client(settings, store) as other:
        await sign_up(other, "pia")
        r = await post_form(client, org_path, f"{org_path}/invite", {"username": "pia"})
        assert r.status_code == 303 and r.headers["location"].endswith("done=invited")
        mine = await other.get("/account/organizations")
        assert "Lund walks" in mine.text and "(invited)" in mine.text
        r = await post_form(other, "/account/organizations", f"{org_path}/join", {})
        assert r.status_code == 303
        pia = await store.get_user_by_username("pia")
        assert pia is not None and await store.is_organization_member(org_id, pia.id)
        # A member is no admin: inviting fails with the reason on the page.
        r = await post_form(other, org_path, f"{org_path}/invite", {"username": "olga"})
        assert r.status_code == 400 and "only an organization&#39;s admins" in r.text
        # pia reports olga's own image (not the organization's): olga's queue, an
        # organization admin's, does not show it; pia, no admin of anything, has no queue;
        # an instance moderator sees every report.
        olga = await store.get_user_by_username("olga")
        assert olga is not None
        [image, *_] = await add_sequence(store, olga, [(13.19, 55.70), (13.1901, 55.70)],
                                         start_ms=1_700_000_000_000)
        r = await post_form(other, f"/report/{image.id}", f"/report/{image.id}",
                            {"reason": "privacy", "comment": "a face"})
        assert r.status_code == 200 and "moderators" in r.text
        assert "a face" not in (await client.get("/moderation")).text
        assert (await other.get("/moderation")).status_code == 403
        await store.set_user_role(olga.id, "moderator")
        queue = await client.get("/moderation")
        assert queue.status_code == 200 and "a face" in queue.text
        report_id = re.search(r'id="report-(\d+)"', queue.text)
        assert report_id is not None
        r = await post_form(client, "/moderation", f"/moderation/reports/{report_id[1]}",
                            {"action": "delete", "note": "unblurred face"})
        assert r.status_code == 200 and "Image deleted" in r.text
        assert (await store.get_images([image.id])) == {}
        # The audit log under the queue: the moderator's deletion, pia's report, the join.
        log = r.text[r.text.index("Audit log"):]
        assert log.index("report.delete") < log.index("report.create") < log.index(
            "organization.join")


async def test_closing_the_account_from_the_account_page(client: httpx.AsyncClient,
                                                         store: Store) -> None:
    await sign_up(client, "zed")
    zed = await store.get_user_by_username("zed")
    assert zed is not None
    await add_sequence(store, zed, [(13.19, 55.70), (13.1901, 55.70)],
                       start_ms=1_700_000_000_000)
    r = await post_form(client, "/account", "/account/close", {"confirm": "zedd"})
    assert r.status_code == 400 and "nothing was deleted" in r.text
    assert await store.get_user_by_username("zed") is not None
    r = await post_form(client, "/account", "/account/close", {"confirm": "ZED"})
    assert r.status_code == 200 and "its 2 images were deleted" in r.text
    assert await store.get_user_by_username("zed") is None
    assert (await client.get("/account")).status_code == 303  # signed out
