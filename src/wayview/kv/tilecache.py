"""wayview.kv.tilecache: rendered vector tiles shared by every process of a deployment.

Each API process keeps its own LRU of rendered tiles (`wayview.tiles.service`); with several
processes (and after every restart) each would render every tile itself. With `redis_url`
set, a rendered tile is also written to Redis under its tile key together with the write
epoch it was rendered at, and a process that misses its own cache reads it from there. A
shared tile is used only when its epoch equals the store's current epoch for that tile, so a
write is never followed by an old tile, whichever process rendered it.

Redis is a cache here, never the source of truth: entries expire (`ttl_s`), tiles larger than
`max_tile_bytes` are not shared, and when Redis cannot be reached the tile is simply rendered
(logged once when the outage starts and once when it ends, never an error for the client;
while it lasts one call per 0.2 s probes Redis and the others render at once).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from wayview.logs import Outage

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
                 max_tile_bytes: int = 4 * 1024 * 1024, timeout_s: float = 0.5) -> None:
        self._redis: Any = aioredis.from_url(url, socket_timeout=timeout_s,
                                             socket_connect_timeout=timeout_s)
        self.outage = Outage(log, "shared tile cache (Redis)", effect="rendering locally",
                             probe_timeout_s=timeout_s)
        self._put_script = self._redis.register_script(_PUT)
        self._prefix = prefix
        self._ttl_s = ttl_s
        self.max_tile_bytes = max_tile_bytes
        self.hits = 0  # for tests and metrics
        self.misses = 0

    async def get(self, key: str, epoch: int) -> tuple[bytes, str] | None:
        """The shared tile rendered at `epoch`, if any."""
        if not self.outage.attempt():
            return None
        try:
            stored, etag, body = await self._redis.hmget(self._prefix + key,
                                                        ["epoch", "etag", "body"])
        except (RedisError, OSError) as exc:
            self.outage.down(exc)
            return None
        self.outage.up()
        if stored is None or etag is None or body is None or not stored.isascii() \
                or not stored.isdigit() or int(stored) != epoch:
            self.misses += 1
            return None
        self.hits += 1
        return bytes(body), etag.decode("ascii", "replace")

    async def put(self, key: str, epoch: int, body: bytes, etag: str) -> None:
        """Share a rendered tile; a newer epoch already shared is never replaced by an older
        one (two processes may render one tile at different epochs, a write in between)."""
        if len(body) > self.max_tile_bytes or not self.outage.attempt():
            return
        try:
            await self._put_script(keys=[self._prefix + key],
                                   args=[epoch, etag, body, self._ttl_s])
        except (RedisError, OSError) as exc:
            self.outage.down(exc)
        else:
            self.outage.up()

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()


def open_tile_cache(redis_url: str, timeout_s: float = 0.5) -> SharedTileCache | None:
    """The shared tile cache of a deployment: Redis when `redis_url` is set, else None."""
    if not redis_url:
        return None
    return RedisTileCache(redis_url, timeout_s=timeout_s)
