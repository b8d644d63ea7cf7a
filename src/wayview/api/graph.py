"""wayview.api.graph: Graph API handlers (parse → call the graph service → render JSON)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from wayview.api.responses import json_response
from wayview.auth import governance
from wayview.errors import MissingParameter, MissingScope, NodeNotFound, UserTokenRequired
from wayview.graph.service import Collection

if TYPE_CHECKING:
    from wayview.api.app import Context


def _collection(ctx: Context, request: Request, result: Collection) -> Response:
    """`{"data": [...]}`, plus `paging` when rows were cut off (spec §1.5)."""
    body: dict[str, object] = {"data": result.data}
    if result.after:
        pairs = [(k, v) for k, v in request.query_params.multi_items() if k != "after"]
        pairs.append(("after", result.after))
        query = urlencode(pairs, safe=",|{}")
        body["paging"] = {
            "cursors": {"after": result.after},
            "next": f"{ctx.settings.base_url}{request.url.path}?{query}",
        }
    return json_response(body)


async def healthz(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /healthz: liveness, no token."""
    return json_response({"status": "ok"})


async def node(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /{id}?fields=: one image, map feature, detection, organization or user."""
    return json_response(await ctx.graph.node(match["id"], request.query_params.get("fields"),
                                              viewer=ctx.principal))


def acting_user(ctx: Context) -> int:
    """The calling user's id; E2 ("a user access token is required") for client tokens."""
    assert ctx.principal is not None
    if ctx.principal.user_id is None:
        raise UserTokenRequired()
    return ctx.principal.user_id


def node_writer(ctx: Context, node_id: str, method: str) -> int:
    """The user changing a node with POST or DELETE /{id}. Such routes are open to every
    token, like GET /{id}: a client token gets E7, the answer for an operation the node does
    not support for the caller (spec E7: "wrong HTTP method" and "missing permissions"); a
    user token without the `write` scope gets E6."""
    assert ctx.principal is not None
    if ctx.principal.user_id is None:
        raise NodeNotFound(node_id, method)
    if "write" not in ctx.principal.scopes:
        raise MissingScope("write")
    return ctx.principal.user_id


async def delete_node(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """DELETE /{image_id} with a user token (`write` scope) of the owner, an admin of the
    image's organization or an instance admin: the image is gone at once from every endpoint
    and tile; its blobs and map features follow in a job. Answers `{"success": true}` like
    the Graph API. DELETE /{user_id} closes an account (the user or an instance admin).
    Anyone else, an unknown id or a node of another kind gets E7, as if it did not exist."""
    node_id = match["id"]
    actor = node_writer(ctx, node_id, "delete")
    if len(node_id) > 16:
        raise NodeNotFound(node_id, "delete")
    kind = (await ctx.store.node_kinds([int(node_id)])).get(int(node_id))
    if kind == "user":
        return await _close_account(ctx, int(node_id))
    await governance.delete_image(ctx.store, actor, int(node_id))
    return json_response({"success": True})


async def delete_me(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """DELETE /me: close the caller's account (see `_close_account`)."""
    return await _close_account(ctx, acting_user(ctx))


async def _close_account(ctx: Context, user_id: int) -> Response:
    """Delete an account (the user, or an instance admin): every image it uploaded, its data
    exports, its apps, tokens and sessions, then the account itself."""
    from wayview.pipeline.export import discard_exports

    report, hashes = await governance.close_account(ctx.store, acting_user(ctx), user_id)
    ctx.authenticator.forget_hashes(hashes)
    await discard_exports(ctx.store, ctx.blobs, user_id)
    return json_response({"success": True, "images": report.images})


async def delete_sequence(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """DELETE /sequences/{sequence_id}: every image of the sequence (same rules as an image;
    all or nothing)."""
    await governance.delete_sequence(ctx.store, acting_user(ctx), match["sequence"])
    return json_response({"success": True})


async def delete_user_images(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """DELETE /me/images, DELETE /{user_id}/images: every image a user uploaded (the user,
    or an instance admin), and their data exports. The account itself stays."""
    actor = acting_user(ctx)
    target = match.groupdict().get("id")
    if target is not None and len(target) > 16:
        raise NodeNotFound(target, "delete")
    user_id = int(target) if target else actor
    report = await governance.delete_user_images(ctx.store, actor, user_id)
    # Their data exports held those images too.
    from wayview.pipeline.export import discard_exports

    await discard_exports(ctx.store, ctx.blobs, user_id)
    return json_response({"success": True, "images": report.images})


async def me(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /me: the calling user (user token only)."""
    assert ctx.principal is not None
    return json_response(await ctx.graph.me(ctx.principal, request.query_params.get("fields")))


async def many(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /?ids=A,B and the SDK's GET /ids=A,B: nodes keyed by id."""
    ids = match.groupdict().get("ids") or request.query_params.get("ids")
    if not ids:
        raise MissingParameter("ids")
    return json_response(await ctx.graph.many(ids, request.query_params.get("fields"),
                                              viewer=ctx.principal))


async def images(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /images: search by bbox, time, sequence, creator, organization, ids, S2 cell."""
    return _collection(ctx, request, await ctx.graph.images(request.query_params,
                                                            viewer=ctx.principal))


async def image_ids(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /image_ids?sequence_id=: a sequence's images in capture order."""
    return _collection(ctx, request, await ctx.graph.image_ids(request.query_params,
                                                               viewer=ctx.principal))


async def map_features(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /map_features: map features in a bbox."""
    return _collection(ctx, request, await ctx.graph.map_features(request.query_params))


async def detections(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /detections: detections whose image lies in a bbox."""
    return _collection(ctx, request, await ctx.graph.detections(request.query_params,
                                                                viewer=ctx.principal))


async def image_tiles(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /{image_id}/tiles?z=&fields=url,z,x,y."""
    params = request.query_params
    return _collection(ctx, request, await ctx.graph.image_tiles(
        match["id"], params.get("z"), params.get("fields"), viewer=ctx.principal))


async def detections_of(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /{image_id}/detections and GET /{map_feature_id}/detections."""
    result = await ctx.graph.detections_of(match["id"], request.query_params.get("fields"),
                                           viewer=ctx.principal)
    return _collection(ctx, request, result)
