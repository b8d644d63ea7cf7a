"""wayview.kv: key-value services shared by the processes of a deployment (Redis)."""

from __future__ import annotations

from wayview.kv.tilecache import RedisTileCache, SharedTileCache, open_tile_cache

__all__ = ["RedisTileCache", "SharedTileCache", "open_tile_cache"]
