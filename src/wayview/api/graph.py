"""wayview.api.graph: Graph API handlers (parse → call the graph service → render JSON)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from wayview.api.responses import json_response
from wayview.errors import MissingParameter, NodeNotFound
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
    return json_response(await ctx.graph.node(match["id"], request.query_params.get("fields")))


async def delete_node(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """DELETE /{image_id} with the owner's user token (`write` scope): the image is gone at
    once from every endpoint and tile; its blobs and map features follow in a job.
    Answers `{"success": true}` like the Graph API. Another user's image, an unknown id or a
    node of another kind answers E7, as if it did not exist."""
    from wayview.pipeline.delete import request_deletion

    assert ctx.principal is not None
    node_id = match["id"]
    found = await ctx.store.get_images([int(node_id)]) if len(node_id) <= 16 else {}
    image = found.get(int(node_id)) if found else None
    if image is None or image.creator_id != ctx.principal.user_id:
        raise NodeNotFound(node_id, "delete")
    await request_deletion(ctx.store, [image.id])
    return json_response({"success": True})


async def me(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /me: the calling user (user token only)."""
    assert ctx.principal is not None
    return json_response(await ctx.graph.me(ctx.principal, request.query_params.get("fields")))


async def many(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /?ids=A,B and the SDK's GET /ids=A,B: nodes keyed by id."""
    ids = match.groupdict().get("ids") or request.query_params.get("ids")
    if not ids:
        raise MissingParameter("ids")
    return json_response(await ctx.graph.many(ids, request.query_params.get("fields")))


async def images(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /images: search by bbox, time, sequence, creator, organization, ids, S2 cell."""
    return _collection(ctx, request, await ctx.graph.images(request.query_params))


async def image_ids(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /image_ids?sequence_id=: a sequence's images in capture order."""
    return _collection(ctx, request, await ctx.graph.image_ids(request.query_params))


async def map_features(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /map_features: map features in a bbox."""
    return _collection(ctx, request, await ctx.graph.map_features(request.query_params))


async def detections(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /detections: detections whose image lies in a bbox."""
    return _collection(ctx, request, await ctx.graph.detections(request.query_params))


async def image_tiles(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /{image_id}/tiles?z=&fields=url,z,x,y."""
    params = request.query_params
    return _collection(ctx, request, await ctx.graph.image_tiles(
        match["id"], params.get("z"), params.get("fields")))


async def detections_of(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /{image_id}/detections and GET /{map_feature_id}/detections."""
    result = await ctx.graph.detections_of(match["id"], request.query_params.get("fields"))
    return _collection(ctx, request, result)
