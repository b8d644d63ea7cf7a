"""wayview.store.sqlite.rendered: RenderedTilesStore on SQLite (see
wayview.store.parts.rendered)."""

from __future__ import annotations

from wayview.store.parts.rendered import RENDERED_GROUPS, rendered_sql, with_xy
from wayview.store.sqlite.connection import Database
from wayview.tiles.index import morton

SQL = rendered_sql("?")


class RenderedTilesMixin:
    """RenderedTilesStore on SQLite; `self.db` is the store's Database."""

    db: Database

    async def rendered_tile(self, group: str, z: int, x: int, y: int
                            ) -> tuple[int, str | None, bytes | None]:
        """The tile's epoch and its stored body at that epoch (see RenderedTilesStore)."""
        params = (group, z, morton(x, y))
        row = await self.db.read(lambda c: c.execute(SQL["get"], params).fetchone())
        if row is None:
            return 0, None, None
        return int(row[0]), row[1], None if row[2] is None else bytes(row[2])

    async def put_rendered_tile(self, group: str, z: int, x: int, y: int, epoch: int,
                                etag: str, body: bytes) -> bool:
        """Store a tile rendered at `epoch` while it is current (see RenderedTilesStore)."""
        key = morton(x, y)
        params = (group, z, key, epoch, etag, body, group, z, key, epoch)
        return bool(await self.db.write(lambda c: c.execute(SQL["put"], params).rowcount))

    async def stale_rendered_tiles(self, min_z: int, max_z: int, limit: int
                                   ) -> list[tuple[str, int, int, int]]:
        """Tiles whose stored body is missing or old (see RenderedTilesStore)."""
        params = (*RENDERED_GROUPS, min_z, max_z, limit)
        rows = await self.db.read(lambda c: c.execute(SQL["stale"], params).fetchall())
        return with_xy(rows)

