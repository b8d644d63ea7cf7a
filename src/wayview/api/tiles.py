"""wayview.api.tiles: GET /maps/vtp/{tileset}/2/{z}/{x}/{y} (spec §4.1)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from wayview.errors import TileNotFound
from wayview.tiles.service import parse_tile_request

if TYPE_CHECKING:
    from wayview.api.app import Context

MVT_TYPE = "application/vnd.mapbox-vector-tile"


def _accepts_gzip(request: Request) -> bool:
    """Whether `Accept-Encoding` allows gzip (a `q=0` refuses it)."""
    for item in request.headers.get("accept-encoding", "").split(","):
        name, _, params = item.partition(";")
        if name.strip().lower() not in ("gzip", "*"):
            continue
        q = params.strip().lower()
        if q.startswith("q="):
            try:
                return float(q[2:]) > 0
            except ValueError:
                return False
        return True
    return False


async def tile(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """A Mapbox Vector Tile; empty tiles are 200 with an empty body."""
    z, x, y = parse_tile_request(match["tileset"], match["version"], match["z"], match["x"],
                                 match["y"])
    rendered = await ctx.tiles.tile(match["tileset"], z, x, y)
    headers = {
        "cache-control": f"public, max-age={ctx.settings.tiles.cache_max_age_s}",
        "etag": rendered.etag,
        "vary": "Accept-Encoding",
    }
    if_none_match = request.headers.get("if-none-match")
    if if_none_match and rendered.etag in [t.strip() for t in if_none_match.split(",")]:
        return Response(status_code=304, headers=headers)
    body = rendered.body
    if body and _accepts_gzip(request):
        body = rendered.gzipped()
        headers["content-encoding"] = "gzip"
    return Response(body, media_type=MVT_TYPE, headers=headers)


async def not_a_tile(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """Anything else under /maps/vtp is E15."""
    raise TileNotFound()
