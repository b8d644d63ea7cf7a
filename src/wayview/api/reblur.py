"""wayview.api.reblur: people fix an image's privacy blurring (issue #17, "Re-blur"): HTTP.

Graph API (a user token; the image's owner, an admin of its organization, an instance admin, or
one of its moderators — anyone else gets E7, as for an id that does not exist):

- `GET /{image_id}/blurs`: the blurrer's regions (`automatic`, each with an id), the regions
  people `added`, the automatic ids they `removed`, the served media `version`, the
  `revision` the newest edit renders as and its `state` (live, rendering, failed);
- `POST /{image_id}/blurs` (`write` scope) with a JSON body `{"add": [shapes], "remove":
  [ids]}` replacing the edits: `{"success": true, "version": N}`, N being the media version
  that will be served once the `reblur` job has rendered it (`wayview.pipeline.reblur`).

Web page (session and CSRF as the account pages): `/account/images/{image_id}/blur` shows the
unblurred original (`…/blur/source.jpg`, to the same people only, never cached) with the
regions drawn over it; people draw rectangles to add and click regions to remove, then save;
the page polls `…/blur/status` until the new version is served.
"""

from __future__ import annotations

import asyncio
import io
import re
import secrets
from typing import TYPE_CHECKING, Any

import orjson
from PIL import Image as PILImage
from starlette.requests import Request
from starlette.responses import Response

from wayview.api.accounts import _form, _Page, _signed_in_page
from wayview.api.edits import _params
from wayview.api.responses import json_response
from wayview.api.routing import Route
from wayview.auth.permissions import may_manage_images, may_moderate
from wayview.blobs.base import BlobStore, image_blob_key, private_source_key
from wayview.errors import InvalidInput, InvalidParameter, NodeNotFound
from wayview.graph.render import served_url
from wayview.ids import parse_id
from wayview.model.blurs import BlurEdits
from wayview.model.entities import Image
from wayview.pipeline import reblur
from wayview.pipeline.limits import allow_pillow_pixels
from wayview.pipeline.thumbnails import encode_jpeg, pillow_errors, strip_metadata_segments

if TYPE_CHECKING:
    from wayview.api.app import Context

#: The page's one inline script (its nonce) draws over the unblurred original and polls the
#: status URL; images come from this server only.
_PAGE_CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; "
             "img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
             "base-uri 'none'")
#: The page shows the unblurred original at most this wide.
_PREVIEW_WIDTH = 2048


# -- helpers ------------------------------------------------------------------------------------
async def editable_image(ctx: Context, user_id: int | None, raw_id: str, method: str) -> Image:
    """An image whose blurring the user may change, else E7 (as an unknown id)."""
    image_id = parse_id(raw_id)
    image = (await ctx.store.get_images([image_id])).get(image_id) if image_id else None
    if image is None or not (await may_manage_images(ctx.store, user_id, [image])
                             or await may_moderate(ctx.store, user_id, image.organization_id)):
        raise NodeNotFound(raw_id, method)
    return image


def blurs_json(ctx: Context, image: Image, edits: BlurEdits) -> dict[str, Any]:
    """The answer of GET /{image_id}/blurs (and of the page's status URL)."""
    base = ctx.settings.base_url
    return {
        "id": str(image.id), "width": image.width, "height": image.height,
        "version": image.media_version, "revision": max(edits.revision, image.media_version),
        "state": reblur.blur_status(image, edits), "error": edits.error,
        "automatic": [r.to_json() for r in edits.automatic or ()],
        "added": [s.to_json() for s in edits.added], "removed": list(edits.removed),
        "thumb_1024_url": served_url(base, image.id, "thumb_1024", image.media_version),
    }


def _json_value(params: dict[str, object], name: str) -> object:
    """A list sent as JSON, or as JSON text in a form field."""
    value = params.get(name)
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            raise InvalidParameter(name, "expected a JSON list") from None
    return value


def _user_id(ctx: Context) -> int | None:
    assert ctx.principal is not None
    return ctx.principal.user_id


# -- Graph API ----------------------------------------------------------------------------------
async def get_blurs(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /{image_id}/blurs: the image's blur regions and the state of its newest edit."""
    image = await editable_image(ctx, _user_id(ctx), match["id"], "get")
    edits = await reblur.blur_state(ctx.store, ctx.blobs, ctx.settings.pipeline, image)
    return json_response(blurs_json(ctx, image, edits))


async def post_blurs(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """POST /{image_id}/blurs (`add`, `remove`): replace the edits; the version to come."""
    user_id = _user_id(ctx)
    image = await editable_image(ctx, user_id, match["id"], "post")
    params = await _params(request)
    saved = await reblur.edit_blurs(ctx.store, ctx.blobs, ctx.settings.pipeline, image,
                                    _json_value(params, "add"), _json_value(params, "remove"),
                                    actor_id=user_id)
    return json_response({"success": True, "version": saved.revision})


# -- the web page -------------------------------------------------------------------------------
def _render(page: _Page, image: Image, edits: BlurEdits, status: int = 200,
            **values: Any) -> Response:
    nonce = secrets.token_urlsafe(16)
    state = blurs_json(page.ctx, image, edits)
    state["thumb_1024_url"] = served_url("", image.id, "thumb_1024", image.media_version)
    response = page.render("blur.html", f"Blurring of image {image.id}", status=status,
                           folder="reblur", image=image, state=state, nonce=nonce, **values)
    response.headers["Content-Security-Policy"] = _PAGE_CSP.format(nonce=nonce)
    return response


async def blur_page(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /account/images/{image_id}/blur: the editor; POST saves the edits (CSRF form with
    `edits`, the JSON {"add": …, "remove": …} the page's script fills in)."""
    page, away = await _signed_in_page(ctx, request)
    if away is not None:
        return away
    assert page.session is not None
    user_id = page.session.user.id
    try:
        image = await editable_image(ctx, user_id, match["id"], request.method.lower())
    except NodeNotFound:
        return page.render("message.html", "No such image", status=404,
                           message="There is no image with this id whose blurring you may "
                                   "change.")
    settings = ctx.settings.pipeline
    if request.method == "POST":
        form = await _form(page)
        try:
            try:
                body = orjson.loads(form.get("edits") or "{}")
            except orjson.JSONDecodeError:
                raise InvalidParameter("edits", "not valid JSON") from None
            if not isinstance(body, dict):
                raise InvalidParameter("edits", "expected a JSON object")
            await reblur.edit_blurs(ctx.store, ctx.blobs, settings, image, body.get("add"),
                                    body.get("remove"), actor_id=user_id)
        except (InvalidParameter, InvalidInput) as exc:
            edits = await reblur.blur_state(ctx.store, ctx.blobs, settings, image)
            return _render(page, image, edits, status=400, error=exc.message)
        return page.redirect(f"/account/images/{image.id}/blur?saved=1")
    edits = await reblur.blur_state(ctx.store, ctx.blobs, settings, image)
    notice = ("Saved. The image is being blurred again; this page shows it when it is served."
              if request.query_params.get("saved") else None)
    return _render(page, image, edits, notice=notice)


def _preview(blobs: BlobStore, image: Image, max_pixels: int) -> bytes:
    """The unblurred original (the served original when ingest blurred nothing), at most
    `_PREVIEW_WIDTH` wide."""
    try:
        data = blobs.get_bytes(private_source_key(image.id))
    except FileNotFoundError:
        if image.media_version != 0:
            raise
        data = blobs.get_bytes(image_blob_key(image.id, "original", 0))
    if image.width <= _PREVIEW_WIDTH:
        return data
    allow_pillow_pixels(max_pixels)
    with pillow_errors(), PILImage.open(io.BytesIO(strip_metadata_segments(data)),
                                        formats=("JPEG",)) as im:
        size = (_PREVIEW_WIDTH, max(1, round(image.height * _PREVIEW_WIDTH / image.width)))
        im.draft("RGB", size)
        small = im.convert("RGB").resize(size, PILImage.Resampling.BICUBIC)
    return encode_jpeg(small, None, 85)


async def blur_page_data(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /account/images/{image_id}/blur/source.jpg (the unblurred original, never cached)
    and …/blur/status (JSON the page polls), for those who may change the blurring; anyone
    else gets 404."""
    page, away = await _signed_in_page(ctx, request)
    if away is not None:
        return away
    assert page.session is not None
    try:
        image = await editable_image(ctx, page.session.user.id, match["id"], "get")
    except NodeNotFound:
        return page.finish(json_response({"error": "no such image"}, status=404))
    if match["what"] == "status":
        edits = await ctx.store.get_blur_edits(image.id) or BlurEdits(image.id)
        return page.finish(json_response(blurs_json(ctx, image, edits)))
    try:
        data = await asyncio.to_thread(_preview, ctx.blobs, image,
                                       ctx.settings.pipeline.max_image_pixels)
    except (FileNotFoundError, InvalidInput):
        return page.finish(json_response({"error": "no unblurred original"}, status=404))
    return page.finish(Response(data, media_type="image/jpeg"))


_r = re.compile
_ID = r"(?P<id>[0-9]{1,16})"

#: This module's routes, placed by app.py before the generic `/{id}` routes.
ROUTES: list[Route] = [
    Route(_r(rf"/{_ID}/blurs"), frozenset({"GET", "HEAD"}), get_blurs),
    Route(_r(rf"/{_ID}/blurs"), frozenset({"POST"}), post_blurs, scope="write"),
    Route(_r(rf"/account/images/{_ID}/blur"), frozenset({"GET", "HEAD", "POST"}), blur_page,
          auth=False, budget=None),
    Route(_r(rf"/account/images/{_ID}/blur/(?P<what>source\.jpg|status)"),
          frozenset({"GET", "HEAD"}), blur_page_data, auth=False, budget=None),
]
