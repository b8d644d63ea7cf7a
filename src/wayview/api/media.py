"""wayview.api.media: thumbnails and originals, public (no token), CORS, long cache (spec §6.1)."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from wayview.api.errors import AssetNotFound
from wayview.blobs.base import IMAGE_VARIANTS, image_blob_key
from wayview.ids import parse_id

if TYPE_CHECKING:
    from wayview.api.app import Context


async def image_variant(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /media/images/{id}/{variant}.jpg."""
    image_id = parse_id(match["id"])
    variant = match["variant"]
    if image_id is None or variant not in IMAGE_VARIANTS:
        raise AssetNotFound()
    key = image_blob_key(image_id, variant)
    headers = {"cache-control": f"public, max-age={ctx.settings.asset_max_age_s}, immutable"}
    path = ctx.blobs.local_path(key)
    if path is None:  # object storage: proxied through this server
        try:
            data = await asyncio.to_thread(ctx.blobs.get_bytes, key)
        except FileNotFoundError:
            raise AssetNotFound() from None
        return Response(data, media_type="image/jpeg", headers=headers)
    if not path.is_file():
        raise AssetNotFound()
    return FileResponse(path, media_type="image/jpeg", headers=headers)
