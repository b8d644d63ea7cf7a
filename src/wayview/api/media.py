"""wayview.api.media: thumbnails and originals, public (no token), CORS, long cache (spec §6.1)."""

from __future__ import annotations

import asyncio
import functools
import re
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from wayview.api.errors import AssetNotFound
from wayview.blobs.base import (
    BlobStore,
    blob_exists,
    cluster_blob_key,
    image_blob_key,
    is_public_variant,
    read_bytes,
    tile_level,
)
from wayview.ids import parse_id

if TYPE_CHECKING:
    from wayview.api.app import Context


async def image_variant(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /media/images/{id}/{variant}.jpg (thumbnails, original, pyramid tiles),
    /media/images/{id}/v{version}/{variant}.jpg (the same, re-blurred: issue #17) and
    /media/images/{id}/mesh.pbf.

    Each media version has its own URLs and keys, so every URL always names the same bytes
    and may be cached for a year; a replaced version's blobs are deleted (404). A hidden
    image's media answers 404 while it is hidden."""
    image_id = parse_id(match["id"])
    variant, ext = match["variant"], match["ext"]
    version = int(match["version"] or 0)
    if image_id is None or not is_public_variant(variant) or \
            (ext == "pbf") != (variant == "mesh") or (version and variant == "mesh"):
        raise AssetNotFound()
    if await ctx.store.hidden_among([image_id]):
        raise AssetNotFound()  # hidden by a moderator (issue #17), like a deleted image
    media_type = "application/x-protobuf" if ext == "pbf" else "image/jpeg"
    key = image_blob_key(image_id, variant, version)
    z = tile_level(variant)
    if z is not None and not await blob_exists(ctx.blobs, key):
        await _render_level(ctx, image_id, z, version)
    return await _blob(ctx, key, media_type)


class _Renders:
    """On-demand pyramid renders of one app in one event loop: at most
    `pipeline.on_demand_renders` at once, and concurrent requests for the same level share
    one render instead of decoding the original once each."""

    def __init__(self, limit: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.slots = asyncio.Semaphore(limit)
        self.running: dict[tuple[int, int, int], asyncio.Task[bool]] = {}

    async def render(self, key: tuple[int, int, int], fn: Callable[[], bool]) -> bool:
        task = self.running.get(key)
        if task is None:
            task = asyncio.ensure_future(self._run(fn))
            self.running[key] = task
            task.add_done_callback(lambda _: self.running.pop(key, None))
        return await asyncio.shield(task)

    async def _run(self, fn: Callable[[], bool]) -> bool:
        async with self.slots:
            return await asyncio.to_thread(fn)


_RENDERS: weakref.WeakKeyDictionary[BlobStore, _Renders] = weakref.WeakKeyDictionary()


def _renders(ctx: Context) -> _Renders:
    renders = _RENDERS.get(ctx.blobs)
    if renders is None or renders.loop is not asyncio.get_running_loop():
        renders = _RENDERS[ctx.blobs] = _Renders(ctx.settings.pipeline.on_demand_renders)
    return renders


async def _render_level(ctx: Context, image_id: int, z: int, version: int) -> None:
    """Render a pyramid level the pipeline did not store (levels below 11, older images);
    only valid levels of stored images in their served media version, bounded and never
    retried after a failure (`ensure_pyramid_level`)."""
    from wayview.pipeline.process import ensure_pyramid_level
    from wayview.pipeline.pyramid import levels

    image = (await ctx.store.get_images([image_id])).get(image_id)
    if image is None or image.media_version != version or \
            z not in levels(image.width, image.height):
        raise AssetNotFound()
    settings = ctx.settings.pipeline
    stored = await _renders(ctx).render(
        (image_id, z, version), functools.partial(ensure_pyramid_level, ctx.blobs, image, z,
                                         settings=settings))
    if not stored:
        raise AssetNotFound()


async def sequence_cluster(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /media/sequences/{sequence_id}/cluster.json.z: the zlib-compressed sfm_cluster."""
    try:
        key = cluster_blob_key(match["sequence"])
    except ValueError:
        raise AssetNotFound() from None
    return await _blob(ctx, key, "application/octet-stream")


async def _blob(ctx: Context, key: str, media_type: str) -> Response:
    headers = {"cache-control": f"public, max-age={ctx.settings.asset_max_age_s}, immutable"}
    path = ctx.blobs.local_path(key)
    if path is None:  # object storage: proxied through this server
        try:
            data = await read_bytes(ctx.blobs, key)
        except FileNotFoundError:
            raise AssetNotFound() from None
        return Response(data, media_type=media_type, headers=headers)
    if not path.is_file():
        raise AssetNotFound()
    return FileResponse(path, media_type=media_type, headers=headers)
