"""wayview.api.edits: owners correct their data (issue #17): HTTP handlers.

Graph API (user token with the `write` scope; an image or sequence the caller may not manage
answers E7, as one that does not exist):

- `POST /{image_id}` with `compass_angle`, `lon` + `lat` or `geometry` (GeoJSON point),
  `captured_at` (ISO-8601 or milliseconds), as a form or JSON: `{"success": true}`;
- `POST /sequences/{sequence_id}/split` with `image_id`: `{"success": true, "id": new key}`;
- `POST /sequences/{sequence_id}/merge` with `sequence_id` (the other, merged in);
- `POST /sequences/{sequence_id}/reorder` with `image_ids` (every image, in the new order).

Web pages (session and CSRF as the account pages): `/account/sequences` lists the signed-in
user's sequences, `/account/sequences/{sequence_id}` shows one with forms to correct an image,
split, merge and reorder. The service is `wayview.pipeline.edits`.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote

import orjson
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from wayview.api.accounts import _form, _Page, _signed_in_page
from wayview.api.graph import node_writer
from wayview.api.responses import json_response
from wayview.api.routing import Route
from wayview.auth.permissions import may_manage_images
from wayview.errors import InvalidInput, InvalidParameter, MissingParameter, NodeNotFound
from wayview.ids import is_sequence_key, parse_id
from wayview.model.entities import Image, ImageSearch
from wayview.pipeline import edits

if TYPE_CHECKING:
    from wayview.api.app import Context

MAX_BODY_BYTES = 256 * 1024
_SEQUENCE = r"(?P<sequence_id>[A-Za-z0-9_-]{1,64})"
_templates = Environment(loader=PackageLoader("wayview.api", "templates"),
                         autoescape=select_autoescape(default=True), auto_reload=False)


# -- helpers ------------------------------------------------------------------------------------
async def _params(request: Request) -> dict[str, object]:
    """Query parameters overlaid with a form or a JSON object body (values kept as sent)."""
    params: dict[str, object] = dict(request.query_params)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise InvalidParameter("body", "too large")
    if not body.strip():
        return params
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json" or bytes(body).lstrip()[:1] == b"{":
        try:
            data = orjson.loads(bytes(body))
        except orjson.JSONDecodeError:
            raise InvalidParameter("body", "not valid JSON") from None
        if not isinstance(data, dict):
            raise InvalidParameter("body", "expected a JSON object")
        params.update({str(k): v for k, v in data.items()})
        return params
    try:
        pairs = parse_qsl(bytes(body).decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise InvalidParameter("body", "not UTF-8") from None
    for k, v in pairs:
        params.setdefault(k, v)
    return params


async def _image(ctx: Context, user_id: int | None, raw_id: str, method: str) -> Image:
    """An image the user may manage, else E7 (as an unknown id)."""
    image_id = parse_id(raw_id)
    image = (await ctx.store.get_images([image_id])).get(image_id) if image_id else None
    if image is None or not await may_manage_images(ctx.store, user_id, [image]):
        raise NodeNotFound(raw_id, method)
    return image


async def _sequence(ctx: Context, user_id: int | None, sequence_id: str) -> list[Image]:
    """The images of a sequence the user may manage, else E7 (as an unknown sequence)."""
    images = await edits.sequence_images(ctx.store, sequence_id) \
        if is_sequence_key(sequence_id) else []
    if not images or not await may_manage_images(ctx.store, user_id, images):
        raise NodeNotFound(sequence_id, "post")
    return images


def _required(params: dict[str, object], name: str) -> str:
    value = params.get(name)
    if value in (None, ""):
        raise MissingParameter(name)
    return str(value)


def _image_ids(params: dict[str, object]) -> list[int]:
    raw = params.get("image_ids")
    if raw in (None, ""):
        raise MissingParameter("image_ids")
    items = raw if isinstance(raw, list) else str(raw).split(",")
    ids = [parse_id(str(item).strip()) for item in items]
    if any(i is None for i in ids):
        raise InvalidParameter("image_ids", "expected comma-separated image ids")
    return [i for i in ids if i is not None]


def _user_id(ctx: Context) -> int | None:
    assert ctx.principal is not None
    return ctx.principal.user_id


# -- Graph API ----------------------------------------------------------------------------------
async def correct_image(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """POST /{image_id}: correct the compass angle, position or capture time of an image
    (a client token gets E7, as for GET-only nodes: `wayview.api.graph.node_writer`)."""
    user_id = node_writer(ctx, match["id"], "post")
    image = await _image(ctx, user_id, match["id"], "post")
    correction = edits.parse_correction(image.id, await _params(request))
    await edits.correct_image(ctx.settings.pipeline, ctx.store, image, correction,
                              actor_id=user_id)
    return json_response({"success": True})


async def split_sequence(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """POST /sequences/{sequence_id}/split (`image_id`): the new sequence's key."""
    user_id = _user_id(ctx)
    await _sequence(ctx, user_id, match["sequence_id"])
    raw = _required(await _params(request), "image_id")
    at = parse_id(raw)
    if at is None:
        raise InvalidParameter("image_id", "expected an image id")
    new_id = await edits.split_sequence(ctx.settings.pipeline, ctx.store,
                                        match["sequence_id"], at, actor_id=user_id)
    return json_response({"success": True, "id": new_id})


async def merge_sequences(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """POST /sequences/{sequence_id}/merge (`sequence_id`: the other, merged into this one)."""
    user_id = _user_id(ctx)
    await _sequence(ctx, user_id, match["sequence_id"])
    other = _required(await _params(request), "sequence_id")
    await _sequence(ctx, user_id, other)
    await edits.merge_sequences(ctx.settings.pipeline, ctx.store, match["sequence_id"], other,
                                actor_id=user_id)
    return json_response({"success": True})


async def reorder_sequence(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """POST /sequences/{sequence_id}/reorder (`image_ids` in the new order)."""
    user_id = _user_id(ctx)
    await _sequence(ctx, user_id, match["sequence_id"])
    ids = _image_ids(await _params(request))
    await edits.reorder_sequence(ctx.settings.pipeline, ctx.store, match["sequence_id"], ids,
                                 actor_id=user_id)
    return json_response({"success": True})


# -- web pages ----------------------------------------------------------------------------------
def _render(page: _Page, template: str, title: str, status: int = 200, **values: Any
            ) -> Response:
    html = _templates.get_template(f"edits/{template}").render(
        title=title, user=page.session.user if page.session else None,
        csrf_token=page.ctx.accounts.csrf_token(page.csrf_cookie),
        signup_enabled=page.ctx.settings.accounts.signup_enabled, **values)
    return page.finish(HTMLResponse(html, status_code=status))


def _when(ms: int | None) -> str:
    if ms is None:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[
        :-4] + "Z"


async def sequences_page(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /account/sequences: the signed-in user's sequences."""
    page, away = await _signed_in_page(ctx, request)
    if away is not None:
        return away
    assert page.session is not None
    rows = [{"id": s.id, "images": s.image_count, "first": _when(s.first_captured_at_ms),
             "last": _when(s.last_captured_at_ms)}
            for s in await ctx.store.sequences_of(page.session.user.id)]
    return _render(page, "sequences.html", "Your sequences", sequences=rows,
                   notice=_NOTICES.get(request.query_params.get("done", "")))


_NOTICES = {"corrected": "The image was corrected.", "split": "The sequence was split.",
            "deleted": "The sequence was deleted.", "image-deleted": "The image was deleted.",
            "merged": "The sequences were merged.", "reordered": "The images were reordered."}


async def _sequence_page(page: _Page, ctx: Context, sequence_id: str, status: int = 200,
                         **values: Any) -> Response:
    assert page.session is not None
    images = await _sequence(ctx, page.session.user.id, sequence_id)
    originals = await ctx.store.image_originals([im.id for im in images])
    others = [s.id for s in await ctx.store.sequences_of(page.session.user.id)
              if s.id != sequence_id]
    rows = [{"id": im.id, "lon": im.lon, "lat": im.lat, "compass": im.compass_angle_deg,
             "captured": _when(im.captured_at_ms), "corrected": im.id in originals}
            for im in images]
    return _render(page, "sequence.html", f"Sequence {sequence_id}", status=status,
                   sequence_id=sequence_id, images=rows, others=others, **values)


async def sequence_page(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /account/sequences/{sequence_id}: one sequence with forms to correct an image,
    split, merge and reorder; POST …/{action} runs one of them."""
    page, away = await _signed_in_page(ctx, request)
    if away is not None:
        return away
    assert page.session is not None
    sequence_id = match["sequence_id"]
    action = match.groupdict().get("action")
    if action is None:
        notice = _NOTICES.get(request.query_params.get("done", ""))
        try:
            return await _sequence_page(page, ctx, sequence_id, notice=notice)
        except NodeNotFound:
            return _render(page, "missing.html", "No such sequence", status=404)
    form = await _form(page)
    params: dict[str, object] = {k: v for k, v in form.first.items() if v != ""}
    user_id = page.session.user.id
    settings = ctx.settings.pipeline
    target = sequence_id
    try:
        await _sequence(ctx, user_id, sequence_id)
        if action in ("delete", "delete-image"):
            return await _delete_from_page(page, ctx, sequence_id, action, params)
        if action == "correct":
            image = await _image(ctx, user_id, _required(params, "image_id"), "post")
            if image.sequence_id != sequence_id:
                raise NodeNotFound(str(image.id), "post")
            await edits.correct_image(settings, ctx.store, image,
                                      edits.parse_correction(image.id, params), actor_id=user_id)
        elif action == "split":
            at = parse_id(_required(params, "image_id"))
            if at is None:
                raise InvalidParameter("image_id", "expected an image id")
            target = await edits.split_sequence(settings, ctx.store, sequence_id, at,
                                                actor_id=user_id)
        elif action == "merge":
            other = _required(params, "sequence_id")
            await _sequence(ctx, user_id, other)
            await edits.merge_sequences(settings, ctx.store, sequence_id, other,
                                        actor_id=user_id)
        else:
            await edits.reorder_sequence(settings, ctx.store, sequence_id, _image_ids(params),
                                         actor_id=user_id)
    except (InvalidInput, InvalidParameter, MissingParameter) as exc:
        return await _sequence_page(page, ctx, sequence_id, status=400, error=exc.message)
    done = {"correct": "corrected", "split": "split", "merge": "merged"}.get(action, "reordered")
    return page.redirect(f"/account/sequences/{quote(target)}?done={done}")


async def _delete_from_page(page: _Page, ctx: Context, sequence_id: str, action: str,
                            params: dict[str, object]) -> Response:
    """The page's deletions (issue #17, docs/deleting.md): one image of the sequence, or the
    whole sequence (the same rules and audit as `DELETE /{id}` and `/sequences/{id}`)."""
    from wayview.auth import governance

    assert page.session is not None
    user_id = page.session.user.id
    if action == "delete":
        await governance.delete_sequence(ctx.store, user_id, sequence_id)
        return page.redirect("/account/sequences?done=deleted")
    image = await _image(ctx, user_id, _required(params, "image_id"), "delete")
    if image.sequence_id != sequence_id:
        raise NodeNotFound(str(image.id), "delete")
    await governance.delete_image(ctx.store, user_id, image.id)
    if not (await ctx.store.search_images(ImageSearch(sequence_ids=(sequence_id,)))).items:
        return page.redirect("/account/sequences?done=deleted")
    return page.redirect(f"/account/sequences/{quote(sequence_id)}?done=image-deleted")


_r = re.compile
_POST = frozenset({"POST"})
_PAGE = frozenset({"GET", "HEAD"})

#: This module's routes, placed by app.py before the generic `/{id}` routes.
ROUTES: list[Route] = [
    Route(_r(r"/(?P<id>[0-9]+)"), _POST, correct_image),  # E7 to client tokens
    Route(_r(rf"/sequences/{_SEQUENCE}/split"), _POST, split_sequence, scope="write"),
    Route(_r(rf"/sequences/{_SEQUENCE}/merge"), _POST, merge_sequences, scope="write"),
    Route(_r(rf"/sequences/{_SEQUENCE}/reorder"), _POST, reorder_sequence, scope="write"),
    Route(_r(r"/account/sequences"), _PAGE, sequences_page, auth=False, budget=None),
    Route(_r(rf"/account/sequences/{_SEQUENCE}"), _PAGE, sequence_page, auth=False,
          budget=None),
    Route(_r(rf"/account/sequences/{_SEQUENCE}/(?P<action>correct|split|merge|reorder|delete"
             r"|delete-image)"),
          _POST, sequence_page, auth=False, budget=None),
]
