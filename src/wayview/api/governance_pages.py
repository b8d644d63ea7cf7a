"""wayview.api.governance_pages: the web pages of issue #17's governance: organizations and
their members, the moderation queue with the audit log, and reporting an image.

    /account/organizations                 yours and your invitations; create one
    /account/organizations/{id}            members; invite, change roles, remove (admins)
    /moderation                            the report queue and the audit log you may read
    /report/{image_id}                     report an image (linked from the viewer)

Server-rendered like the account pages: a browser session, CSRF-checked forms, and the same
rules as the API (`wayview.auth.governance`).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from wayview.api.accounts import _form, _Page, _signed_in_page
from wayview.api.routing import Route
from wayview.auth import governance
from wayview.auth.permissions import may_manage_organization
from wayview.errors import WayviewError
from wayview.graph.render import served_url
from wayview.model.entities import REPORT_REASONS, Image

if TYPE_CHECKING:
    from starlette.requests import Request

    from wayview.api.app import Context

_RESOLVED = {"delete": "Image deleted; its reports are resolved.",
             "hide": "Image hidden; its reports are resolved.",
             "dismiss": "Report dismissed."}
_REASON_TEXT = {"privacy": "Privacy: an unblurred face, plate or private place",
                "offensive": "Offensive or inappropriate content",
                "wrong_location": "Wrong location or direction",
                "other": "Something else"}


def _when(ms: int | None) -> str:
    if not ms:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M")


def _thumb(image: Image) -> str:
    """The served thumbnail of an image's current media version (re-blurred ones move)."""
    return served_url("", image.id, "thumb_256", image.media_version)


def _render(page: _Page, template: str, title: str, status: int = 200,
            **values: Any) -> Response:
    folder = "accounts" if template == "message.html" else "governance"
    response = page.render(template, title, status=status, folder=folder, when=_when,
                           thumb=_thumb, **values)
    # Thumbnails of reported images come from this server's /media/ (always proxied).
    response.headers["Content-Security-Policy"] += "; img-src 'self'"
    return response


async def _user(ctx: Context, request: Request) -> tuple[_Page, Response | None, int]:
    page, away = await _signed_in_page(ctx, request)
    return page, away, page.session.user.id if page.session else 0


# -- organizations --------------------------------------------------------------------------
async def organizations_page(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /account/organizations; POST creates one."""
    page, away, user_id = await _user(ctx, request)
    if away is not None:
        return away
    values = {"slug": "", "name": "", "description": ""}
    error = None
    if request.method == "POST":
        form = await _form(page)
        values = {k: form.get(k, "") for k in values}
        try:
            org = await governance.create_organization(
                ctx.store, user_id, values["slug"], name=values["name"],
                description=values["description"])
        except WayviewError as exc:
            error = exc.message
        else:
            return page.redirect(f"/account/organizations/{org.id}?done=created")
    memberships = await ctx.store.memberships_of(user_id)
    orgs = await ctx.store.get_organizations([m.organization_id for m in memberships])
    rows = [(m, orgs[m.organization_id]) for m in memberships if m.organization_id in orgs]
    return _render(page, "organizations.html", "Your organizations",
                   status=400 if error else 200, error=error, rows=rows, form=values)


_ORG_NOTICES = {"created": "Organization created: you are its admin.",
                "invited": "Invitation sent: it shows on their organizations page.",
                "role": "Role changed.", "removed": "Member removed.",
                "joined": "Welcome: you are a member now."}


async def organization_page(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /account/organizations/{id}; POST …/{id}/{action} (invite, remove, join, leave)."""
    page, away, user_id = await _user(ctx, request)
    if away is not None:
        return away
    org_id = int(match["id"])
    action = match.groupdict().get("action")
    error = None
    if request.method == "POST" and action:
        form = await _form(page)
        try:
            done = await _organization_action(ctx, user_id, org_id, action, form.get)
        except WayviewError as exc:
            error = exc.message
        else:
            target = ("/account/organizations" if action == "leave"
                      else f"/account/organizations/{org_id}")
            return page.redirect(f"{target}?done={done}")
    try:
        org = await governance.organization(ctx.store, org_id)
        members = await governance.members(ctx.store, user_id, org_id)
    except WayviewError as exc:
        return _render(page, "message.html", "Organization", status=404, message=exc.message)
    mine = next((m for m in members if m.user_id == user_id), None)
    return _render(page, "organization.html", org.name or org.slug,
                   status=400 if error else 200, error=error, org=org, members=members,
                   mine=mine, notice=_ORG_NOTICES.get(request.query_params.get("done", "")),
                   manage=await may_manage_organization(ctx.store, user_id, org_id))


async def _organization_action(ctx: Context, user_id: int, org_id: int, action: str,
                               get: Any) -> str:
    if action == "invite":
        username = get("username", "").strip()
        existing = await ctx.store.get_user_by_username(username) if username else None
        before = (await ctx.store.get_membership(org_id, existing.id)) if existing else None
        await governance.invite(ctx.store, user_id, org_id, username,
                                get("role", "member"))
        return "role" if before is not None else "invited"
    if action == "remove":
        raw = get("user_id", "")
        await governance.remove_member(ctx.store, user_id, org_id,
                                       int(raw) if raw.isdigit() and len(raw) < 17 else 0)
        return "removed"
    if action == "join":
        await governance.accept(ctx.store, user_id, org_id)
        return "joined"
    await governance.remove_member(ctx.store, user_id, org_id, user_id)  # leave, decline
    return "left"


# -- moderation -------------------------------------------------------------------------------
async def moderation_page(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /moderation (`?status=open|resolved`); POST /moderation/reports/{id} resolves,
    POST /moderation/images/{id}/unhide shows a hidden image again."""
    page, away, user_id = await _user(ctx, request)
    if away is not None:
        return away
    error = notice = None
    if request.method == "POST":
        form = await _form(page)
        groups = match.groupdict()
        try:
            if groups.get("image"):
                await governance.unhide_image(ctx.store, user_id, int(groups["image"]))
                notice = "The image is shown again."
            else:
                action = form.get("action")
                await governance.resolve(ctx.store, user_id, int(match["report"]), action,
                                         form.get("note"))
                notice = _RESOLVED.get(action, "Report dismissed.")
        except WayviewError as exc:
            error = exc.message
            notice = None
    status = request.query_params.get("status", "open")
    status = status if status in ("open", "resolved") else "open"
    orgs = await governance.moderated_organizations(ctx.store, user_id)
    if orgs == ():
        return _render(page, "message.html", "Moderation", status=403,
                       message="Only moderators and organization admins see reports.")
    reports = await governance.queue(ctx.store, user_id, status=status, limit=200)
    images = await ctx.store.get_images([r.image_id for r in reports])
    actor_filter, org_filter = await governance.audit_scope(ctx.store, user_id)
    entries = await ctx.store.audit_entries(actor_id=actor_filter,
                                            organization_ids=org_filter, limit=50)
    hidden = await governance.hidden_queue(ctx.store, user_id, limit=200)
    return _render(page, "moderation.html", "Moderation", status=400 if error else 200,
                   error=error, notice=notice, reports=reports, images=images, hidden=hidden,
                   status_shown=status, entries=entries, reason_text=_REASON_TEXT)


async def report_page(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /report/{image_id}: the form; POST sends the report."""
    page, away, user_id = await _user(ctx, request)
    if away is not None:
        return away
    image_id = int(match["id"])
    image = (await ctx.store.get_images([image_id])).get(image_id)
    if image is None:
        return _render(page, "message.html", "Report an image", status=404,
                       message="That image does not exist (any more).")
    values = {"reason": "", "comment": ""}
    if request.method == "POST":
        form = await _form(page)
        values = {"reason": form.get("reason"), "comment": form.get("comment")}
        try:
            await governance.report_image(ctx.store, user_id, image_id, values["reason"],
                                          values["comment"])
        except WayviewError as exc:
            return _render(page, "report.html", "Report an image", status=400,
                           error=exc.message, image=image, form=values,
                           reasons=REPORT_REASONS, reason_text=_REASON_TEXT)
        return _render(page, "message.html", "Thank you",
                       message="Your report is in the moderators' queue.")
    return _render(page, "report.html", "Report an image", image=image, form=values,
                   reasons=REPORT_REASONS, reason_text=_REASON_TEXT)


async def close_account_page(ctx: Context, request: Request, match: re.Match[str]
                             ) -> Response:
    """POST /account/close: the signed-in user closes their account (typing their username
    confirms), then is signed out."""
    from wayview.api.accounts import SESSION_COOKIE, _secure
    from wayview.pipeline.export import discard_exports

    page, away, user_id = await _user(ctx, request)
    if away is not None:
        return away
    form = await _form(page)
    assert page.session is not None
    if form.get("confirm").strip().lower() != page.session.user.username.lower():
        return _render(page, "message.html", "Account not closed", status=400,
                       message="The username you typed does not match: nothing was deleted.")
    report, hashes = await governance.close_account(ctx.store, user_id, user_id)
    ctx.authenticator.forget_hashes(hashes)
    await discard_exports(ctx.store, ctx.blobs, user_id)
    page.session = None
    response = _render(page, "message.html", "Account closed",
                       message=f"Your account and its {report.images} images were deleted.")
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax",
                           secure=_secure(ctx))
    return response


_r = re.compile
_PAGE = frozenset({"GET", "HEAD", "POST"})
_GET = frozenset({"GET", "HEAD"})
_POST = frozenset({"POST"})

#: Page routes: no token (the browser session decides), not counted against app budgets.
ROUTES: list[Route] = [
    Route(_r(r"/account/organizations"), _PAGE, organizations_page, auth=False, budget=None),
    Route(_r(r"/account/organizations/(?P<id>[0-9]{1,16})"), _GET, organization_page,
          auth=False, budget=None),
    Route(_r(r"/account/organizations/(?P<id>[0-9]{1,16})/(?P<action>invite|remove|join|leave)"),
          _POST, organization_page, auth=False, budget=None),
    Route(_r(r"/moderation"), _GET, moderation_page, auth=False, budget=None),
    Route(_r(r"/moderation/reports/(?P<report>[0-9]{1,16})"), _POST, moderation_page,
          auth=False, budget=None),
    Route(_r(r"/moderation/images/(?P<image>[0-9]{1,16})/unhide"), _POST, moderation_page,
          auth=False, budget=None),
    Route(_r(r"/report/(?P<id>[0-9]{1,16})"), _PAGE, report_page, auth=False, budget=None),
    Route(_r(r"/account/close"), _POST, close_account_page, auth=False, budget=None),
]
