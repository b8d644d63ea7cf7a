"""wayview.api.upload_page: upload photos from the browser (issue #18, "Upload from the browser").

- `GET /upload`: the page (signed-in users; others are sent to /signin?next=/upload). The
  script (`web/src/upload.js`) checks each dropped photo or zip in the browser, keeps the
  good photos in IndexedDB, and sends them through the upload service mapillary_tools uses
  (`{upload.path_prefix}/{session_key}`, then `POST /finish_upload` with a bundle manifest).
- `POST /account/upload-token`: a user token with the `upload` scope only, valid
  `UPLOAD_TOKEN_TTL_S`, for the page's script. Needs the web session cookie and the page's
  CSRF token in the `X-CSRF-Token` header, and refuses requests a browser marks as coming
  from another site (`Sec-Fetch-Site`). The token is stored hashed like every token, is
  never put into the page's HTML and lives only in the script's memory; the page asks for
  a new one when it nears expiry or gets a 401.
- `GET /account/uploads/{cluster_id}`: JSON the page polls after `finish_upload`: the
  state of the upload's processing (queued, processing, done, failed), the sequences it
  made (first image, extent, line) and the photos the server dropped, with their reasons.
  The uploader's own uploads only (anything else is E7, as for an unknown id).

The JSON endpoints answer errors in the Graph envelope (wayview.api.errors).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from wayview import metrics
from wayview.api import web
from wayview.api.accounts import CSRF_COOKIE, _Page, _page, _signed_in_page
from wayview.api.responses import json_response
from wayview.api.routing import Route
from wayview.auth.embed import EmbedDisabled, embed_token
from wayview.auth.tokens import issue_user_token
from wayview.errors import (
    NodeNotFound,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
)
from wayview.model.entities import ImageSearch, UploadFinish, User

if TYPE_CHECKING:
    from wayview.api.app import Context

#: Lifetime of a page's upload token: long enough for one photo on a slow link, short enough
#: that a copy of it is soon worthless. The page renews it before it expires.
UPLOAD_TOKEN_TTL_S = 3600
#: Upload tokens one user may mint per hour (a page mints one per hour of uploading, and
#: one per reload).
UPLOAD_TOKENS_PER_HOUR = 120
#: Sequences whose line the status URL returns (an upload makes one per 1000 photos).
_MAX_SEQUENCES_SHOWN = 20
CSRF_HEADER = "x-csrf-token"
_SIGN_IN_FIRST = "Sign in to upload: your session has ended."


# -- the page -----------------------------------------------------------------------------------
async def upload_page(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /upload: drop photos or zips; they upload, are processed, and show on a map."""
    page, away = await _signed_in_page(ctx, request)
    if away is not None:
        return away
    assert page.session is not None
    user = page.session.user
    assets = web._assets(web.STATIC_ROOT)
    if assets is None:
        return page.render("message.html", "Upload not available", status=503,
                           message="The front-end was not built on this server "
                                   "(run `make install`).")
    try:
        token = await embed_token(ctx.store, ctx.authenticator, ctx.server_secret)
    except EmbedDisabled:
        token = ""  # no map: the page links to /app instead
    config = web._config(ctx, token, assets, None, upload=await _upload_config(ctx, page, user))
    response = page.render("upload.html", "Upload photos", folder="upload", assets=assets,
                           config=config)
    # Its scripts from this server only (no eval: no MapillaryJS here); data from this server
    # and the origins the map uses; never framed.
    response.headers["Content-Security-Policy"] = web.map_page_csp(ctx, "'none'", allow_eval=False)
    return response


async def _upload_config(ctx: Context, page: _Page, user: User) -> dict[str, Any]:
    """What the script needs besides the map: where to send what, and the server's limits."""
    settings = ctx.settings
    memberships = [m for m in await ctx.store.memberships_of(user.id) if m.status == "active"]
    orgs = await ctx.store.get_organizations([m.organization_id for m in memberships])
    return {
        "user": {"id": str(user.id), "username": user.username},
        "csrf": ctx.accounts.csrf_token(page.csrf_cookie),
        "prefix": settings.upload.path_prefix,
        "tokenUrl": "/account/upload-token",
        "statusUrl": "/account/uploads/",
        "finishUrl": "/finish_upload",
        "maxImageBytes": settings.upload.max_image_bytes,
        "maxImages": settings.upload.max_images,
        "maxSequenceLength": min(settings.upload.max_sequence_length,
                                 settings.imports.max_sequence_length),
        "maxTimeGapS": settings.imports.max_time_gap_s,
        "maxDistanceGapM": settings.imports.max_distance_gap_m,
        "organizations": [{"id": str(o.id), "name": o.name or o.slug}
                          for o in sorted(orgs.values(), key=lambda o: (o.name or o.slug).lower())],
    }


# -- JSON for the page's script -----------------------------------------------------------------
async def _signed_in_user(ctx: Context, request: Request) -> User:
    page = await _page(ctx, request)
    if page.session is None:
        raise Unauthenticated(_SIGN_IN_FIRST)
    return page.session.user


def _check_same_site(ctx: Context, request: Request) -> None:
    """Refuse what a browser says comes from elsewhere, and anything without the page's CSRF
    token (bound to this browser's CSRF cookie, compared in constant time)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site != "same-origin":
        raise PermissionDenied("upload tokens are given to this site's upload page only")
    if not ctx.accounts.csrf_ok(request.cookies.get(CSRF_COOKIE),
                                request.headers.get(CSRF_HEADER)):
        raise PermissionDenied("the request did not come from this site's upload page "
                               "(reload the page)")


async def upload_token(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """POST /account/upload-token: a short-lived user token with the `upload` scope."""
    user = await _signed_in_user(ctx, request)
    _check_same_site(ctx, request)
    decision = await ctx.limiter.hit(f"upload-token:{user.id}", UPLOAD_TOKENS_PER_HOUR, 3600)
    if not decision.allowed:
        metrics.rate_limit_refused("upload_token")
        raise RateLimited(decision.retry_after_s, decision.usage_percent)
    issued = await issue_user_token(ctx.store, user, scopes=("upload",),
                                    ttl_s=UPLOAD_TOKEN_TTL_S)
    response = json_response({"access_token": issued.access_token, "token_type": "bearer",
                              "expires_in": issued.expires_in})
    response.headers["Cache-Control"] = "no-store"
    return response


async def upload_status(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /account/uploads/{cluster_id}: the processing state of one of the user's uploads."""
    user = await _signed_in_user(ctx, request)
    raw = match["cluster_id"]
    cluster_id = int(raw)
    finish = await ctx.store.get_upload_finish(cluster_id) if cluster_id < 2**63 else None
    if finish is None or finish.user_id != user.id:
        raise NodeNotFound(raw, "get")
    response = json_response(await upload_state(ctx, finish))
    response.headers["Cache-Control"] = "no-store"
    return response


async def upload_state(ctx: Context, finish: UploadFinish) -> dict[str, Any]:
    """The JSON of the status URL for one finish."""
    body: dict[str, Any] = {"cluster_id": str(finish.cluster_id), "state": "queued",
                            "error": None, "imported": 0, "sequences": [], "dropped": [],
                            "dropped_count": 0}
    result = finish.result
    if result is None:
        job = await ctx.store.get_job(finish.job_id) if finish.job_id is not None else None
        if job is not None and job.state == "parked":
            body["state"] = "failed"
            body["error"] = ("Processing failed on the server; its operator can retry it "
                             f"(`wayview jobs retry {job.id}`).")
        elif job is not None and (job.state == "running" or job.attempts > 0):
            body["state"] = "processing"
        return body
    if result.get("state") != "done":
        body["state"] = "failed"
        body["error"] = str(result.get("error") or "processing failed")[:500]
        return body
    body["state"] = "done"
    body["imported"] = _int(result.get("imported"))
    body["dropped_count"] = _int(result.get("dropped_count"))
    dropped = result.get("dropped")
    if isinstance(dropped, list):
        body["dropped"] = [{"item": str(d.get("item", ""))[:200],
                            "reason": str(d.get("reason", ""))[:300]}
                           for d in dropped[:500] if isinstance(d, dict)]
    sequences = result.get("sequences")
    for seq in (sequences if isinstance(sequences, list) else [])[:_MAX_SEQUENCES_SHOWN]:
        if isinstance(seq, dict) and isinstance(seq.get("id"), str):
            body["sequences"].append(await _sequence(ctx, seq["id"]))
    return body


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


async def _sequence(ctx: Context, sequence_id: str) -> dict[str, Any]:
    """One sequence as the page draws it: its images in capture order as a line."""
    page = await ctx.store.search_images(ImageSearch(
        sequence_ids=(sequence_id,), limit=ctx.settings.upload.max_sequence_length))
    images = page.items
    line = [[round(im.lon, 7), round(im.lat, 7)] for im in images]
    bbox = ([min(p[0] for p in line), min(p[1] for p in line),
             max(p[0] for p in line), max(p[1] for p in line)] if line else None)
    return {"id": sequence_id, "images": len(images),
            "first_image_id": str(images[0].id) if images else None,
            "bbox": bbox, "line": line}


_r = re.compile
_read = frozenset({"GET", "HEAD"})

#: This module's routes (web pages and their JSON: session cookie, never a token).
ROUTES: list[Route] = [
    Route(_r(r"/upload"), _read, upload_page, auth=False, budget=None),
    Route(_r(r"/account/upload-token"), frozenset({"POST"}), upload_token, auth=False,
          budget=None),
    Route(_r(r"/account/uploads/(?P<cluster_id>[0-9]{1,19})"), _read, upload_status,
          auth=False, budget=None),
]
