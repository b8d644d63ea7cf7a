"""wayview.kv.tilecache: rendered vector tiles shared by every process of a deployment.

Each API process keeps its own LRU of rendered tiles (`wayview.tiles.service`); with several
processes (and after every restart) each would render every tile itself. With `redis_url`
set, a rendered tile is also written to Redis under its tile key together with the write
epoch it was rendered at, and a process that misses its own cache reads it from there. A
shared tile is used only when its epoch equals the store's current epoch for that tile, so a
write is never followed by an old tile, whichever process rendered it.

Redis is a cache here, never the source of truth: entries expire (`ttl_s`), tiles larger than
`max_tile_bytes` are not shared, and when Redis cannot be reached the tile is simply rendered
(logged once a minute, never an error for the client).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("wayview.tiles")

#: Store a tile unless a newer epoch is already there, atomically inside Redis (a hash of
#: epoch, etag, body, with an expiry).
_PUT = """
local current = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '')
if current and current > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'etag', ARGV[2], 'body', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""
#: Seconds between two "Redis unreachable" log lines.
_LOG_EVERY_S = 60.0


class SharedTileCache(Protocol):
    """Rendered tiles shared by processes. Called by `TileService` on a local-cache miss."""

    async def get(self, key: str, epoch: int) -> tuple[bytes, str] | None:
        """(body, ETag) of the tile rendered at `epoch`, or None (absent, other epoch, or the
        cache is unavailable)."""
        ...

    async def put(self, key: str, epoch: int, body: bytes, etag: str) -> None:
        """Share a tile rendered at `epoch` (best effort: failures are logged, not raised)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class RedisTileCache:
    """`SharedTileCache` on Redis (`redis://host:port/db` or `unix:///path`)."""

    def __init__(self, url: str, *, prefix: str = "wayview:tile:", ttl_s: int = 86_400,
                 max_tile_bytes: int = 4 * 1024 * 1024) -> None:
        self._redis: Any = aioredis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._put_script = self._redis.register_script(_PUT)
        self._prefix = prefix
        self._ttl_s = ttl_s
        self.max_tile_bytes = max_tile_bytes
        self._last_error_log = 0.0
        self.hits = 0  # for tests and metrics
        self.misses = 0

    async def get(self, key: str, epoch: int) -> tuple[bytes, str] | None:
        """The shared tile rendered at `epoch`, if any."""
        try:
            stored, etag, body = await self._redis.hmget(self._prefix + key,
                                                        ["epoch", "etag", "body"])
        except (RedisError, OSError) as exc:
            self._unavailable(exc)
            return None
        if stored is None or etag is None or body is None or not stored.isascii() \
                or not stored.isdigit() or int(stored) != epoch:
            self.misses += 1
            return None
        self.hits += 1
        return bytes(body), etag.decode("ascii", "replace")

    async def put(self, key: str, epoch: int, body: bytes, etag: str) -> None:
        """Share a rendered tile; a newer epoch already shared is never replaced by an older
        one (two processes may render one tile at different epochs, a write in between)."""
        if len(body) > self.max_tile_bytes:
            return
        try:
            await self._put_script(keys=[self._prefix + key],
                                   args=[epoch, etag, body, self._ttl_s])
        except (RedisError, OSError) as exc:
            self._unavailable(exc)

    def _unavailable(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= _LOG_EVERY_S:
            self._last_error_log = now
            log.error("shared tile cache unavailable (%s: %s): rendering locally",
                      type(exc).__name__, exc)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()


def open_tile_cache(redis_url: str) -> SharedTileCache | None:
    """The shared tile cache of a deployment: Redis when `redis_url` is set, else None."""
    if not redis_url:
        return None
    return RedisTileCache(redis_url)
