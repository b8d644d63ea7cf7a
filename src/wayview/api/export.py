"""wayview.api.export: users download all of their data (issue #17; docs/export.md).

Graph-style JSON with a user token carrying the `write` scope (an export holds the unblurred
originals, which no read-only app may get; the same scope deletes data):

- `POST /me/exports` queues an export (E9 while `export.max_concurrent_per_user` are active);
- `GET /me/exports` lists the caller's exports, `GET /me/exports/{id}` shows one (state,
  progress, size, expiry, `download_url` when done);
- `GET /me/exports/{id}/download` streams the zip.

Another user's export answers E7 like an id that never existed. The web page `/account/export`
(signed-in session, CSRF-checked form) does the same for people, with progress that updates
by itself (`/account/export/{id}/status`) and a download link.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from wayview.api import export_pages
from wayview.api.responses import json_response
from wayview.api.routing import Route
from wayview.errors import InvalidParameter, NodeNotFound
from wayview.graph.render import iso_utc
from wayview.model.entities import Export, User
from wayview.pipeline.export import (
    download_name,
    expire_due_exports,
    open_blob,
    request_export,
    sweep_exports,
)

if TYPE_CHECKING:
    from wayview.api.app import Context

_ID = r"(?P<id>[0-9]{1,16})"


def export_json(ctx: Context, export: Export, base_path: str = "/me/exports"
                ) -> dict[str, Any]:
    """An export as the API and the status URL answer it (absent values omitted)."""
    body: dict[str, Any] = {"id": str(export.id), "state": export.state,
                            "progress": export.progress, "total": export.total,
                            "created_at": iso_utc(export.created_at_ms)}
    if export.size_bytes is not None:
        body["size"] = export.size_bytes
    if export.finished_at_ms is not None:
        body["finished_at"] = iso_utc(export.finished_at_ms)
    if export.expires_at_ms is not None:
        body["expires_at"] = iso_utc(export.expires_at_ms)
    if export.error:
        body["error"] = export.error
    if export.state == "done":
        body["download_url"] = f"{ctx.settings.base_url}{base_path}/{export.id}/download"
    return body


async def _caller(ctx: Context) -> User:
    assert ctx.principal is not None and ctx.principal.user_id is not None
    user = (await ctx.store.get_users([ctx.principal.user_id])).get(ctx.principal.user_id)
    if user is None:
        raise NodeNotFound("me")
    return user


async def _owned(ctx: Context, user_id: int, raw_id: str) -> Export:
    """The caller's export `raw_id`; anyone else's (or none) answers E7."""
    export = await ctx.store.get_export(int(raw_id))
    if export is None or export.user_id != user_id:
        raise NodeNotFound(raw_id)
    return export


# -- API --------------------------------------------------------------------------------------
async def exports(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /me/exports: the caller's exports, newest first; POST /me/exports: a new one."""
    user = await _caller(ctx)
    if request.method == "POST":
        export = await request_export(ctx.store, ctx.blobs, ctx.settings, user,
                                      actor_id=user.id)
        return _no_store(json_response(export_json(ctx, export)))
    await sweep_exports(ctx.store, ctx.blobs, ctx.settings, user.id)
    listed = await ctx.store.list_exports(user.id, limit=ctx.settings.export.max_listed)
    return _no_store(json_response({"data": [export_json(ctx, e) for e in listed]}))


async def export(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /me/exports/{id}: one of the caller's exports."""
    user = await _caller(ctx)
    return _no_store(json_response(export_json(ctx, await _owned(ctx, user.id, match["id"]))))


async def download(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /me/exports/{id}/download: the zip of a done export, to its owner only."""
    user = await _caller(ctx)
    return await zip_response(ctx, user, await _owned(ctx, user.id, match["id"]))


async def zip_response(ctx: Context, user: User, export: Export) -> Response:
    """The zip of a done export: from the local file, a presigned S3 URL, or streamed."""
    if export.state == "done" and (export.expires_at_ms or 0) <= time.time() * 1000:
        await expire_due_exports(ctx.store, ctx.blobs)
        export = await ctx.store.get_export(export.id) or export
    if export.state != "done" or export.blob_key is None:
        raise InvalidParameter("id", f"export {export.id} is {export.state}, not done"
                               + (" (download it again by asking for a new export)"
                                  if export.state == "expired" else ""))
    name = download_name(user.username, export.id)
    headers = {"Cache-Control": "private, no-store",
               "Content-Disposition": f'attachment; filename="{name}"',
               "X-Content-Type-Options": "nosniff"}
    key = export.blob_key
    path = ctx.blobs.local_path(key)
    if path is not None:
        if not path.is_file():
            raise NodeNotFound(str(export.id))
        return FileResponse(path, media_type="application/zip", headers=headers)
    if getattr(ctx.blobs, "serve", "proxy") == "presigned":
        url = ctx.blobs.url_for(key)  # expiring, signed for this object only
        if url is not None:
            return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})
    blob = await asyncio.to_thread(open_blob, ctx.blobs, key)
    if blob is None:
        raise NodeNotFound(str(export.id))
    headers["Content-Length"] = str(blob.size)
    return StreamingResponse(blob.chunks, media_type="application/zip", headers=headers)


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


_r = re.compile
_GET = frozenset({"GET", "HEAD"})
#: This module's routes, placed by app.py before the generic `/{id}` routes.
ROUTES: list[Route] = [
    Route(_r(r"/me/exports"), frozenset({"GET", "HEAD", "POST"}), exports, scope="write"),
    Route(_r(rf"/me/exports/{_ID}"), _GET, export, scope="write"),
    Route(_r(rf"/me/exports/{_ID}/download"), _GET, download, scope="write"),
    # The web page (a signed-in session, no token; not in the OpenAPI document).
    Route(_r(r"/account/export"), frozenset({"GET", "HEAD", "POST"}), export_pages.page,
          auth=False, budget=None),
    Route(_r(rf"/account/export/{_ID}/(?P<what>status|download)"), _GET,
          export_pages.page_export, auth=False, budget=None),
]
