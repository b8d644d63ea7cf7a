"""wayview.api.export_pages: the `/account/export` web page (issue #17; docs/export.md).

A signed-in user (web session, CSRF-checked form as on /account) starts an export of all of
their data, watches its progress (the page's one inline script polls
`/account/export/{id}/status` every second; without scripts the page reloads itself) and
downloads the zip from `/account/export/{id}/download`. Routes: `wayview.api.export.ROUTES`.
"""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

# The account pages' session and CSRF handling, shared rather than copied.
from wayview.api.accounts import _form, _signed_in_page
from wayview.api.responses import json_response
from wayview.errors import InvalidParameter
from wayview.pipeline.export import request_export, sweep_exports

if TYPE_CHECKING:
    from wayview.api.app import Context

_templates = Environment(
    loader=PackageLoader("wayview.api", "templates"),
    autoescape=select_autoescape(default=True),
    auto_reload=False,
)
#: The page runs one inline script (its nonce) that polls the status URL of its own origin.
_PAGE_CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; "
             "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


# -- the page -----------------------------------------------------------------------------
async def page(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /account/export: the signed-in user's exports; POST starts one (CSRF form)."""
    from wayview.api.export import export_json  # it imports this module for its ROUTES

    web, away = await _signed_in_page(ctx, request)
    if away is not None:
        return away
    assert web.session is not None
    user = web.session.user
    error = None
    if request.method == "POST":
        await _form(web)
        try:
            await request_export(ctx.store, ctx.blobs, ctx.settings, user, actor_id=user.id)
        except InvalidParameter as exc:
            error = exc.reason[:1].upper() + exc.reason[1:] + "."
        else:
            return web.redirect("/account/export?started=1")
    await sweep_exports(ctx.store, ctx.blobs, ctx.settings, user.id)
    listed = await ctx.store.list_exports(user.id, limit=ctx.settings.export.max_listed)
    rows = [export_json(ctx, e, "/account/export") for e in listed]
    active = any(e.state in ("queued", "running") for e in listed)
    nonce = secrets.token_urlsafe(16)
    notice = ("Your export has started. You can leave this page; it keeps going."
              if request.query_params.get("started") and error is None else None)
    html = _templates.get_template("export/export.html").render(
        title="Download your data", user=user,
        csrf_token=ctx.accounts.csrf_token(web.csrf_cookie),
        signup_enabled=ctx.settings.accounts.signup_enabled, exports=rows, active=active,
        ttl_hours=f"{ctx.settings.export.ttl_hours:g}", nonce=nonce, error=error, notice=notice)
    response = web.finish(HTMLResponse(html, status_code=400 if error else 200))
    response.headers["Content-Security-Policy"] = _PAGE_CSP.format(nonce=nonce)
    return response


async def page_export(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /account/export/{id}/status (JSON the page polls) and …/download (the zip), for
    the signed-in owner; anyone else gets 404."""
    from wayview.api.export import export_json, zip_response

    web, away = await _signed_in_page(ctx, request)
    if away is not None:
        return away
    assert web.session is not None
    user = web.session.user
    found = await ctx.store.get_export(int(match["id"]))
    if found is None or found.user_id != user.id:
        return web.finish(json_response({"error": "no such export"}, status=404))
    if match["what"] == "download":
        return await zip_response(ctx, user, found)
    return web.finish(json_response(export_json(ctx, found, "/account/export")))
