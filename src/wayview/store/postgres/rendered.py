"""wayview.store.postgres.rendered: RenderedTilesStore on PostgreSQL (see
wayview.store.parts.rendered)."""

from __future__ import annotations

from wayview.store.parts.rendered import RENDERED_GROUPS, rendered_sql, with_xy
from wayview.store.postgres.connection import Queries
from wayview.tiles.index import morton

SQL = rendered_sql("%s")


class RenderedTilesMixin(Queries):
    """RenderedTilesStore on PostgreSQL (primary: the epoch and the body are read together)."""

    async def rendered_tile(self, group: str, z: int, x: int, y: int
                            ) -> tuple[int, str | None, bytes | None]:
        """The tile's epoch and its stored body at that epoch (see RenderedTilesStore)."""
        async with self.db.connection() as conn:
            cur = await conn.execute(SQL["get"], (group, z, morton(x, y)), binary=True)
            row = await cur.fetchone()
        if row is None:
            return 0, None, None
        return int(row[0]), row[1], None if row[2] is None else bytes(row[2])

    async def put_rendered_tile(self, group: str, z: int, x: int, y: int, epoch: int,
                                etag: str, body: bytes) -> bool:
        """Store a tile rendered at `epoch` while it is current (see RenderedTilesStore)."""
        key = morton(x, y)
        return bool(await self._run(
            SQL["put"], (group, z, key, epoch, etag, body, group, z, key, epoch)))

    async def stale_rendered_tiles(self, min_z: int, max_z: int, limit: int
                                   ) -> list[tuple[str, int, int, int]]:
        """Tiles whose stored body is missing or old (see RenderedTilesStore)."""
        rows = await self._all(SQL["stale"], (*RENDERED_GROUPS, min_z, max_z, limit))
        return with_xy(rows)
