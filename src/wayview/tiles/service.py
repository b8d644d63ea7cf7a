"""wayview.tiles.service: render a tile from the tile index, with a per-process LRU cache and,
with `redis_url`, a cache shared by every process of the deployment (wayview.kv.tilecache).

A cached tile is reused only while the tile's write epoch (bumped in every write transaction that
touches it, in the store) is unchanged, so a write followed by a read never returns the old tile,
in this process or any other. `tiles.cache_max_bytes = 0` turns both caches off. The two image
tilesets have separate epochs and cache entries (keys "images:z:x:y" and "computed:z:x:y"), the
map-feature tilesets one entry each under their own name.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from wayview import logs, metrics
from wayview.errors import TileNotFound
from wayview.kv.tilecache import SharedTileCache
from wayview.model.entities import TileFeatureColumns, TileImageColumns, TileLine
from wayview.store.base import Store
from wayview.tiles.generalise import BASE_CELL, by_coverage
from wayview.tiles.index import IMAGE_ZOOM, decode_lines, tile_pixels
from wayview.tiles.mvt import Column, LineLayer, LineParts, PointLayer, encode_tile
from wayview.tiles.policy import GENERALISED_ZOOMS, TILE_VERSION, TILESETS, image_layers
from wayview.tiles.tilemath import EXTENT, is_valid_tile, project

log = logging.getLogger("wayview.tiles")

#: URL segments of a tile: ASCII digits, at most 2 for z (0–14) and 5 for x, y (< 2^14).
_ZOOM = re.compile(r"[0-9]{1,2}")
_XY = re.compile(r"[0-9]{1,5}")


@dataclass(slots=True)
class RenderedTile:
    """A tile body, its strong ETag, and its gzip form once someone asked for it."""

    body: bytes
    etag: str
    epoch: int
    _gzip: bytes | None = field(default=None, repr=False)

    def gzipped(self) -> bytes:
        """The body gzip-compressed (computed once)."""
        if self._gzip is None:
            # Level 1: ~2.5x cheaper than 6 on tile bodies for ~3 % more bytes (performance.md);
            # memLevel 9 (largest hash table) another 5-10 % cheaper for 0.5 % more bytes.
            compressor = zlib.compressobj(1, zlib.DEFLATED, 31, 9)
            self._gzip = compressor.compress(self.body) + compressor.flush()
        return self._gzip

    @property
    def size(self) -> int:
        """Bytes held in the cache for this tile."""
        return len(self.body) + len(self._gzip or b"")


def parse_tile_request(tileset: str, version: str, z: str, x: str, y: str) -> tuple[int, int, int]:
    """Validate the URL parts of a tile request (E15 for anything outside the contract).

    Only ASCII digits count: `str.isdigit` also accepts `²` (which `int` refuses: a 500, found
    by the fuzzer) and `١` (which `int` reads as 1).

    >>> parse_tile_request("mly1_public", "2", "14", "8792", "5125")
    (14, 8792, 5125)
    >>> parse_tile_request("mly1_public", "2", "1", "\u0661", "0")
    Traceback (most recent call last):
    ...
    wayview.errors.TileNotFound: Unsupported tile request
    """
    if tileset not in TILESETS or version != TILE_VERSION:
        raise TileNotFound()
    if not (_ZOOM.fullmatch(z) and _XY.fullmatch(x) and _XY.fullmatch(y)):
        raise TileNotFound()
    zi, xi, yi = int(z), int(x), int(y)
    if not is_valid_tile(zi, xi, yi):
        raise TileNotFound()
    return zi, xi, yi


def _optional_ints(values: tuple[int | None, ...]) -> Column:
    present = np.array([v is not None for v in values], dtype=bool)
    ints = np.array([v if v is not None else 0 for v in values], dtype=np.int64)
    return Column(ints, None if present.all() else present)


def _image_points(name: str, cols: TileImageColumns, z: int, x: int, y: int,
                  *, detailed: bool) -> PointLayer:
    px, py = tile_pixels(cols.codes, z, x, y)
    props: dict[str, Column] = {
        "id": Column(cols.ids),
        "captured_at": Column(cols.captured_at_ms),
    }
    if detailed:
        props["compass_angle"] = Column(cols.compass_deg)
    props["sequence_id"] = Column(cols.sequence_index, categories=tuple(cols.sequence_keys))
    props["is_pano"] = Column(cols.is_pano)
    if detailed:
        owned = cols.organization_ids != 0
        props["organization_id"] = Column(cols.organization_ids, None if owned.all() else owned)
        props["creator_id"] = Column(cols.creator_ids)
    return PointLayer(name, px, py, cols.ids.astype(np.uint64), props)


def _sequence_lines(lines: list[TileLine]) -> LineLayer:
    return LineLayer("sequence", LineParts(*decode_lines([line.coords for line in lines])), None,
                     _line_properties(lines))


def _line_properties(lines: list[TileLine]) -> dict[str, Column]:
    return {
        "id": Column([line.sequence_id for line in lines]),
        "image_id": Column(np.array([line.image_id for line in lines], dtype=np.int64)),
        "captured_at": Column(np.array([line.captured_at_ms for line in lines],
                                       dtype=np.int64)),
        "is_pano": Column(np.array([line.is_pano for line in lines], dtype=bool)),
        "organization_id": _optional_ints(tuple(line.organization_id for line in lines)),
        "creator_id": Column(np.array([line.creator_id for line in lines], dtype=np.int64)),
    }


def generalised_tile(lines: list[TileLine], max_bytes: int) -> bytes:
    """The `sequence` layer of a z6–13 tile thinned by pixel coverage
    (`wayview.tiles.generalise`), the newest capture first: cells of 8 extent units (one
    pixel of a 512-pixel tile), doubled until the tile fits `max_bytes` (0 = no budget).

    Every property of a kept sequence stays; a sequence all of whose cells newer ones cover
    is left out of the tile.
    """
    vertices, sizes, parts = decode_lines([line.coords for line in lines])
    newest_first = -np.array([line.captured_at_ms for line in lines], dtype=np.int64)
    cell = BASE_CELL
    while True:
        thin = by_coverage(vertices, sizes, parts, newest_first, cell)
        kept = [lines[i] for i in thin.kept_lines.tolist()]
        layer = LineLayer("sequence", LineParts(thin.vertices, thin.part_sizes, thin.line_parts),
                          None, _line_properties(kept))
        body = encode_tile([layer]) if kept else b""
        if not max_bytes or len(body) <= max_bytes or cell >= EXTENT:
            return body
        cell *= 2


def _feature_points(name: str, cols: TileFeatureColumns, z: int, x: int, y: int) -> PointLayer:
    px, py = project(np.asarray(cols.lons, dtype=np.float64),
                     np.asarray(cols.lats, dtype=np.float64), z, x, y)
    return PointLayer(name, px, py, np.asarray(cols.ids, dtype=np.uint64), {
        "id": Column(np.asarray(cols.ids, dtype=np.int64)),
        "value": Column(list(cols.values)),
        "first_seen_at": Column(np.asarray(cols.first_seen_at_ms, dtype=np.int64)),
        "last_seen_at": Column(np.asarray(cols.last_seen_at_ms, dtype=np.int64)),
    })


class TileService:
    """Renders tiles for the API; one instance per process."""

    def __init__(self, store: Store, *, cache_max_bytes: int = 256 * 1024 * 1024,
                 shared: SharedTileCache | None = None,
                 line_tile_max_bytes: int = 500_000) -> None:
        self.store = store
        self.cache_max_bytes = cache_max_bytes
        self.line_tile_max_bytes = line_tile_max_bytes
        self.shared = shared  # rendered tiles shared by the deployment's processes (Redis)
        self._cache: OrderedDict[tuple[str, int, int, int], RenderedTile] = OrderedDict()
        self._cached_bytes = 0
        self.renders = 0  # tiles built (not served from cache), for tests and metrics
        # Keeping z6–13 renderings in the store (disk full, store down): one line per outage.
        self._keeping = logs.Outage(
            log, "storing rendered z6–13 tiles (could not keep the rendered tile in the store)",
            effect="they are rendered per request until it works again", probe_every_s=5.0)

    async def tile(self, tileset: str, z: int, x: int, y: int) -> RenderedTile:
        """The current tile (validated coordinates, see `parse_tile_request`)."""
        spec = TILESETS[tileset]
        if spec.group == "features" and z != IMAGE_ZOOM:
            return RenderedTile(b"", '"empty"', 0)
        if z in GENERALISED_ZOOMS and spec.group != "features":
            return await self._stored(tileset, spec.group, z, x, y)
        if self.cache_max_bytes <= 0:  # no cache to validate: skip the epoch read
            metrics.tile_lookup("uncached")
            return self._rendered(await self._render(tileset, z, x, y, 0), 0)
        epoch = await self.store.tile_epoch(spec.group, z, x, y)
        if epoch == 0:  # nothing was ever written there
            metrics.tile_lookup("empty")
            return RenderedTile(b"", '"empty"', 0)
        # An image tileset's entries are keyed by its epoch group ("images", "computed").
        key = (tileset if spec.group == "features" else spec.group, z, x, y)
        cached = self._cache.get(key)
        if cached is not None and cached.epoch == epoch:
            self._cache.move_to_end(key)
            metrics.tile_lookup("hit")
            return cached
        shared_key = f"{key[0]}:{z}:{x}:{y}"
        if self.shared is not None:
            found = await self.shared.get(shared_key, epoch)
            if found is not None:
                tile = RenderedTile(found[0], found[1], epoch)
                self._remember(key, tile)
                metrics.tile_lookup("shared_hit")
                return tile
        metrics.tile_lookup("miss")
        tile = self._rendered(await self._render(tileset, z, x, y, epoch), epoch)
        self._remember(key, tile)
        if self.shared is not None:
            await self.shared.put(shared_key, epoch, tile.body, tile.etag)
        return tile

    async def _stored(self, tileset: str, group: str, z: int, x: int, y: int) -> RenderedTile:
        """A z6–13 image tile: from this process's cache while its epoch holds, else the body
        kept in the store at the current epoch (rendered in the background by
        wayview.tiles.prerender, or by an earlier request), else rendered here and stored."""
        key = (group, z, x, y)
        cached = self._cache.get(key)
        if cached is not None:
            if cached.epoch == await self.store.tile_epoch(group, z, x, y):
                self._cache.move_to_end(key)
                metrics.tile_lookup("hit")
                return cached
        epoch, etag, body = await self.store.rendered_tile(group, z, x, y)
        if epoch == 0:
            metrics.tile_lookup("empty")
            return RenderedTile(b"", '"empty"', 0)
        if body is not None and etag is not None:
            metrics.tile_lookup("stored")
            tile = RenderedTile(body, etag, epoch)
        else:
            metrics.tile_lookup("miss")
            tile, _ = await self.render_stored(tileset, group, z, x, y, epoch)
        self._remember(key, tile)
        return tile

    async def render_stored(self, tileset: str, group: str, z: int, x: int, y: int,
                            epoch: int) -> tuple[RenderedTile, bool]:
        """Render a z6–13 image tile read after `epoch` was current and store it under that
        epoch (kept only while it is still the tile's epoch); the tile, and whether the store
        took the write (False while it cannot: the tile is served all the same, and the
        failure is logged once per outage, not per tile)."""
        tile = self._rendered(await self._render(tileset, z, x, y, epoch), epoch)
        if not self._keeping.attempt():
            return tile, False
        try:
            await self.store.put_rendered_tile(group, z, x, y, epoch, tile.etag, tile.body)
        except Exception as exc:  # noqa: BLE001 - the tile is served; a later render retries
            self._keeping.down(exc)
            return tile, False
        self._keeping.up()
        return tile, True

    @staticmethod
    def _rendered(body: bytes, epoch: int) -> RenderedTile:
        if not body:
            return RenderedTile(b"", '"empty"', epoch)
        # A content hash, not a secret: SHA-1 runs on the CPU's SHA extensions, about half the
        # cost of BLAKE2b on a 150 KB tile body.
        digest = hashlib.sha1(body, usedforsecurity=False).hexdigest()[:24]
        return RenderedTile(body, f'"{digest}"', epoch)

    async def _render(self, tileset: str, z: int, x: int, y: int, epoch: int) -> bytes:
        self.renders += 1
        started = time.perf_counter()
        try:
            return await self._build(tileset, z, x, y, epoch)
        finally:
            metrics.tile_rendered(time.perf_counter() - started)

    async def _build(self, tileset: str, z: int, x: int, y: int, epoch: int) -> bytes:
        """The tile's body from its rows (read at least at `epoch` when it is not 0)."""
        spec = TILESETS[tileset]
        if spec.group == "features":
            assert spec.object_type is not None and spec.layer is not None
            features = await self.store.tile_map_features(spec.object_type, z, x, y)
            if not features.ids:
                return b""
            return encode_tile([_feature_points(spec.layer, features, z, x, y)])
        names = image_layers(z)
        content = await self.store.tile_content(z, x, y, names, computed=spec.computed,
                                                epoch=epoch or None)
        layers: list[PointLayer | LineLayer] = []
        for name in names:
            if name == "overview" and content.overview is not None and len(content.overview):
                layers.append(_image_points("overview", content.overview, z, x, y,
                                            detailed=False))
            elif name == "sequence" and content.lines:
                if z in GENERALISED_ZOOMS:
                    return generalised_tile(content.lines, self.line_tile_max_bytes)
                layers.append(_sequence_lines(content.lines))
            elif name == "image" and content.images is not None and len(content.images):
                layers.append(_image_points("image", content.images, z, x, y, detailed=True))
        return encode_tile(layers) if layers else b""

    def _remember(self, key: tuple[str, int, int, int], tile: RenderedTile) -> None:
        if self.cache_max_bytes <= 0 or tile.size > self.cache_max_bytes:
            return
        old = self._cache.pop(key, None)
        if old is not None:
            self._cached_bytes -= old.size
        self._cache[key] = tile
        self._cached_bytes += tile.size
        while self._cached_bytes > self.cache_max_bytes and self._cache:
            _, evicted = self._cache.popitem(last=False)
            self._cached_bytes -= evicted.size
